//! Real-time attack detection: deterministic, documented detectors that raise Indicators of
//! Attack (IoAs) as traffic completes, instead of ASE's offline AI engine.
//!
//! Every finished exchange updates sliding windows (`ioa_window`, in ten slots) for the
//! API as a whole and for each of the client's identifiers (IP, token, cookie, API key,
//! username). Then:
//!
//! | IoA | type | fires when, within the window |
//! |---|---|---|
//! | `login_attack` | 2 | one IP or username has `ioa_login_failures` failed answers (401/403) on the API's `login_url` |
//! | `multi_client_login_attack` | 3 | `ioa_login_clients` distinct IPs have failed on `login_url` (raised against each of them) |
//! | `stolen_token` / `stolen_cookie` | 4 | one token / session cookie is used from more than `ioa_token_ips` IPs |
//! | `stolen_api_key` | 31 | one API key is used from more than `ioa_token_ips` IPs |
//! | `api_probing` | 8 | an IP has at least `ioa_probe_min_requests` requests, 4xx answers on at least `ioa_probe_min_paths` distinct paths, and a share of 4xx answers of at least `ioa_probe_error_ratio` and 3 times the other clients' share |
//! | `extreme_client_activity` | 10 | an IP has at least `ioa_activity_min_requests` requests and more than `ioa_activity_factor` times the average of the other active IPs |
//! | `data_exfiltration` | 1 | an IP has received at least `ioa_exfil_min_bytes` and more than `ioa_exfil_factor` times the average of the other active IPs |
//!
//! The relative detectors (8, 10, 1) compare a client with the others only when at least
//! `ioa_baseline_clients` other IPs are active: with fewer there is no baseline, and a
//! single heavy client (an app, a batch job) is not an attack by itself. Each IoA fires at
//! most once per client and window. The ASE-detected kind (type 101, invalid API activity:
//! pattern violations, decoy access, a missing mandatory token) is raised by the request
//! phase, not here.
//!
//! State is bounded: at most `ioa_max_clients` identifiers are tracked per API, and windows
//! idle for a whole window are dropped by [`ApiDetect::sweep`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use serde::Serialize;

/// The slots a window is split into.
const SLOTS: usize = 10;

/// An Indicator of Attack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ioa {
    DataExfiltration,
    LoginAttack,
    MultiClientLoginAttack,
    StolenToken,
    StolenCookie,
    ApiProbing,
    ExtremeClientActivity,
    StolenApiKey,
    /// Type 101: a protocol, method or content-type rule broken.
    PatternViolation,
    /// Type 101: a decoy path touched.
    DecoyAccess,
    /// Type 101: no token on an API where it is mandatory.
    MissingToken,
}

impl Ioa {
    pub const ALL: [Ioa; 11] = [
        Ioa::DataExfiltration,
        Ioa::LoginAttack,
        Ioa::MultiClientLoginAttack,
        Ioa::StolenToken,
        Ioa::StolenCookie,
        Ioa::ApiProbing,
        Ioa::ExtremeClientActivity,
        Ioa::StolenApiKey,
        Ioa::PatternViolation,
        Ioa::DecoyAccess,
        Ioa::MissingToken,
    ];

    /// Position in [`Ioa::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// ASE's attack type id.
    pub fn type_id(self) -> u16 {
        match self {
            Ioa::DataExfiltration => 1,
            Ioa::LoginAttack => 2,
            Ioa::MultiClientLoginAttack => 3,
            Ioa::StolenToken | Ioa::StolenCookie => 4,
            Ioa::ApiProbing => 8,
            Ioa::ExtremeClientActivity => 10,
            Ioa::StolenApiKey => 31,
            Ioa::PatternViolation | Ioa::DecoyAccess | Ioa::MissingToken => 101,
        }
    }

    /// The stable name.
    pub fn name(self) -> &'static str {
        match self {
            Ioa::DataExfiltration => "data_exfiltration",
            Ioa::LoginAttack => "login_attack",
            Ioa::MultiClientLoginAttack => "multi_client_login_attack",
            Ioa::StolenToken => "stolen_token",
            Ioa::StolenCookie => "stolen_cookie",
            Ioa::ApiProbing => "api_probing",
            Ioa::ExtremeClientActivity => "extreme_client_activity",
            Ioa::StolenApiKey => "stolen_api_key",
            Ioa::PatternViolation => "pattern_violation",
            Ioa::DecoyAccess => "decoy_access",
            Ioa::MissingToken => "missing_token",
        }
    }
}

