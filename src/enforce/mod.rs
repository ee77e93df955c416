//! Enforcement: what makes a request pass or not. The pipeline calls [`Enforcer::decide`]
//! from `on_request` and [`Enforcer::observe`] from `on_complete`; no transport calls in
//! here, so inline and sideband decide alike.
//!
//! # `decide`, in order
//! 0. Identity capture ([`identity`]). With `enable_firewall=false` everything below is
//!    skipped. A request that gives an identifier twice (two bearer tokens, the session
//!    cookie twice...) is refused as malformed: the deny list must see every value.
//! 1. Decoys ([`pattern::decoy`]): a decoy path is answered with the decoy's fake response
//!    (sideband: 403), the client is remembered, and a `decoy_access` IoA is raised.
//! 2. Allow list: an allow-listed client skips steps 3–6.
//! 3. Deny list ([`lists`]).
//! 4. Decoy followers: a client that touched a decoy and now calls a real API is
//!    deny-listed (source `decoy`) and blocked.
//! 5. Mandatory token: `is_token_mandatory` without a bearer token blocks and deny-lists
//!    the IP (`missing_token` IoA).
//! 6. API pattern enforcement (inline): redirect, or the API's error (`pattern_violation`
//!    IoA; the token, cookie or IP is deny-listed, source `pattern`).
//! 7. Client spike threshold (inline, [`flow`]): 429.
//!
//! Steps 3–6 block only where the API has `enable_blocking: true`; elsewhere the request
//! goes through and the exchange records "would block". Decoy answers, redirects and flow
//! control apply regardless: they are how the API is configured to answer, not verdicts.
//!
//! # `observe`
//! Feeds the finished exchange to the API's detectors ([`detect`]). Every IoA (from
//! either phase) is logged with secrets masked and, when the API blocks and
//! `enable_ase_detected_attack` is on, its identifier is deny-listed for `ioa_block_ttl`
//! (an allow-listed client never is). Raised IoAs are returned on the exchange
//! (`Exchange::raised`) for the sink to record: enforcement writes no records.
//!
//! Enforcement sees an API through [`ApiRef`]: its definition and enforcement's own
//! per-API state (flow control, detection), which the API table holds.

pub mod detect;
pub mod flow;
pub mod identity;
pub mod lists;
pub mod pattern;

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use dashmap::DashMap;
use http::StatusCode;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};

use crate::config::{ApiDef, Mode, Settings};
use crate::memory::{Budget, cost};
use crate::vocab::{ClientId, Exchange, Headers, Ioa, IoaRecord, Reason, Verdict, unix_secs};
use detect::{ApiDetect, Detection, Facts, Thresholds};
use flow::ApiFlow;
use lists::{Entry, Identifier, ListKind, Lists, Source, Subject};

/// What `decide` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through: forward it (inline) or answer 200 (sideband).
    Allow,
    /// Answer for the pipeline instead: inline with the block's own answer (ASE's error
    /// table, the decoy's fake response, a redirect, 429), sideband with 403.
    Block(Block),
}

/// An API as enforcement sees it: the definition, and enforcement's per-API state.
#[derive(Debug, Clone, Copy)]
pub struct ApiRef<'a> {
    pub def: &'a ApiDef,
    pub flow: &'a ApiFlow,
    pub detect: &'a ApiDetect,
}

impl ApiRef<'_> {
    pub fn id(&self) -> &str {
        &self.def.id
    }
}

/// Enforcement settings from `ase.conf`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `enable_firewall`.
    pub firewall: bool,
    /// `enable_ase_detected_attack`: detections deny-list clients automatically.
    pub auto_deny: bool,
    pub thresholds: Thresholds,
    /// How long an automatic deny-list entry lasts (`ioa_block_ttl`).
    pub block_ttl: Duration,
    /// How long a client that touched a decoy is remembered (`decoy_memory`).
    pub decoy_memory: Duration,
    pub list_max_entries: usize,
    pub flow_max_clients: usize,
    /// Decoy visitors remembered at most.
    pub decoy_max: usize,
    /// The detection part of the memory budget, shared by every API's windows.
    pub detection_memory: Arc<crate::memory::Pool>,
    pub connection_queue_timeout: Duration,
    /// Client spike thresholds are counted across the cluster (when the request picks its
    /// server), not here.
    pub shared_client_spikes: bool,
}

