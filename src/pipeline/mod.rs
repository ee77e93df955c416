//! The pipeline: the one model of a request that both transports drive.
//!
//! The inline proxy and the sideband handler each turn their input into an [`Exchange`]
//! and call the same phases, in this order:
//!
//! 1. [`Pipeline::route`]: match host and path to an API ([`route`]). No match ends the
//!    exchange with ASE's "Unknown API" / "Unknown Hostname" before any phase runs.
//! 2. [`Pipeline::on_request`]: capture identities from the request head and decide.
//!    Returns a [`Decision`]; the transport forwards (inline) or answers 200 (sideband) on
//!    `Allow`, and otherwise answers for the pipeline.
//! 3. [`Pipeline::on_response`]: the response head is known (from the backend inline, from
//!    the gateway's `/ase/response` call in sideband).
//! 4. [`Pipeline::on_complete`]: the exchange is over (body finished, connection dropped or
//!    request rejected); runs exactly once per exchange and hands the record on.
//!
//! Neither transport records or enforces on its own, so the two modes cannot drift apart.

pub mod exchange;
pub mod route;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{COOKIE, USER_AGENT};
use http::{HeaderMap, StatusCode};

pub use exchange::{Exchange, UNKNOWN_CLIENT, Upstream, Verdict};
pub use route::{Api, ApiTable, Context, RouteError, Server};

use crate::config::{Config, Mode};
use crate::enforce::flow::{Kind, Pick};
use crate::enforce::{self, Block, Enforcer, flow_event};
use crate::metrics::prom::Prom;
use crate::metrics::{Metrics, Observation, activity, unix_secs, users};

/// What `on_request` decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through: forward it (inline) or answer 200 (sideband).
    Allow,
    /// Answer for the pipeline instead: inline with the block's own answer (ASE's error
    /// table, the decoy's fake response, a redirect, 429), sideband with 403.
    Block(Block),
}

/// The shared request pipeline. One instance per process, shared by every worker.
#[derive(Debug)]
pub struct Pipeline {
    mode: Mode,
    enable_xff: bool,
    apis: ArcSwap<ApiTable>,
    metrics: Arc<Metrics>,
    prom: Arc<Prom>,
    pub enforcer: Enforcer,
    /// The cluster's shared counters (cluster mode), set once after construction.
    shared: std::sync::OnceLock<Arc<dyn crate::enforce::flow::SharedCounter>>,
}

