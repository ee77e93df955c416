//! Real-time attack detection: deterministic, documented detectors that raise Indicators of
//! Attack (IoAs) as traffic completes, instead of ASE's offline AI engine.
//!
//! Every finished exchange the backend answered updates sliding windows (`ioa_window`, in
//! ten slots) for the API as a whole and for each of the client's identifiers (IP, token,
//! cookie, API key, username). Answers enforcer gave itself (a deny-list 403, a 429, a
//! decoy's response) are no evidence about the client and never reach here. Then:
//!
//! | IoA | type | fires when, within the window |
//! |---|---|---|
//! | `login_attack` | 2 | one IP or username has `ioa_login_failures` failed answers (401/403) on the API's `login_url`, and failures are at least `ioa_login_failure_ratio` of its sign-on attempts |
//! | `multi_client_login_attack` | 3 | `ioa_login_clients` distinct IPs each have at least `ioa_login_client_failures` failures at that ratio; raised against each of them (and never against a client that failed once or twice, or that mostly succeeds) |
//! | `stolen_token` / `stolen_cookie` | 4 | one token / session cookie is used from more than `ioa_token_ips` IPs |
//! | `stolen_api_key` | 31 | one API key is used from more than `ioa_token_ips` IPs |
//! | `api_probing` | 8 | an IP has at least `ioa_probe_min_requests` requests, 4xx answers on at least `ioa_probe_min_paths` distinct paths, and a share of 4xx answers of at least `ioa_probe_error_ratio` and 3 times the other clients' share |
//! | `extreme_client_activity` | 10 | an IP has at least `ioa_activity_min_requests` requests and more than `ioa_activity_factor` times the baseline |
//! | `data_exfiltration` | 1 | an IP has received at least `ioa_exfil_min_bytes` and more than `ioa_exfil_factor` times the baseline |
//!
//! # Baselines that attackers cannot move
//! The relative detectors (10, 1) compare a client's window with a **baseline**: the
//! median, over the *established* IPs (first seen at least a whole window ago and still
//! active), of their average per window since first seen, recomputed by [`ApiDetect::sweep`]
//! every few seconds. New addresses never count, so a flood from thousands of fresh IPs
//! cannot lower it and make a steady client look extreme; nor can one heavy client raise
//! it. An established client is also compared with its own history: a partner that has
//! sent 3,000 requests every window for an hour is not extreme at 3,000 now. Without
//! `ioa_baseline_clients` established IPs there is no baseline, and no relative IoA.
//! Probing compares a client's 4xx share with the other clients'; a flood can only raise
//! that share (hiding a prober), never make a client that gets no 4xx look like one.
//!
//! Each IoA fires at most once per client and window. The ASE-detected kind (type 101,
//! invalid API activity: pattern violations, decoy access, a missing mandatory token) is
//! raised by the request phase, not here.
//!
//! State is bounded: at most `ioa_max_clients` identifiers are tracked per API, and windows
//! idle for a whole window are dropped by [`ApiDetect::sweep`].
//!
//! # No lock every worker takes
//! Every worker feeds [`ApiDetect::observe`] for every exchange, so nothing it writes for
//! every exchange is shared by all of them. Each identifier's window is its own entry (a
//! client's requests contend only with that client's). The API-wide window (requests and
//! 4xx answers, which probing compares a client with) is sharded per worker thread
//! ([`crate::sharded`]): a worker bumps its own shard's slot with one compare-and-swap,
//! and the shards are summed only when a client is a probing suspect. The IPs taking part
//! in a distributed login attack are a sharded map, touched only on failed sign-ons.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;

use crate::sharded::Shards;

/// The slots a window is split into.
const SLOTS: usize = 10;

/// A client identifier as detection tracks it (cookie and API key by value: their name is
/// the API's).
pub use crate::vocab::ClientId;
pub use crate::vocab::Ioa;

pub use crate::config::conf::IoaThresholds as Thresholds;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    epoch: u64,
    requests: u64,
    errors: u64,
    login_attempts: u64,
    login_failures: u64,
    bytes_out: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    requests: u64,
    errors: u64,
    login_attempts: u64,
    login_failures: u64,
    bytes_out: u64,
}

impl Sums {
    /// Failed sign-ons at or over `count` and, of the attempts, at least `ratio`.
    fn failing_logins(&self, count: u64, ratio: f64) -> bool {
        self.login_failures >= count
            && self.login_failures as f64 >= ratio * self.login_attempts.max(1) as f64
    }
}