impl Config {
    pub fn from_settings(s: &Settings) -> Config {
        let budget = Budget::new(s.memory_budget);
        Config {
            firewall: s.enable_firewall,
            auto_deny: s.enable_ase_detected_attack,
            thresholds: s.ioa.clone(),
            block_ttl: s.ioa_block_ttl,
            decoy_memory: s.decoy_memory,
            list_max_entries: s
                .list_max_entries
                .min(Budget::entries(budget.lists / 2, cost::LIST_ENTRY)),
            flow_max_clients: s
                .flow_max_clients
                .min(Budget::entries(budget.flow, cost::FLOW_CLIENT)),
            decoy_max: DECOY_MEMORY_MAX.min(Budget::entries(budget.lists / 2, cost::LIST_ENTRY)),
            detection_memory: budget.detection,
            connection_queue_timeout: s.connection_queue_timeout,
            shared_client_spikes: s.cluster_client_spikes && s.redis_url.is_some(),
        }
    }
}

/// Why a request was (or would have been) stopped, with what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// A deny-listed identifier.
    Denied {
        identifier: Identifier,
        source: Source,
    },
    /// A client that touched a decoy called a real API.
    DecoyFollower { identifier: Identifier },
    /// No token where it is mandatory.
    MissingToken,
    /// A decoy path: answer with the fake response.
    Decoy {
        status: StatusCode,
        reason: String,
        body: String,
    },
    /// An API pattern rule broken.
    Pattern {
        rule: pattern::Rule,
        status: StatusCode,
        reason: String,
        body: String,
    },
    /// Plain HTTP where only HTTPS is allowed.
    Redirect {
        status: StatusCode,
        reason: String,
        location: String,
    },
    /// Flow control.
    RateLimited {
        kind: flow::Kind,
        retry_after: Duration,
    },
    /// An identifier given more than once (see [`identity::ambiguity`]): malformed.
    Ambiguous { why: String },
}

impl Block {
    /// Why, as a [`Reason`] (records and metrics).
    pub fn kind(&self) -> Reason {
        match self {
            Block::Denied { .. } => Reason::DenyList,
            Block::DecoyFollower { .. } => Reason::DecoyFollower,
            Block::MissingToken => Reason::MissingToken,
            Block::Decoy { .. } => Reason::Decoy,
            Block::Pattern { .. } => Reason::Pattern,
            Block::Redirect { .. } => Reason::Redirect,
            Block::RateLimited { .. } => Reason::FlowControl,
            Block::Ambiguous { .. } => Reason::Ambiguous,
        }
    }

    /// Why, in words (secrets masked): the sideband answer's `reason`.
    pub fn reason(&self) -> String {
        match self {
            Block::Denied { identifier, source } => {
                format!(
                    "{} is deny-listed ({})",
                    identifier.describe(),
                    source.as_str()
                )
            }
            Block::DecoyFollower { identifier } => {
                format!("{} touched a decoy", identifier.describe())
            }
            Block::MissingToken => "no OAuth token where one is mandatory".into(),
            Block::Decoy { .. } => "decoy".into(),
            Block::Pattern { rule, .. } => format!("API pattern: {} not allowed", rule.as_str()),
            Block::Redirect { .. } => "protocol not allowed".into(),
            Block::RateLimited { .. } => "flow control".into(),
            Block::Ambiguous { why } => format!("ambiguous identity: {why}"),
        }
    }
}

/// How many decoy-touching identifiers are remembered at most.
const DECOY_MEMORY_MAX: usize = 100_000;

impl std::fmt::Debug for Enforcer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enforcer")
            .field("deny", &self.lists.load(ListKind::Deny).len())
            .field("allow", &self.lists.load(ListKind::Allow).len())
            .finish()
    }
}