/// A client identifier as detection tracks it (cookie and API key by value: their name is
/// the API's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Ip(IpAddr),
    Token(Arc<str>),
    Cookie(Arc<str>),
    ApiKey(Arc<str>),
    Username(Arc<str>),
}

impl ClientKey {
    pub fn kind(&self) -> &'static str {
        match self {
            ClientKey::Ip(_) => "ip",
            ClientKey::Token(_) => "token",
            ClientKey::Cookie(_) => "cookie",
            ClientKey::ApiKey(_) => "api_key",
            ClientKey::Username(_) => "username",
        }
    }

    pub fn value(&self) -> String {
        match self {
            ClientKey::Ip(ip) => ip.to_string(),
            ClientKey::Token(v)
            | ClientKey::Cookie(v)
            | ClientKey::ApiKey(v)
            | ClientKey::Username(v) => v.to_string(),
        }
    }
}

pub use crate::config::conf::IoaThresholds as Thresholds;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    epoch: u64,
    requests: u64,
    errors: u64,
    login_failures: u64,
    bytes_out: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    requests: u64,
    errors: u64,
    login_failures: u64,
    bytes_out: u64,
}

#[derive(Debug, Default)]
struct Window {
    slots: [Slot; SLOTS],
    last_epoch: u64,
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
        slot.login_failures += u64::from(f.login_failure);
        slot.bytes_out += f.bytes_out;
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
            s.login_failures += slot.login_failures;
            s.bytes_out += slot.bytes_out;
        }
        s
    }

    fn idle(&self, epoch: u64) -> bool {
        self.last_epoch + (SLOTS as u64) <= epoch
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

/// What detection needs to know about a finished exchange.
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
    /// A failed answer (401/403) on the API's login URL.
    pub login_failure: bool,
    pub bytes_out: u64,
}

/// One detection: an IoA against a client identifier.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub ioa: Ioa,
    pub client: ClientKey,
    pub detail: String,
}

impl std::fmt::Debug for ApiDetect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiDetect")
            .field("tracked", &self.tracked())
            .finish()
    }
}

/// One API's detector state.
pub struct ApiDetect {
    clients: DashMap<ClientKey, Mutex<Window>, foldhash::fast::RandomState>,
    api: Mutex<Window>,
    /// IPs that failed on the login URL, with the epoch of their last failure.
    login_failing: Mutex<HashMap<IpAddr, u64>>,
    active_ips: AtomicU64,
    /// Identifiers not tracked because the API was at `max_clients`.
    pub untracked: AtomicU64,
}