#[derive(Debug, Default)]
struct Window {
    slots: [Slot; SLOTS],
    last_epoch: u64,
    /// The epoch this identifier was first seen in (since it was last dropped as idle).
    first_epoch: Option<u64>,
    /// Since first seen: requests and response bytes (its own history).
    lifetime_requests: u64,
    lifetime_bytes: u64,
    /// Counted among the API's active IPs.
    active: bool,
    /// IPs seen using this token, cookie or key, with the epoch last seen.
    ips: Vec<(IpAddr, u64)>,
    /// Paths (hashed) this client got 4xx answers on, with the epoch last seen.
    failing_paths: Vec<(u64, u64)>,
    /// IoAs fired for this client, with the epoch they fired in.
    fired: Vec<(Ioa, u64)>,
}

impl Window {
    fn add(&mut self, epoch: u64, f: &Facts) {
        let slot = &mut self.slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != epoch {
            *slot = Slot {
                epoch,
                ..Slot::default()
            };
        }
        slot.requests += 1;
        slot.errors += u64::from(f.error);
        slot.login_attempts += u64::from(f.login_attempt);
        slot.login_failures += u64::from(f.login_failure);
        slot.bytes_out += f.bytes_out;
        if self.first_epoch.is_none() || self.idle(epoch) {
            self.first_epoch = Some(epoch);
            self.lifetime_requests = 0;
            self.lifetime_bytes = 0;
        }
        self.lifetime_requests = self.lifetime_requests.saturating_add(1);
        self.lifetime_bytes = self.lifetime_bytes.saturating_add(f.bytes_out);
        self.last_epoch = epoch;
    }

    fn sums(&self, epoch: u64) -> Sums {
        let mut s = Sums::default();
        for slot in self
            .slots
            .iter()
            .filter(|s| s.epoch + SLOTS as u64 > epoch && s.epoch <= epoch)
        {
            s.requests += slot.requests;
            s.errors += slot.errors;
            s.login_attempts += slot.login_attempts;
            s.login_failures += slot.login_failures;
            s.bytes_out += slot.bytes_out;
        }
        s
    }

    fn idle(&self, epoch: u64) -> bool {
        self.last_epoch + (SLOTS as u64) <= epoch
    }

    /// Seen for at least a whole window before the current one.
    fn established(&self, epoch: u64) -> bool {
        self.first_epoch
            .is_some_and(|first| first + SLOTS as u64 <= epoch)
    }

    /// Requests and bytes per window since first seen (`None` until established).
    fn history(&self, epoch: u64) -> Option<(f64, f64)> {
        let first = self.first_epoch.filter(|_| self.established(epoch))?;
        let windows = (epoch + 1 - first) as f64 / SLOTS as f64;
        Some((
            self.lifetime_requests as f64 / windows,
            self.lifetime_bytes as f64 / windows,
        ))
    }

    /// Records `ip` and returns how many distinct IPs used this identifier in the window.
    fn seen_from(&mut self, ip: IpAddr, epoch: u64, cap: usize) -> usize {
        self.ips.retain(|(_, e)| e + SLOTS as u64 > epoch);
        if let Some(entry) = self.ips.iter_mut().find(|(i, _)| *i == ip) {
            entry.1 = epoch;
        } else if self.ips.len() <= cap {
            self.ips.push((ip, epoch));
        }
        self.ips.len()
    }

    /// Records a failing path and returns how many distinct ones failed in the window.
    fn failed_on(&mut self, path: u64, epoch: u64, cap: usize) -> usize {
        self.failing_paths.retain(|(_, e)| e + SLOTS as u64 > epoch);
        if let Some(entry) = self.failing_paths.iter_mut().find(|(p, _)| *p == path) {
            entry.1 = epoch;
        } else if self.failing_paths.len() <= cap {
            self.failing_paths.push((path, epoch));
        }
        self.failing_paths.len()
    }

    /// Marks `ioa` as fired unless it already fired in this window; true when it is new.
    fn arm(&mut self, ioa: Ioa, epoch: u64) -> bool {
        self.fired.retain(|(_, e)| e + SLOTS as u64 > epoch);
        if self.fired.iter().any(|(i, _)| *i == ioa) {
            return false;
        }
        self.fired.push((ioa, epoch));
        true
    }
}

/// The API-wide window: requests and 4xx answers per slot, sharded per worker thread.
///
/// Each count is one word that carries its slot's epoch (high 32 bits) beside the count
/// (low 32 bits), so moving a slot to a new epoch and counting in it is a single
/// compare-and-swap: no lock, and no count lost to a reset racing with an increment.
/// (Epochs fit 32 bits: unix seconds over slots of at least a second, until 2106.)
#[derive(Debug, Default)]
struct ApiWindow {
    shards: Shards<ApiSlots>,
}

#[derive(Debug, Default)]
struct ApiSlots {
    requests: [AtomicU64; SLOTS],
    errors: [AtomicU64; SLOTS],
}