/// Process-wide enforcement state.
pub struct Enforcer {
    pub cfg: Config,
    /// `enable_firewall`, switchable at run time (`/v4/ase/firewall`).
    firewall: AtomicBool,
    pub lists: Lists,
    decoy_touched: DashMap<ClientId, i64, foldhash::fast::RandomState>,
    path_hasher: foldhash::fast::RandomState,
    /// The cluster's shared counters (cluster mode), set once after construction.
    shared: std::sync::OnceLock<Arc<dyn flow::SharedCounter>>,
}

fn now() -> i64 {
    unix_secs(SystemTime::now())
}

impl Enforcer {
    pub fn new(cfg: Config) -> Enforcer {
        Enforcer {
            firewall: AtomicBool::new(cfg.firewall),
            lists: Lists::new(cfg.list_max_entries),
            decoy_touched: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            path_hasher: foldhash::fast::RandomState::default(),
            shared: std::sync::OnceLock::new(),
            cfg,
        }
    }

    /// Counts server (and, when configured, client) spike thresholds across the cluster
    /// from now on (cluster mode).
    pub fn share_counters(&self, counter: Arc<dyn flow::SharedCounter>) {
        let _ = self.shared.set(counter);
    }

    /// The cluster's shared counters, in cluster mode.
    pub fn shared_counters(&self) -> Option<&dyn flow::SharedCounter> {
        self.shared.get().map(|s| s.as_ref())
    }

    /// Decoy visitors remembered now.
    pub fn decoy_memory_len(&self) -> usize {
        self.decoy_touched.len()
    }

    /// Whether enforcement is on (`enable_firewall`, or the management API's switch).
    pub fn firewall(&self) -> bool {
        self.firewall.load(Relaxed)
    }

    pub fn set_firewall(&self, on: bool) {
        self.firewall.store(on, Relaxed);
        tracing::warn!(
            "firewall {} through the management API",
            if on { "enabled" } else { "disabled" }
        );
    }

    /// The request phase (see the module doc). `ex.client_ip`, `ex.session` and the
    /// sideband caller's user are set; identities are captured here.
    pub fn decide<A>(
        &self,
        api: ApiRef<'_>,
        ex: &mut Exchange<A>,
        headers: &impl Headers,
    ) -> Decision {
        identity::capture(api.def, ex, headers);
        if !self.firewall() {
            return Decision::Allow;
        }
        if let Some(why) = identity::ambiguity(api.def, headers, ex.uri.query()) {
            return self.enforce(api, ex, Block::Ambiguous { why });
        }
        // The exchange's own arrival: no second read of the clock.
        let now = unix_secs(ex.received_at);
        if let Some(kind) = pattern::decoy(api.def, ex.path()) {
            for key in client_keys(ex) {
                self.remember_decoy(key, now);
            }
            let detail = match kind {
                pattern::Decoy::OutOfContext => "decoy API",
                pattern::Decoy::InContext => "decoy sub-path",
            };
            self.raise(
                api,
                ex,
                Ioa::DecoyAccess,
                ClientId::Ip(ex.client_ip),
                format!("{detail} {}", ex.path()),
                None,
            );
            ex.verdict = Verdict::Blocked(Reason::Decoy);
            let d = &api.def.decoy;
            return Decision::Block(Block::Decoy {
                status: d.response_code,
                reason: d.response_def.clone(),
                body: d.response_message.clone(),
            });
        }

        let subject = subject(api, ex);
        if !self.lists.allowed(&subject, now) {
            if let Some((identifier, entry)) = self.lists.denied(&subject, now) {
                return self.enforce(
                    api,
                    ex,
                    Block::Denied {
                        identifier,
                        source: entry.source,
                    },
                );
            }
            if let Some(identifier) = self.decoy_follower(api, ex, now) {
                if api.def.enable_blocking && self.cfg.auto_deny {
                    let ids = deny_identifiers(api, ex);
                    self.deny(ids, Source::Decoy, "decoy_follower", now);
                }
                return self.enforce(api, ex, Block::DecoyFollower { identifier });
            }
            if api.def.is_token_mandatory && api.def.oauth2_access_token && ex.token.is_none() {
                let ip = Identifier::Ip(ex.client_ip);
                self.raise(
                    api,
                    ex,
                    Ioa::MissingToken,
                    ClientId::Ip(ex.client_ip),
                    "no bearer token".into(),
                    Some(ip),
                );
                return self.enforce(api, ex, Block::MissingToken);
            }
            if ex.mode == Mode::Inline {
                let shape = pattern::Shape {
                    tls: ex.tls,
                    websocket: ex.websocket,
                    method: &ex.method,
                    content_type: headers.text(&CONTENT_TYPE),
                    has_body: ex.has_body,
                    path_and_query: ex.uri.path_and_query().map_or("/", |p| p.as_str()),
                };
                match pattern::check(&api.def.pattern, &shape) {
                    Some(pattern::Outcome::Redirect {
                        status,
                        reason,
                        location,
                    }) => {
                        ex.verdict = Verdict::Blocked(Reason::Redirect);
                        return Decision::Block(Block::Redirect {
                            status,
                            reason,
                            location,
                        });
                    }
                    Some(pattern::Outcome::Violation {
                        rule,
                        status,
                        reason,
                        body,
                    }) => {
                        let (key, id) = pattern_culprit(api, ex);
                        self.raise(
                            api,
                            ex,
                            Ioa::PatternViolation,
                            key,
                            format!("{} not allowed", rule.as_str()),
                            Some(id),
                        );
                        return self.enforce(
                            api,
                            ex,
                            Block::Pattern {
                                rule,
                                status,
                                reason,
                                body,
                            },
                        );
                    }
                    None => {}
                }
            }
        }

        if ex.mode == Mode::Inline && !self.cfg.shared_client_spikes {
            return self.client_spike(api, ex);
        }
        Decision::Allow
    }