impl Pipeline {
    pub fn new(config: &Config, metrics: Arc<Metrics>, prom: Arc<Prom>) -> Pipeline {
        let enforcer = Enforcer::new(
            enforce::Config::from_settings(&config.settings),
            metrics.clone(),
        );
        let ctx = Context {
            metrics: &metrics,
            enforce: &enforcer.cfg,
            prom: &prom,
        };
        let apis = ArcSwap::from_pointee(ApiTable::new(config.apis.clone(), &ctx));
        Pipeline {
            mode: config.settings.mode,
            enable_xff: config.settings.enable_xff,
            apis,
            metrics,
            prom,
            enforcer,
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Swaps in a new set of API definitions. Exchanges in flight keep the table they
    /// started with; every later request uses the new one. Recorders are kept by API id;
    /// flow-control and detection state start afresh.
    pub fn replace_apis(&self, defs: Vec<crate::config::ApiDef>) -> Arc<ApiTable> {
        let ctx = Context {
            metrics: &self.metrics,
            enforce: &self.enforcer.cfg,
            prom: &self.prom,
        };
        let table = Arc::new(ApiTable::new(defs, &ctx));
        self.apis.store(table.clone());
        table
    }

    pub fn prom(&self) -> &Prom {
        &self.prom
    }

    /// The recorders every API's exchanges go to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The current API table. Requests already routed keep the table they started with.
    pub fn apis(&self) -> Arc<ApiTable> {
        self.apis.load_full()
    }

    /// Phase 1: match a request to an API.
    pub fn route(&self, host: Option<&str>, path: &str) -> Result<Arc<Api>, RouteError> {
        self.apis.load().route(host, path).cloned()
    }

    /// Phase 2, when the request head is known: capture the client's identifiers and
    /// decide (see `enforce`). Runs before any byte goes to a backend.
    pub fn on_request(&self, ex: &mut Exchange, headers: &HeaderMap) -> Decision {
        if self.enable_xff
            && let Some(ip) = forwarded_client(headers)
        {
            ex.client_ip = ip;
        }
        ex.user_agent = headers.get(USER_AGENT).cloned();
        if let Some(name) = ex.api.def.cookie.as_deref() {
            ex.session = cookie_value(headers, name).map(str::to_string);
        }
        let api = ex.api.clone();
        self.enforcer.decide(&api, ex, headers)
    }

    /// Inline, after `on_request` allowed: the server to forward to, within the API's
    /// server spike thresholds and connection quotas (waiting for a slot when queueing is
    /// on). `Ok(None)`: every server is out of rotation.
    pub async fn pick_server(&self, ex: &mut Exchange) -> Result<Option<Pick>, Block> {
        let api = ex.api.clone();
        let shared = self.shared.get().map(|s| s.as_ref());
        let picked = if self.enforcer.cfg.shared_client_spikes {
            match api
                .flow
                .check_client_shared(api.id(), ex.client_ip, shared)
                .await
            {
                Ok(()) => api.flow.pick(api.id(), api.candidates(), shared).await,
                Err(limited) => Err(limited),
            }
        } else {
            api.flow.pick(api.id(), api.candidates(), shared).await
        };
        match picked {
            Ok(Some(pick)) => {
                if pick.queued {
                    api.flow.record(
                        Kind::ConnectionQueued,
                        flow_event(&api, ex, Some(pick.server.addr.clone())),
                    );
                }
                Ok(Some(pick))
            }
            Ok(None) => Ok(None),
            Err(limited) => {
                api.flow.record(limited.kind, flow_event(&api, ex, None));
                ex.verdict = Verdict::Blocked("flow_control");
                Err(Block::RateLimited {
                    kind: limited.kind,
                    retry_after: limited.retry_after,
                })
            }
        }
    }

    /// Counts server spike thresholds across the cluster from now on (cluster mode).
    pub fn share_counters(&self, counter: Arc<dyn crate::enforce::flow::SharedCounter>) {
        let _ = self.shared.set(counter);
    }

    /// Expires list entries, decoy memory and idle flow-control and detection state.
    pub fn sweep(&self) {
        self.enforcer.sweep(self.apis.load().all());
    }

    /// Phase 3, when the response head is known.
    pub fn on_response(&self, ex: &mut Exchange, status: StatusCode, _headers: &HeaderMap) {
        ex.status = Some(status);
    }

    /// Phase 4, once per exchange, when it is over: the exchange is recorded.
    pub fn on_complete(&self, mut ex: Exchange) {
        let latency = ex.started.elapsed();
        ex.latency = Some(latency);
        let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let time = unix_secs(ex.received_at);
        let agent = ex.api.recorder.record(&Observation {
            time,
            method: &ex.method,
            path: ex.uri.path(),
            client_ip: ex.client_ip,
            session: ex.session.as_deref(),
            user_agent: ex.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            status: ex.status.map(|s| s.as_u16()),
            server: ex.upstream.as_ref().map(Upstream::addr),
            request_bytes: ex.request_bytes,
            response_bytes: ex.response_bytes,
            latency_us,
        });
        // api_metrics above counts every answer, as ASE's report does; what follows learns
        // about clients, and enforcer's own answers say nothing about them.
        let backend_status = ex.backend_status().map(|s| s.as_u16());
        self.metrics.activity.record(
            &activity::Request {
                time,
                api: ex.api.id(),
                method: ex.method.as_str(),
                path: ex.uri.path(),
                status: backend_status,
                os: agent.os,
                ip: ex.client_ip,
                token: ex.token.as_deref(),
                cookie: ex.session.as_deref(),
                username: ex.username.as_deref(),
                api_key: ex.api_key.as_ref().map(|k| k.value.as_str()),
            },
            // The request's own time decides its bucket; its tier cannot have aged out
            // while it ran.
            time,
        );
        let def = &ex.api.def;
        let event = users::classify(
            ex.uri.path(),
            backend_status,
            def.login_url.as_deref(),
            def.password_reset_url.as_deref(),
            &def.user_events,
        );
        self.metrics
            .users
            .record(time, event, ex.username.as_deref(), time);
        ex.api.prom.observe(&ex);
        self.enforcer.observe(&ex.api, &ex);
        tracing::debug!(
            target: "enforcer::access",
            api = ex.api.id(),
            client = %ex.client_ip,
            method = %ex.method,
            path = ex.path(),
            status = ex.status.map(|s| s.as_u16()),
            upstream = ex.upstream.as_ref().map(Upstream::addr),
            req_bytes = ex.request_bytes,
            resp_bytes = ex.response_bytes,
            latency_us,
        );
    }
}

/// The first address in the first `X-Forwarded-For` header: the original client as the
/// first trusted proxy saw it. Accepts `ip`, `ip:port` and `[v6]:port` forms.
pub fn forwarded_client(headers: &HeaderMap) -> Option<IpAddr> {
    let value = headers.get("x-forwarded-for")?.to_str().ok()?;
    let first = value.split(',').next()?.trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The value of cookie `name` in the request's `Cookie` header(s).
pub fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xff_takes_the_first_address() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "3.1.1.4, 10.0.0.1".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("3.1.1.4".parse().unwrap()));
        h.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("2001:db8::1".parse().unwrap()));
        h.insert("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(forwarded_client(&h), None);
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; JSESSIONID=abc".parse().unwrap());
        h.append(COOKIE, "b=\"2\"".parse().unwrap());
        assert_eq!(cookie_value(&h, "JSESSIONID"), Some("abc"));
        assert_eq!(cookie_value(&h, "b"), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