impl ApiWindow {
    fn add(&self, epoch: u64, error: bool) {
        let shard = self.shards.local();
        let slot = (epoch % SLOTS as u64) as usize;
        count_in(&shard.requests[slot], epoch, 1);
        if error {
            count_in(&shard.errors[slot], epoch, 1);
        }
    }

    /// Requests and 4xx answers in the window ending at `epoch`, over every shard.
    fn sums(&self, epoch: u64) -> Sums {
        let in_window = |word: &AtomicU64| {
            let (tag, n) = untag(word.load(Relaxed));
            if tag + SLOTS as u64 > epoch && tag <= epoch {
                n
            } else {
                0
            }
        };
        let mut s = Sums::default();
        for shard in self.shards.iter() {
            s.requests += shard.requests.iter().map(in_window).sum::<u64>();
            s.errors += shard.errors.iter().map(in_window).sum::<u64>();
        }
        s
    }
}

/// Adds `n` to a tagged count for `epoch`, restarting it from 0 if it held another epoch
/// (as a [`Window`]'s slot is reset).
fn count_in(word: &AtomicU64, epoch: u64, n: u64) {
    let tag = epoch & u64::from(u32::MAX);
    let _ = word.fetch_update(Relaxed, Relaxed, |current| {
        let (was, count) = untag(current);
        let count = if was == tag { count + n } else { n };
        Some(tag << 32 | count.min(u64::from(u32::MAX)))
    });
}

/// A tagged count's (epoch, count).
fn untag(word: u64) -> (u64, u64) {
    (word >> 32, word & u64::from(u32::MAX))
}

/// What detection needs to know about a finished exchange the backend answered.
#[derive(Debug, Clone)]
pub struct Facts {
    pub ip: IpAddr,
    pub token: Option<Arc<str>>,
    pub cookie: Option<Arc<str>>,
    pub api_key: Option<Arc<str>>,
    pub username: Option<Arc<str>>,
    /// Answered 4xx.
    pub error: bool,
    /// The request path, hashed (distinct failing paths tell probing apart).
    pub path_hash: u64,
    /// A request to the API's login URL that was answered (a sign-on attempt).
    pub login_attempt: bool,
    /// A failed answer (401/403) on the API's login URL.
    pub login_failure: bool,
    pub bytes_out: u64,
}

/// One detection: an IoA against a client identifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub ioa: Ioa,
    pub client: ClientId,
    pub detail: String,
}

impl std::fmt::Debug for ApiDetect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDetect")
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// The baseline of the relative detectors, as the last sweep computed it.
#[derive(Debug, Default)]
struct Baseline {
    /// Established IPs it was computed over.
    clients: AtomicU64,
    /// Median requests per window, and median response bytes per window, as `f64` bits.
    requests: AtomicU64,
    bytes: AtomicU64,
}

/// One API's detector state.
pub struct ApiDetect {
    clients: DashMap<ClientId, Mutex<Window>, foldhash::fast::RandomState>,
    api: ApiWindow,
    /// IPs that have failed on the login URL often enough, and at a high enough share of
    /// their attempts, to take part in a distributed login attack: the epoch of their
    /// last failure, and whether the IoA was raised against them in the current window.
    /// An entry whose last failure is a window old counts as gone (sweeps remove it).
    login_suspects: DashMap<IpAddr, (u64, bool), foldhash::fast::RandomState>,
    active_ips: AtomicU64,
    baseline: Baseline,
    /// Identifiers not tracked because the API was at `max_clients` or the detection part
    /// of the memory budget was full.
    pub untracked: AtomicU64,
    /// The detection part of the memory budget, shared with the other APIs.
    memory: Arc<crate::memory::Pool>,
    /// What this API's windows took from it (given back when they go, or the API does).
    charged: std::sync::atomic::AtomicI64,
}

impl ApiDetect {
    /// Detection state drawing on `memory` (the detection part of the memory budget).
    pub fn new(memory: Arc<crate::memory::Pool>) -> ApiDetect {
        ApiDetect {
            clients: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            api: ApiWindow::default(),
            login_suspects: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            active_ips: AtomicU64::new(0),
            baseline: Baseline::default(),
            untracked: AtomicU64::new(0),
            memory,
            charged: std::sync::atomic::AtomicI64::new(0),
        }
    }
}

impl Drop for ApiDetect {
    fn drop(&mut self) {
        self.memory.give_back(self.charged.load(Relaxed));
    }
}

/// What a window of `key` costs in the memory budget.
fn window_cost(key: &ClientId) -> i64 {
    let text = match key {
        ClientId::Ip(_) => 0,
        ClientId::Token(v) | ClientId::Cookie(v) | ClientId::ApiKey(v) | ClientId::Username(v) => {
            v.len() as i64
        }
    };
    crate::memory::cost::DETECTION_WINDOW + text
}