    /// The API's `client_spike_threshold` on this node's own limiter: for the inline proxy
    /// (unless the cluster counts it) and for `/ase/auth` calls, which can answer 429.
    pub fn client_spike<A>(&self, api: ApiRef<'_>, ex: &mut Exchange<A>) -> Decision {
        match api.flow.check_client(ex.client_ip) {
            Ok(()) => Decision::Allow,
            Err(limited) => {
                api.flow
                    .record(limited.kind, flow_event(api.id(), ex, None));
                ex.verdict = Verdict::Blocked(Reason::FlowControl);
                Decision::Block(Block::RateLimited {
                    kind: limited.kind,
                    retry_after: limited.retry_after,
                })
            }
        }
    }

    /// Blocks where the API blocks; elsewhere lets the request through, recorded as
    /// "would block".
    fn enforce<A>(&self, api: ApiRef<'_>, ex: &mut Exchange<A>, block: Block) -> Decision {
        if api.def.enable_blocking {
            ex.verdict = Verdict::Blocked(block.kind());
            Decision::Block(block)
        } else {
            tracing::info!(
                api = api.id(),
                client = %ex.client_ip,
                "would block ({}): enable_blocking is off for this API",
                block.reason()
            );
            ex.verdict = Verdict::WouldBlock(block.kind());
            Decision::Allow
        }
    }

    /// The completion phase: detection on the finished exchange. Only exchanges the
    /// backend answered are evidence: enforcer's own 403s, 429s, decoy answers and proxy
    /// failures say nothing about the client (a block must not feed the detector that
    /// caused it).
    pub fn observe<A>(&self, api: ApiRef<'_>, ex: &mut Exchange<A>) {
        if !self.firewall() {
            return;
        }
        if ex.enforcer_answered() {
            return;
        }
        // `None`: no answer is known (a sideband request whose response call never came);
        // the request itself is still evidence (a token used from another address).
        let status = ex.status.map(|s| s.as_u16());
        let login = api
            .def
            .login_url
            .as_deref()
            .is_some_and(|l| crate::config::api::same_path(ex.path(), l));
        let facts = Facts {
            ip: ex.client_ip,
            token: ex.token.as_deref().map(Arc::from),
            cookie: ex.session.as_deref().map(Arc::from),
            api_key: ex.api_key.as_ref().map(|k| Arc::from(k.value.as_str())),
            username: ex.username.as_deref().map(Arc::from),
            error: status.is_some_and(|s| (400..500).contains(&s)),
            path_hash: self.path_hasher.hash_one(ex.path()),
            login_attempt: login && status.is_some(),
            login_failure: login
                && status.is_some_and(|s| api.def.user_events.sign_on_failure.contains(s)),
            bytes_out: ex.response_bytes,
        };
        for Detection {
            ioa,
            client,
            detail,
        } in api
            .detect
            .observe(&self.cfg.thresholds, &facts, unix_secs(ex.completed_at()))
        {
            let id = identifier_of(api, ex, &client);
            self.raise(api, ex, ioa, client, detail, id);
        }
    }