impl Default for ApiDetect {
    fn default() -> Self {
        ApiDetect {
            clients: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            api: Mutex::new(Window::default()),
            login_failing: Mutex::new(HashMap::new()),
            active_ips: AtomicU64::new(0),
            untracked: AtomicU64::new(0),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ApiDetect {
    /// Feeds one finished exchange at `now` (unix seconds); returns the IoAs it raised.
    pub fn observe(&self, t: &Thresholds, f: &Facts, now: i64) -> Vec<Detection> {
        let slot_secs = (t.window.as_secs() / SLOTS as u64).max(1);
        let epoch = u64::try_from(now).unwrap_or(0) / slot_secs;
        let mut out = Vec::new();

        let api_sums = {
            let mut api = lock(&self.api);
            api.add(epoch, f);
            api.sums(epoch)
        };

        // The IP: login attack, probing, extreme activity, exfiltration. An unknown client
        // address (unspecified: a sideband call without a usable `source_ip`) stands for
        // many clients and is not tracked.
        let ip_known = !f.ip.is_unspecified();
        let ip_key = ClientKey::Ip(f.ip);
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
                (newly_active, w.sums(epoch), failing_paths)
            })
        };
        if let Some((newly_active, ip, failing_paths)) = ip_result {
            if newly_active {
                self.active_ips.fetch_add(1, Relaxed);
            }
            let others = self.active_ips.load(Relaxed).saturating_sub(1);
            let other_requests = api_sums.requests.saturating_sub(ip.requests);
            let other_errors = api_sums.errors.saturating_sub(ip.errors);
            let other_bytes = api_sums.bytes_out.saturating_sub(ip.bytes_out);
            let baseline = others >= t.baseline_clients;
            let mut fire = |ioa: Ioa, detail: String| {
                if self.arm(&ip_key, ioa, epoch) {
                    out.push(Detection {
                        ioa,
                        client: ip_key.clone(),
                        detail,
                    });
                }
            };
            if f.login_failure && ip.login_failures >= t.login_failures {
                fire(
                    Ioa::LoginAttack,
                    format!("{} failed logins", ip.login_failures),
                );
            }
            if ip.requests >= t.probe_min_requests && failing_paths >= t.probe_min_paths {
                let ratio = ip.errors as f64 / ip.requests as f64;
                let normal = if baseline && other_requests > 0 {
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
            if baseline {
                let avg = other_requests as f64 / others as f64;
                if ip.requests >= t.activity_min_requests
                    && ip.requests as f64 > t.activity_factor * avg
                {
                    fire(
                        Ioa::ExtremeClientActivity,
                        format!("{} requests, others {avg:.1} on average", ip.requests),
                    );
                }
                let avg_bytes = other_bytes as f64 / others as f64;
                if ip.bytes_out >= t.exfil_min_bytes
                    && ip.bytes_out as f64 > t.exfil_factor * avg_bytes
                {
                    fire(
                        Ioa::DataExfiltration,
                        format!(
                            "{} bytes out, others {avg_bytes:.0} on average",
                            ip.bytes_out
                        ),
                    );
                }
            }
        }

        // Many clients failing on the login URL together.
        if f.login_failure && ip_known {
            let failing = {
                let mut failing = lock(&self.login_failing);
                failing.retain(|_, e| *e + SLOTS as u64 > epoch);
                if failing.len() <= t.max_clients {
                    failing.insert(f.ip, epoch);
                }
                failing.len()
            };
            if failing >= t.login_clients && self.arm(&ip_key, Ioa::MultiClientLoginAttack, epoch) {
                out.push(Detection {
                    ioa: Ioa::MultiClientLoginAttack,
                    client: ip_key.clone(),
                    detail: format!("{failing} clients failing on the login URL"),
                });
            }
        }

        // The username: login attack.
        if let Some(u) = &f.username {
            let key = ClientKey::Username(u.clone());
            let fails = self.with_window(t, &key, |w| {
                w.add(epoch, f);
                w.sums(epoch).login_failures
            });
            if f.login_failure
                && fails.is_some_and(|n| n >= t.login_failures)
                && self.arm(&key, Ioa::LoginAttack, epoch)
            {
                out.push(Detection {
                    ioa: Ioa::LoginAttack,
                    client: key,
                    detail: format!("{} failed logins", fails.unwrap_or(0)),
                });
            }
        }

        // Tokens, cookies and API keys used from too many IPs.
        for (value, make, ioa) in [
            (
                &f.token,
                ClientKey::Token as fn(Arc<str>) -> ClientKey,
                Ioa::StolenToken,
            ),
            (&f.cookie, ClientKey::Cookie, Ioa::StolenCookie),
            (&f.api_key, ClientKey::ApiKey, Ioa::StolenApiKey),
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
                    detail: format!("used from more than {} IPs", t.token_ips),
                });
            }
        }
        out
    }

    /// Runs `f` on `key`'s window, creating it if the API is under its cap.
    fn with_window<R>(
        &self,
        t: &Thresholds,
        key: &ClientKey,
        f: impl FnOnce(&mut Window) -> R,
    ) -> Option<R> {
        if let Some(w) = self.clients.get(key) {
            return Some(f(&mut lock(&w)));
        }
        if self.clients.len() >= t.max_clients {
            self.untracked.fetch_add(1, Relaxed);
            return None;
        }
        self.clients.entry(key.clone()).or_default();
        let w = self.clients.get(key)?;
        Some(f(&mut lock(&w)))
    }

    fn arm(&self, key: &ClientKey, ioa: Ioa, epoch: u64) -> bool {
        self.clients
            .get(key)
            .is_some_and(|w| lock(&w).arm(ioa, epoch))
    }

    /// Drops windows idle for a whole window; keeps the active-IP count honest.
    pub fn sweep(&self, t: &Thresholds, now: i64) {
        let slot_secs = (t.window.as_secs() / SLOTS as u64).max(1);
        let epoch = u64::try_from(now).unwrap_or(0) / slot_secs;
        let mut gone_active = 0;
        self.clients.retain(|_, w| {
            let w = w.get_mut().unwrap_or_else(|e| e.into_inner());
            let idle = w.idle(epoch);
            if idle && w.active {
                gone_active += 1;
            }
            !idle
        });
        let _ = self
            .active_ips
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(gone_active)));
    }

    /// Identifiers tracked now.
    pub fn tracked(&self) -> usize {
        self.clients.len()
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
            login_failure: false,
            bytes_out: 1_000,
        }
    }

    fn thresholds() -> Thresholds {
        Thresholds::default()
    }

    const NOW: i64 = 1_700_000_000;

    /// Normal traffic from several clients, then one that misbehaves.
    fn normal(d: &ApiDetect, t: &Thresholds) -> Vec<Detection> {
        let mut out = Vec::new();
        for i in 0..8 {
            for _ in 0..30 {
                out.extend(d.observe(t, &facts(&format!("10.0.0.{i}")), NOW));
            }
        }
        out
    }

    #[test]
    fn quiet_on_normal_traffic() {
        let (d, t) = (ApiDetect::default(), thresholds());
        assert!(normal(&d, &t).is_empty());
    }

    #[test]
    fn login_attack_from_one_client_and_from_many() {
        let (d, t) = (ApiDetect::default(), thresholds());
        let mut f = facts("6.6.6.6");
        f.login_failure = true;
        f.error = true;
        let fired: Vec<Ioa> = (0..10)
            .flat_map(|_| d.observe(&t, &f, NOW))
            .map(|x| x.ioa)
            .collect();
        assert_eq!(
            fired,
            [Ioa::LoginAttack],
            "fires once, at the tenth failure"
        );

        let (d, t) = (ApiDetect::default(), thresholds());
        let mut fired = Vec::new();
        for i in 0..10 {
            let mut f = facts(&format!("7.7.7.{i}"));
            f.login_failure = true;
            fired.extend(d.observe(&t, &f, NOW));
        }
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].ioa, Ioa::MultiClientLoginAttack);
        assert_eq!(fired[0].client, ClientKey::Ip("7.7.7.9".parse().unwrap()));
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
                (Ioa::StolenToken, "token"),
                (Ioa::StolenCookie, "cookie"),
                (Ioa::StolenApiKey, "api_key")
            ],
            "each fires once, on the sixth IP"
        );
    }

    #[test]
    fn probing_activity_and_exfiltration_need_a_baseline() {
        let (d, t) = (ApiDetect::default(), thresholds());
        assert!(normal(&d, &t).is_empty());
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
        let fired: Vec<Ioa> = (0..20)
            .flat_map(|i| {
                probe.path_hash = i;
                d.observe(&t, &probe, NOW)
            })
            .map(|x| x.ioa)
            .collect();
        assert_eq!(fired, [Ioa::ApiProbing]);

        let busy = facts("4.4.4.4");
        let fired: Vec<Ioa> = (0..600)
            .flat_map(|_| d.observe(&t, &busy, NOW))
            .map(|x| x.ioa)
            .collect();
        assert_eq!(fired, [Ioa::ExtremeClientActivity]);

        let mut greedy = facts("3.3.3.3");
        greedy.bytes_out = 60 << 20;
        let fired: Vec<Ioa> = d
            .observe(&t, &greedy, NOW)
            .into_iter()
            .map(|x| x.ioa)
            .collect();
        assert_eq!(fired, [Ioa::DataExfiltration]);

        // The same heavy client with no one else around: no baseline, no IoA.
        let (alone, t) = (ApiDetect::default(), thresholds());
        let fired: Vec<Detection> = (0..2_000)
            .flat_map(|_| alone.observe(&t, &busy, NOW))
            .collect();
        assert!(fired.is_empty(), "{fired:?}");
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
        let mut f = facts("6.6.6.6");
        f.login_failure = true;
        let fired: Vec<Detection> = (0..20)
            .flat_map(|i| d.observe(&t, &f, NOW + i * 120))
            .collect();
        assert!(fired.is_empty(), "{fired:?}");
    }
}