impl Default for ApiDetect {
    /// Detection state without a memory budget (`ioa_max_clients` still bounds it).
    fn default() -> Self {
        ApiDetect::new(Arc::new(crate::memory::Pool::new("detection", u64::MAX)))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The slot (epoch) of `now` for windows of `t.window`.
fn epoch_of(t: &Thresholds, now: i64) -> u64 {
    let slot_secs = (t.window.as_secs() / SLOTS as u64).max(1);
    u64::try_from(now).unwrap_or(0) / slot_secs
}

impl ApiDetect {
    /// Feeds one finished exchange at `now` (unix seconds); returns the IoAs it raised.
    pub fn observe(&self, t: &Thresholds, f: &Facts, now: i64) -> Vec<Detection> {
        let epoch = epoch_of(t, now);
        let mut out = Vec::new();

        self.api.add(epoch, f.error);

        // The IP: login attack, probing, extreme activity, exfiltration. An unknown client
        // address (unspecified: a sideband call without a usable `source_ip`) stands for
        // many clients and is not tracked.
        let ip_known = !f.ip.is_unspecified();
        let ip_key = ClientId::Ip(f.ip);
        let ip_result = if !ip_known {
            None
        } else {
            self.with_window(t, &ip_key, |w| {
                let newly_active = !w.active || w.idle(epoch);
                w.add(epoch, f);
                w.active = true;
                let failing_paths = if f.error {
                    w.failed_on(f.path_hash, epoch, t.probe_min_paths)
                } else {
                    w.failing_paths.len()
                };
                (newly_active, w.sums(epoch), failing_paths, w.history(epoch))
            })
        };
        if let Some((newly_active, ip, failing_paths, history)) = ip_result {
            if newly_active {
                self.active_ips.fetch_add(1, Relaxed);
            }
            let mut fire = |ioa: Ioa, detail: String| {
                if self.arm(&ip_key, ioa, epoch) {
                    out.push(Detection {
                        ioa,
                        client: ip_key.clone(),
                        detail,
                    });
                }
            };
            if f.login_failure && ip.failing_logins(t.login_failures, t.login_failure_ratio) {
                fire(
                    Ioa::LoginAttack,
                    format!(
                        "{} failed sign-ons of {} attempts",
                        ip.login_failures, ip.login_attempts
                    ),
                );
            }
            if ip.requests >= t.probe_min_requests && failing_paths >= t.probe_min_paths {
                // Only a suspect's exchanges read the whole API window (every shard).
                let api = self.api.sums(epoch);
                let others = self.active_ips.load(Relaxed).saturating_sub(1);
                let other_requests = api.requests.saturating_sub(ip.requests);
                let other_errors = api.errors.saturating_sub(ip.errors);
                let ratio = ip.errors as f64 / ip.requests as f64;
                let normal = if others >= t.baseline_clients && other_requests > 0 {
                    other_errors as f64 / other_requests as f64
                } else {
                    0.0
                };
                if ratio >= t.probe_error_ratio && ratio >= 3.0 * normal {
                    fire(
                        Ioa::ApiProbing,
                        format!(
                            "{:.0}% of {} requests answered 4xx, on {failing_paths} paths (others {:.0}%)",
                            ratio * 100.0,
                            ip.requests,
                            normal * 100.0
                        ),
                    );
                }
            }
            if let Some((base_requests, base_bytes)) = self.baseline(t) {
                let (own_requests, own_bytes) = history.unwrap_or((0.0, 0.0));
                let usual = base_requests.max(own_requests);
                if ip.requests >= t.activity_min_requests
                    && ip.requests as f64 > t.activity_factor * usual
                {
                    fire(
                        Ioa::ExtremeClientActivity,
                        format!(
                            "{} requests in the window; usual {usual:.0} (baseline {base_requests:.0}, own {})",
                            ip.requests,
                            history.map_or("none yet".into(), |_| format!("{own_requests:.0}"))
                        ),
                    );
                }
                let usual = base_bytes.max(own_bytes);
                if ip.bytes_out >= t.exfil_min_bytes && ip.bytes_out as f64 > t.exfil_factor * usual
                {
                    fire(
                        Ioa::DataExfiltration,
                        format!(
                            "{} bytes out in the window; usual {usual:.0} (baseline {base_bytes:.0}, own {})",
                            ip.bytes_out,
                            history.map_or("none yet".into(), |_| format!("{own_bytes:.0}"))
                        ),
                    );
                }
            }
            // A distributed login attack: many IPs that each fail often and rarely succeed.
            if f.login_failure && ip.failing_logins(t.login_client_failures, t.login_failure_ratio)
            {
                out.extend(self.login_campaign(t, f.ip, epoch));
            }
        }

        // The username: login attack.
        if let Some(u) = &f.username {
            let key = ClientId::Username(u.clone());
            let sums = self.with_window(t, &key, |w| {
                w.add(epoch, f);
                w.sums(epoch)
            });
            if let Some(sums) = sums
                && f.login_failure
                && sums.failing_logins(t.login_failures, t.login_failure_ratio)
                && self.arm(&key, Ioa::LoginAttack, epoch)
            {
                out.push(Detection {
                    ioa: Ioa::LoginAttack,
                    client: key,
                    detail: format!(
                        "{} failed sign-ons of {} attempts",
                        sums.login_failures, sums.login_attempts
                    ),
                });
            }
        }

        // Tokens, cookies and API keys used from too many IPs.
        for (value, make, ioa) in [
            (
                &f.token,
                ClientId::Token as fn(Arc<str>) -> ClientId,
                Ioa::StolenToken,
            ),
            (&f.cookie, ClientId::Cookie, Ioa::StolenCookie),
            (&f.api_key, ClientId::ApiKey, Ioa::StolenApiKey),
        ] {
            let Some(v) = value else { continue };
            let key = make(v.clone());
            let ips = self.with_window(t, &key, |w| {
                w.add(epoch, f);
                if ip_known {
                    w.seen_from(f.ip, epoch, t.token_ips)
                } else {
                    w.ips.len()
                }
            });
            if ips.is_some_and(|n| n > t.token_ips) && self.arm(&key, ioa, epoch) {
                out.push(Detection {
                    ioa,
                    client: key,
                    detail: format!("used from more than {} IPs in the window", t.token_ips),
                });
            }
        }
        out
    }

    /// `ip` qualifies for a distributed login attack: once `login_clients` such IPs are
    /// in the window, every one of them not yet raised in this window is.
    fn login_campaign(&self, t: &Thresholds, ip: IpAddr, epoch: u64) -> Vec<Detection> {
        let live = |e: u64| e + SLOTS as u64 > epoch;
        let suspects = &self.login_suspects;
        // Every guard is dropped before the next call on the map.
        let known = suspects.get_mut(&ip).map(|mut s| {
            // Back after a whole window: a new suspect, not yet raised.
            *s = (epoch, s.1 && live(s.0));
        });
        if known.is_none() {
            // At the cap, gone suspects make room first (as a sweep would).
            if suspects.len() > t.max_clients {
                suspects.retain(|_, (e, _)| live(*e));
            }
            if suspects.len() <= t.max_clients {
                suspects.entry(ip).or_insert((epoch, false)).0 = epoch;
            }
        }
        let n = suspects.iter().filter(|s| live(s.0)).count();
        if n < t.login_clients {
            return Vec::new();
        }
        // Each suspect is taken once, under its shard's lock, by whichever exchange
        // gets there first.
        let raised: Vec<IpAddr> = suspects
            .iter_mut()
            .filter_map(|mut s| {
                let (e, raised) = *s;
                (live(e) && !raised).then(|| {
                    s.1 = true;
                    *s.key()
                })
            })
            .collect();
        raised
            .into_iter()
            .filter_map(|ip| {
                let key = ClientId::Ip(ip);
                self.arm(&key, Ioa::MultiClientLoginAttack, epoch)
                    .then(|| Detection {
                        ioa: Ioa::MultiClientLoginAttack,
                        client: key,
                        detail: format!(
                            "one of {n} IPs each failing at least {} sign-ons, mostly failures",
                            t.login_client_failures
                        ),
                    })
            })
            .collect()
    }

    /// The baseline (median requests and bytes per window of established IPs), when there
    /// are enough established IPs for one.
    fn baseline(&self, t: &Thresholds) -> Option<(f64, f64)> {
        let b = &self.baseline;
        (b.clients.load(Relaxed) >= t.baseline_clients.max(1)).then(|| {
            (
                f64::from_bits(b.requests.load(Relaxed)),
                f64::from_bits(b.bytes.load(Relaxed)),
            )
        })
    }

    /// Runs `f` on `key`'s window, creating it if the API is under its cap.
    fn with_window<R>(
        &self,
        t: &Thresholds,
        key: &ClientId,
        f: impl FnOnce(&mut Window) -> R,
    ) -> Option<R> {
        if let Some(w) = self.clients.get(key) {
            return Some(f(&mut lock(&w)));
        }
        let cost = window_cost(key);
        if self.clients.len() >= t.max_clients || !self.memory.try_take(cost) {
            self.untracked.fetch_add(1, Relaxed);
            return None;
        }
        let mut fresh = false;
        self.clients.entry(key.clone()).or_insert_with(|| {
            fresh = true;
            Mutex::default()
        });
        if fresh {
            self.charged.fetch_add(cost, Relaxed);
        } else {
            // Another request created it meanwhile.
            self.memory.give_back(cost);
        }
        let w = self.clients.get(key)?;
        Some(f(&mut lock(&w)))
    }

    fn arm(&self, key: &ClientId, ioa: Ioa, epoch: u64) -> bool {
        self.clients
            .get(key)
            .is_some_and(|w| lock(&w).arm(ioa, epoch))
    }

    /// Drops windows idle for a whole window, keeps the active-IP count honest, and
    /// recomputes the baseline from the established IPs.
    pub fn sweep(&self, t: &Thresholds, now: i64) {
        let epoch = epoch_of(t, now);
        let mut gone_active = 0;
        let mut requests = Vec::new();
        let mut bytes = Vec::new();
        let mut freed = 0;
        self.clients.retain(|key, w| {
            let w = w.get_mut().unwrap_or_else(|e| e.into_inner());
            let idle = w.idle(epoch);
            if idle && w.active {
                gone_active += 1;
            }
            if !idle
                && matches!(key, ClientId::Ip(_))
                && let Some((r, b)) = w.history(epoch)
            {
                requests.push(r);
                bytes.push(b);
            }
            if idle {
                freed += window_cost(key);
            }
            !idle
        });
        self.memory.give_back(freed);
        self.charged.fetch_sub(freed, Relaxed);
        self.login_suspects
            .retain(|_, (e, _)| *e + SLOTS as u64 > epoch);
        let _ = self
            .active_ips
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(gone_active)));
        let b = &self.baseline;
        b.clients.store(requests.len() as u64, Relaxed);
        b.requests.store(median(&mut requests).to_bits(), Relaxed);
        b.bytes.store(median(&mut bytes).to_bits(), Relaxed);
    }