    /// Raises an IoA on the exchange (for the sink to record), logs it, and deny-lists
    /// `deny` when the API blocks.
    fn raise<A>(
        &self,
        api: ApiRef<'_>,
        ex: &mut Exchange<A>,
        ioa: Ioa,
        client: ClientId,
        detail: String,
        deny: Option<Identifier>,
    ) {
        let now = now();
        let may_deny = api.def.enable_blocking
            && self.cfg.auto_deny
            && !self.lists.allowed(&subject(api, ex), now);
        let deny_listed = match deny {
            Some(id) if may_deny => {
                let source = match ioa {
                    Ioa::PatternViolation => Source::Pattern,
                    Ioa::DecoyAccess => Source::Decoy,
                    _ => Source::Detection,
                };
                self.deny(vec![id], source, ioa.name(), now)
            }
            _ => false,
        };
        let shown = match &client {
            ClientId::Ip(ip) => ip.to_string(),
            ClientId::Username(u) => u.to_string(),
            ClientId::Token(v) | ClientId::Cookie(v) | ClientId::ApiKey(v) => identity::mask(v),
        };
        tracing::warn!(
            api = api.id(),
            ioa = ioa.name(),
            type_id = ioa.type_id(),
            client_type = client.kind().as_str(),
            client = %shown,
            deny_listed,
            "indicator of attack: {detail}"
        );
        ex.raised.push(IoaRecord {
            api: Arc::from(api.id()),
            ioa,
            client,
            at: now,
            at_ms: jiff::Timestamp::now().as_millisecond(),
            detail,
            deny_listed,
        });
    }

    /// Deny-lists identifiers for `block_ttl`; true when at least one was added. An
    /// unknown client address stands for many clients and is never deny-listed.
    fn deny(&self, mut ids: Vec<Identifier>, source: Source, reason: &str, now: i64) -> bool {
        ids.retain(|id| !matches!(id, Identifier::Ip(ip) if ip.is_unspecified()));
        if ids.is_empty() {
            return false;
        }
        let expires =
            now.saturating_add(i64::try_from(self.cfg.block_ttl.as_secs()).unwrap_or(i64::MAX));
        let reason: Arc<str> = Arc::from(reason);
        let items = ids
            .into_iter()
            .map(|id| {
                let entry = Entry {
                    source,
                    added: now,
                    expires: Some(expires),
                    reason: Some(reason.clone()),
                };
                (id, entry)
            })
            .collect();
        match self.lists.add(ListKind::Deny, items) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!("cannot deny-list automatically: {e}");
                false
            }
        }
    }

    fn remember_decoy(&self, key: ClientId, now: i64) {
        if self.decoy_touched.len() >= self.cfg.decoy_max && !self.decoy_touched.contains_key(&key)
        {
            return;
        }
        let until =
            now.saturating_add(i64::try_from(self.cfg.decoy_memory.as_secs()).unwrap_or(i64::MAX));
        self.decoy_touched.insert(key, until);
    }

    /// The identifier of a client that touched a decoy earlier, if this one did.
    fn decoy_follower<A>(&self, api: ApiRef<'_>, ex: &Exchange<A>, now: i64) -> Option<Identifier> {
        if self.decoy_touched.is_empty() {
            return None;
        }
        client_keys(ex).into_iter().find_map(|key| {
            let live = self
                .decoy_touched
                .get(&key)
                .is_some_and(|until| *until > now);
            if live {
                identifier_of(api, ex, &key)
            } else {
                None
            }
        })
    }

    /// Expires list entries, decoy memory, idle limiter and detector state (run
    /// periodically by the server's control side).
    pub fn sweep<'a>(&self, apis: impl IntoIterator<Item = ApiRef<'a>>) {
        let now = now();
        self.lists.sweep(now);
        self.decoy_touched.retain(|_, until| *until > now);
        for api in apis {
            api.flow.sweep();
            api.detect.sweep(&self.cfg.thresholds, now);
        }
    }
}