    /// The baseline as the last sweep computed it: (established IPs, median requests per
    /// window, median response bytes per window).
    pub fn baseline_now(&self) -> (u64, f64, f64) {
        let b = &self.baseline;
        (
            b.clients.load(Relaxed),
            f64::from_bits(b.requests.load(Relaxed)),
            f64::from_bits(b.bytes.load(Relaxed)),
        )
    }

    /// Identifiers tracked now.
    pub fn tracked(&self) -> usize {
        self.clients.len()
    }
}

/// The median of `v` (0 when empty).
fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(ip: &str) -> Facts {
        Facts {
            ip: ip.parse().unwrap(),
            token: None,
            cookie: None,
            api_key: None,
            username: None,
            error: false,
            path_hash: 0,
            login_attempt: false,
            login_failure: false,
            bytes_out: 1_000,
        }
    }

    fn login(ip: &str, failed: bool) -> Facts {
        let mut f = facts(ip);
        f.login_attempt = true;
        f.login_failure = failed;
        f.error = failed;
        f
    }

    fn thresholds() -> Thresholds {
        Thresholds::default()
    }

    const NOW: i64 = 1_700_000_000;
    /// One window later (the default window is 600 s).
    const LATER: i64 = NOW + 600;

    /// Normal traffic from several clients.
    fn normal(d: &ApiDetect, t: &Thresholds, at: i64) -> Vec<Detection> {
        let mut out = Vec::new();
        for i in 0..8 {
            for _ in 0..30 {
                out.extend(d.observe(t, &facts(&format!("10.0.0.{i}")), at));
            }
        }
        out
    }

    /// Normal traffic for a window, then a sweep: the clients are established and the
    /// baseline is known.
    fn with_baseline(d: &ApiDetect, t: &Thresholds) {
        for at in [NOW, NOW + 300, LATER] {
            assert!(normal(d, t, at).is_empty());
        }
        d.sweep(t, LATER);
        assert!(d.baseline(t).is_some());
    }

    fn names(v: Vec<Detection>) -> Vec<Ioa> {
        v.into_iter().map(|d| d.ioa).collect()
    }

    #[test]
    fn quiet_on_normal_traffic() {
        let (d, t) = (ApiDetect::default(), thresholds());
        with_baseline(&d, &t);
    }

    #[test]
    fn login_attack_needs_volume_and_mostly_failures() {
        let (d, t) = (ApiDetect::default(), thresholds());
        let fired: Vec<Ioa> = (0..10)
            .flat_map(|_| d.observe(&t, &login("6.6.6.6", true), NOW))
            .map(|x| x.ioa)
            .collect();
        assert_eq!(
            fired,
            [Ioa::LoginAttack],
            "fires once, at the tenth failure"
        );

        // A busy NAT address: ten failures among fifty sign-ons is not an attack.
        let (d, t) = (ApiDetect::default(), thresholds());
        let mut fired = Vec::new();
        for i in 0..50 {
            fired.extend(d.observe(&t, &login("7.7.7.7", i % 5 == 0), NOW));
        }
        assert!(fired.is_empty(), "{fired:?}");
    }

    #[test]
    fn a_distributed_login_attack_is_held_against_the_attackers_only() {
        let (d, t) = (ApiDetect::default(), thresholds());
        // Twenty users who mistype once or twice, then sign on: no attack.
        let mut fired = Vec::new();
        for i in 0..20 {
            let ip = format!("203.0.113.{i}");
            for _ in 0..(1 + i % 2) {
                fired.extend(d.observe(&t, &login(&ip, true), NOW));
            }
            fired.extend(d.observe(&t, &login(&ip, false), NOW));
        }
        assert!(fired.is_empty(), "{fired:?}");
        // Ten IPs that each fail three times and never succeed: each is raised, once.
        let mut fired = Vec::new();
        for round in 0..4 {
            for i in 0..10 {
                let _ = round;
                fired.extend(d.observe(&t, &login(&format!("198.51.100.{i}"), true), NOW));
            }
        }
        let mut raised: Vec<String> = fired
            .iter()
            .map(|x| {
                assert_eq!(x.ioa, Ioa::MultiClientLoginAttack);
                x.client.value()
            })
            .collect();
        raised.sort();
        let mut expected: Vec<String> = (0..10).map(|i| format!("198.51.100.{i}")).collect();
        expected.sort();
        assert_eq!(raised, expected);
    }

    #[test]
    fn stolen_token_cookie_and_key() {
        let (d, t) = (ApiDetect::default(), thresholds());
        let mut fired = Vec::new();
        for i in 0..7 {
            let mut f = facts(&format!("8.8.8.{i}"));
            f.token = Some(Arc::from("tok"));
            f.cookie = Some(Arc::from("cookie"));
            f.api_key = Some(Arc::from("key"));
            fired.extend(
                d.observe(&t, &f, NOW)
                    .into_iter()
                    .map(|x| (x.ioa, x.client.kind())),
            );
        }
        assert_eq!(
            fired,
            [
                (Ioa::StolenToken, crate::vocab::ClientKind::Token),
                (Ioa::StolenCookie, crate::vocab::ClientKind::Cookie),
                (Ioa::StolenApiKey, crate::vocab::ClientKind::ApiKey)
            ],
            "each fires once, on the sixth IP"
        );
    }

    #[test]
    fn probing_is_many_failing_paths_not_one_broken_call() {
        let (d, t) = (ApiDetect::default(), thresholds());
        assert!(normal(&d, &t, NOW).is_empty());
        // A client failing again and again on a few paths is broken, not probing...
        let mut broken = facts("5.5.5.6");
        broken.error = true;
        let fired: Vec<Detection> = (0..50)
            .flat_map(|i| {
                broken.path_hash = i % 4;
                d.observe(&t, &broken, NOW)
            })
            .collect();
        assert!(fired.is_empty(), "{fired:?}");
        // ... one failing across many distinct paths is.
        let mut probe = facts("5.5.5.5");
        probe.error = true;
        let fired = names(
            (0..20)
                .flat_map(|i| {
                    probe.path_hash = i;
                    d.observe(&t, &probe, NOW)
                })
                .collect(),
        );
        assert_eq!(fired, [Ioa::ApiProbing]);
    }

    #[test]
    fn extreme_activity_and_exfiltration_against_the_established_baseline() {
        let (d, t) = (ApiDetect::default(), thresholds());
        // Without established clients there is no baseline and no relative IoA.
        let busy = facts("4.4.4.4");
        let fired: Vec<Detection> = (0..2_000).flat_map(|_| d.observe(&t, &busy, NOW)).collect();
        assert!(fired.is_empty(), "{fired:?}");

        let (d, t) = (ApiDetect::default(), thresholds());
        with_baseline(&d, &t);
        let fired = names(
            (0..1_000)
                .flat_map(|_| d.observe(&t, &busy, LATER))
                .collect(),
        );
        assert_eq!(fired, [Ioa::ExtremeClientActivity]);
        let mut greedy = facts("3.3.3.3");
        greedy.bytes_out = 60 << 20;
        assert_eq!(
            names(d.observe(&t, &greedy, LATER)),
            [Ioa::DataExfiltration]
        );
    }

    #[test]
    fn a_steady_heavy_client_is_not_extreme_and_a_flood_cannot_make_it_so() {
        let (d, t) = (ApiDetect::default(), thresholds());
        // A partner at 1,500 requests a window since the start, beside normal clients.
        let partner = facts("192.0.2.50");
        for at in [NOW, NOW + 300, LATER, LATER + 300] {
            for _ in 0..750 {
                assert!(d.observe(&t, &partner, at).is_empty());
            }
            assert!(normal(&d, &t, at).is_empty());
            d.sweep(&t, at);
        }
        // A flood from a thousand fresh addresses, five requests each: the baseline is
        // the established clients', so the partner stays what it was.
        let flood_at = LATER + 400;
        for i in 0..1_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a10_0000 + i).to_string();
            for _ in 0..5 {
                assert!(d.observe(&t, &facts(&ip), flood_at).is_empty());
            }
        }
        d.sweep(&t, flood_at);
        for _ in 0..1_500 {
            let fired = d.observe(&t, &partner, flood_at);
            assert!(fired.is_empty(), "{fired:?}");
        }
    }

    #[test]
    fn windows_expire_and_state_is_bounded() {
        let (d, mut t) = (ApiDetect::default(), thresholds());
        t.max_clients = 50;
        for i in 0..500u32 {
            d.observe(&t, &facts(&IpAddr::from(i.to_be_bytes()).to_string()), NOW);
        }
        assert!(d.tracked() <= 50);
        assert!(d.untracked.load(Relaxed) > 0);
        d.sweep(&t, NOW + 601);
        assert_eq!(d.tracked(), 0);
        assert_eq!(d.active_ips.load(Relaxed), 0);

        // A login attack spread over more than a window never adds up.
        let fired: Vec<Detection> = (0..20)
            .flat_map(|i| d.observe(&t, &login("6.6.6.6", true), NOW + i * 120))
            .collect();
        assert!(fired.is_empty(), "{fired:?}");
    }

    /// Many workers feeding one API at once: every count is exact and every IoA fires
    /// exactly once per client, however the exchanges interleave. More threads than
    /// shards, so threads share the API window's shards and a lost update would show.
    #[test]
    fn several_workers_on_one_api_count_exactly_and_fire_once() {
        let threads = crate::sharded::count() * 3;
        let per_thread = 5_000;
        let attackers: Vec<String> = (0..12).map(|i| format!("198.51.100.{i}")).collect();
        let (d, t) = (ApiDetect::default(), thresholds());
        let fired: Vec<Detection> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|th| {
                    let (d, t, attackers) = (&d, &t, &attackers);
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        let mine = format!("10.9.{}.{}", th / 200, th % 200);
                        for i in 0..per_thread {
                            let mut f = facts(&mine);
                            f.error = i % 4 == 0;
                            f.token = (i % 100 == 0).then(|| Arc::from("shared"));
                            out.extend(d.observe(t, &f, NOW));
                            if i % 100 == 0 && i / 100 < 3 * attackers.len() {
                                let mut f = login(&attackers[i / 100 % attackers.len()], true);
                                f.username = Some(Arc::from("victim"));
                                out.extend(d.observe(t, &f, NOW));
                            }
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let epoch = epoch_of(&t, NOW);
        let failures = (threads * 3 * attackers.len()) as u64;
        let sent = (threads * per_thread) as u64 + failures;
        let api = d.api.sums(epoch);
        let errors = (threads * per_thread / 4) as u64 + failures;
        assert_eq!((api.requests, api.errors), (sent, errors));
        let window = |key: ClientId| d.clients.get(&key).map(|w| lock(&w).sums(epoch));
        for th in 0..threads {
            let ip = ClientId::Ip(format!("10.9.{}.{}", th / 200, th % 200).parse().unwrap());
            assert_eq!(window(ip).map(|s| s.requests), Some(per_thread as u64));
        }
        for a in &attackers {
            let s = window(ClientId::Ip(a.parse().unwrap())).unwrap();
            assert_eq!(
                (s.login_attempts, s.login_failures),
                (threads as u64 * 3, threads as u64 * 3)
            );
        }
        let victim = window(ClientId::Username(Arc::from("victim"))).unwrap();
        assert_eq!(victim.login_failures, failures);

        let mut got: Vec<(Ioa, String)> = fired.iter().map(|x| (x.ioa, x.client.value())).collect();
        got.sort_by(|a, b| (a.0.index(), &a.1).cmp(&(b.0.index(), &b.1)));
        let mut expected: Vec<(Ioa, String)> = attackers
            .iter()
            .flat_map(|a| {
                [
                    (Ioa::LoginAttack, a.clone()),
                    (Ioa::MultiClientLoginAttack, a.clone()),
                ]
            })
            .chain([
                (Ioa::LoginAttack, "victim".to_string()),
                (Ioa::StolenToken, "shared".to_string()),
            ])
            .collect();
        expected.sort_by(|a, b| (a.0.index(), &a.1).cmp(&(b.0.index(), &b.1)));
        assert_eq!(got, expected);
    }

    #[test]
    fn an_unknown_client_address_is_never_tracked() {
        let (d, t) = (ApiDetect::default(), thresholds());
        with_baseline(&d, &t);
        let unknown = facts("0.0.0.0");
        let fired: Vec<Detection> = (0..5_000)
            .flat_map(|_| d.observe(&t, &login("0.0.0.0", true), LATER))
            .chain((0..5_000).flat_map(|_| d.observe(&t, &unknown, LATER)))
            .collect();
        assert!(fired.is_empty(), "{fired:?}");
    }
}