/// The request's identifiers, for list matching.
fn subject<'a, A>(api: ApiRef<'a>, ex: &'a Exchange<A>) -> Subject<'a> {
    Subject {
        ip: ex.client_ip,
        cookie: api.def.cookie.as_deref().zip(ex.session.as_deref()),
        token: ex.token.as_deref(),
        api_key: ex.api_key.as_ref(),
        username: ex.username.as_deref(),
    }
}

/// Every identifier the request carries, as detection keys (its IP when it is known).
fn client_keys<A>(ex: &Exchange<A>) -> Vec<ClientId> {
    let mut keys = Vec::with_capacity(5);
    if ex.client_ip_known() {
        keys.push(ClientId::Ip(ex.client_ip));
    }
    keys.extend(ex.token.as_deref().map(|t| ClientId::Token(Arc::from(t))));
    keys.extend(
        ex.session
            .as_deref()
            .map(|c| ClientId::Cookie(Arc::from(c))),
    );
    keys.extend(
        ex.api_key
            .as_ref()
            .map(|k| ClientId::ApiKey(Arc::from(k.value.as_str()))),
    );
    keys.extend(
        ex.username
            .as_deref()
            .map(|u| ClientId::Username(Arc::from(u))),
    );
    keys
}

/// Every identifier the request carries, as list entries.
fn deny_identifiers<A>(api: ApiRef<'_>, ex: &Exchange<A>) -> Vec<Identifier> {
    client_keys(ex)
        .iter()
        .filter_map(|k| identifier_of(api, ex, k))
        .collect()
}

/// A detection key as a list identifier (cookie and API key names from the exchange).
fn identifier_of<A>(api: ApiRef<'_>, ex: &Exchange<A>, key: &ClientId) -> Option<Identifier> {
    Some(match key {
        ClientId::Ip(ip) => Identifier::Ip(*ip),
        ClientId::Token(t) => Identifier::Token(t.to_string()),
        ClientId::Cookie(v) => Identifier::Cookie {
            name: api.def.cookie.clone()?,
            value: v.to_string(),
        },
        ClientId::ApiKey(v) => Identifier::ApiKey {
            name: ex.api_key.as_ref()?.name.clone(),
            value: v.to_string(),
        },
        ClientId::Username(u) => Identifier::Username(u.to_string()),
    })
}

/// Whom a pattern violation is held against: the token, else the cookie, else the IP.
fn pattern_culprit<A>(api: ApiRef<'_>, ex: &Exchange<A>) -> (ClientId, Identifier) {
    let key = if let Some(t) = &ex.token {
        ClientId::Token(Arc::from(t.as_str()))
    } else if let (Some(c), Some(_)) = (&ex.session, &api.def.cookie) {
        ClientId::Cookie(Arc::from(c.as_str()))
    } else {
        ClientId::Ip(ex.client_ip)
    };
    let id = identifier_of(api, ex, &key).unwrap_or(Identifier::Ip(ex.client_ip));
    (key, id)
}

/// A flow-control event for the report.
pub fn flow_event<A>(api_id: &str, ex: &Exchange<A>, server: Option<String>) -> flow::Event {
    flow::Event {
        request_time: jiff::Timestamp::try_from(ex.received_at)
            .map(|t| t.to_string())
            .unwrap_or_default(),
        connection_id: ex.connection_id,
        source_ip: ex.client_ip.to_string(),
        destination_api: api_id.to_string(),
        server,
    }
}

/// Whether a request head announces a body.
pub fn has_body(headers: &impl Headers) -> bool {
    headers.has(&TRANSFER_ENCODING)
        || headers
            .text(&CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}
