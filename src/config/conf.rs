//! `ase.conf`: ASE's `key=value` settings file, read into typed [`Settings`].
//!
//! The format is ASE's own so an existing file can be brought over unchanged: one
//! `key=value` per line, blank lines and lines starting with `;` or `#` ignored, whitespace
//! around keys and values trimmed. Keys that ASE defines but enforcer has no use for are
//! accepted with a note; keys nobody defines give a warning naming file and line; a value
//! that does not parse is an error naming file, line, key and reason.
//!
//! enforcer's own keys (bind addresses, certificate paths, timeouts, limits) sit beside
//! ASE's and are listed in `docs/configuration.md`. Relative paths are resolved against the
//! directory that holds `ase.conf`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{ConfigError, Warning, clip};
use super::value::{Secret, parse_bool, parse_bytes, parse_duration};

pub use crate::vocab::Mode;

/// How report timestamps are rendered (`timezone=utc|local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timezone {
    Utc,
    Local,
}

/// Where state that outlives the process is kept (`store=redb|none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// The embedded store, `<data_dir>/enforcer.redb`.
    Redb,
    /// Nothing persists (tests, throw-away instances).
    None,
}

/// The worker model (see `server.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeShape {
    /// One current-thread runtime per worker, each with its own `SO_REUSEPORT` listener.
    PerCore,
    /// One multi-thread runtime shared by all workers and listeners.
    Shared,
}

/// Real-time detection thresholds (`ioa_*` keys), read by `enforce::detect`.
#[derive(Debug, Clone, PartialEq)]
pub struct IoaThresholds {
    pub window: Duration,
    pub login_failures: u64,
    /// The share of a client's sign-on attempts that must fail for a login attack (a busy
    /// NAT address where most sign-ons succeed is not attacking).
    pub login_failure_ratio: f64,
    pub login_clients: usize,
    /// Failed sign-ons one IP needs to count towards a distributed login attack.
    pub login_client_failures: u64,
    pub token_ips: usize,
    pub probe_min_requests: u64,
    /// Distinct paths a prober must have failed on (a client repeating a few failing
    /// calls is broken, not probing).
    pub probe_min_paths: usize,
    pub probe_error_ratio: f64,
    pub activity_min_requests: u64,
    pub activity_factor: f64,
    pub exfil_min_bytes: u64,
    pub exfil_factor: f64,
    pub baseline_clients: u64,
    pub max_clients: usize,
}

impl Default for IoaThresholds {
    fn default() -> IoaThresholds {
        IoaThresholds {
            window: Duration::from_secs(600),
            login_failures: 10,
            login_failure_ratio: 0.9,
            login_clients: 10,
            login_client_failures: 3,
            token_ips: 5,
            probe_min_requests: 20,
            probe_min_paths: 10,
            probe_error_ratio: 0.5,
            activity_min_requests: 500,
            activity_factor: 10.0,
            exfil_min_bytes: 50 << 20,
            exfil_factor: 10.0,
            baseline_clients: 5,
            max_clients: 100_000,
        }
    }
}

/// Everything `ase.conf` configures, with defaults for every key.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    // ASE's keys.
    pub mode: Mode,
    pub http_ws_port: u16,
    pub https_wss_port: u16,
    pub management_port: u16,
    pub enable_xff: bool,
    pub enable_ase_health: bool,
    pub timezone: Timezone,
    /// 1 fatal, 2 error, 3 warn, 4 info, 5 debug.
    pub admin_log_level: u8,
    pub enable_firewall: bool,
    pub enable_ase_detected_attack: bool,
    pub enable_sideband_authentication: bool,
    pub enable_sideband_keepalive: bool,
    pub server_ca_cert_path: Option<PathBuf>,

    // enforcer's own keys.
    pub bind_address: IpAddr,
    pub management_bind_address: IpAddr,
    pub tls_cert_path: PathBuf,
    pub tls_key_path: PathBuf,
    pub data_dir: PathBuf,
    pub store: StoreKind,
    /// How often changed state is committed to the store (at most this much is lost to a
    /// crash).
    pub store_flush_interval: Duration,
    /// Worker count; 0 means one per available core.
    pub workers: usize,
    pub runtime: RuntimeShape,
    pub max_connections: usize,
    pub max_header_size: usize,
    pub max_headers: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_timeout: Duration,
    pub upstream_idle_timeout: Duration,
    pub upstream_max_idle_per_server: usize,
    /// Requests in flight to backends (each holds one backend connection), over every
    /// server; 0: what the file-descriptor limit leaves after `max_connections`.
    pub upstream_max_connections: usize,
    /// Requests in flight to one server of an API (0: only the total applies).
    pub upstream_max_connections_per_server: usize,
    /// Requests one client address may have in flight at once (HTTP/2 streams count).
    pub client_max_in_flight: u32,
    /// Bytes for everything kept per client-chosen value (see `memory`).
    pub memory_budget: u64,
    /// Streams one HTTP/2 connection may open at once.
    pub h2_max_concurrent_streams: u32,
    /// Per API per time bucket: distinct values kept before the rest is folded into
    /// `(other)` (see `metrics`).
    pub metrics_max_sessions: u32,
    pub metrics_max_ips: u32,
    pub metrics_max_paths: u32,
    pub metrics_max_user_agents: u32,
    pub metrics_max_combinations: u32,
    /// Detail memory per API when its definition sets no `api_memory_size`.
    pub metrics_api_memory: u64,
    /// Distinct clients per activity bucket (client activity, attack management).
    pub activity_max_clients: u32,
    /// Bytes for all activity buckets together.
    pub activity_memory: u64,
    /// Largest sideband call body accepted (413 beyond).
    pub sideband_max_body: usize,
    /// Allowed sideband requests kept waiting for their response call.
    pub sideband_pending_max: usize,
    /// How long one waits before it is recorded without a response.
    pub sideband_pending_ttl: Duration,
    /// Detector thresholds (`ioa_*`).
    pub ioa: IoaThresholds,
    /// How long an automatic deny-list entry lasts.
    pub ioa_block_ttl: Duration,
    /// How long a client that touched a decoy is remembered.
    pub decoy_memory: Duration,
    /// Entries per list (deny, allow).
    pub list_max_entries: usize,
    /// Client IPs the per-client spike limiter tracks per API.
    pub flow_max_clients: usize,
    /// How long a request may wait for a server's connection-quota slot.
    pub connection_queue_timeout: Duration,
    /// Management API credentials (`x-ase-access-key`, `x-ase-secret-key`).
    pub management_access_key: String,
    pub management_secret_key: Secret,
    /// Whether `GET /metrics` needs the credentials too.
    pub metrics_require_auth: bool,
    /// The environment `userActivities` answers for (`/v1/environments/{id}/...`).
    pub environment_id: String,
    /// Bearer tokens accepted by `userActivities` (none: every call answers 401).
    pub user_activities_tokens: Vec<Secret>,
    /// Serve the management API over TLS (with `tls_cert_path`/`tls_key_path`).
    pub management_tls: bool,
    /// Host names (besides loopback names and its own address) the management port
    /// answers to; any other `Host` gets 421 (DNS rebinding).
    pub management_hosts: Vec<String>,
    /// The CA the CLI trusts for a TLS management API (empty: the Mozilla roots).
    pub management_ca_cert_path: Option<PathBuf>,
    /// Cluster mode: the Redis server the nodes share state through (`redis://…`); `None`:
    /// a single node with its embedded store.
    pub redis_url: Option<Secret>,
    /// The cluster's name: its keys in Redis start with it, so clusters can share a server.
    pub cluster_id: String,
    /// How often a node pushes its changes to Redis and how stale a shared change may be
    /// when pub/sub is lost.
    pub cluster_sync_interval: Duration,
    /// The longest a request waits on Redis (cluster-wide spike counting) before the node
    /// decides with its local state.
    pub cluster_request_budget: Duration,
    /// Cluster mode: count `client_spike_threshold` across the cluster too (ASE counts it
    /// per node).
    pub cluster_client_spikes: bool,
}

impl Settings {
    /// Defaults for a config directory `dir` (paths are resolved against it).
    pub fn defaults(dir: &Path) -> Settings {
        Settings {
            mode: Mode::Inline,
            http_ws_port: 8000,
            https_wss_port: 8443,
            management_port: 8010,
            enable_xff: false,
            enable_ase_health: false,
            timezone: Timezone::Utc,
            admin_log_level: 4,
            enable_firewall: true,
            // ASE defaults to false; enforcer's real-time detection is central, so on.
            enable_ase_detected_attack: true,
            enable_sideband_authentication: false,
            enable_sideband_keepalive: false,
            server_ca_cert_path: None,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            management_bind_address: IpAddr::from([127, 0, 0, 1]),
            tls_cert_path: dir.join("../certs/server.crt"),
            tls_key_path: dir.join("../certs/server.key"),
            data_dir: dir.join("../data"),
            store: StoreKind::Redb,
            store_flush_interval: Duration::from_secs(5),
            workers: 0,
            runtime: RuntimeShape::PerCore,
            max_connections: 10_000,
            max_header_size: 16 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            tls_handshake_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(30),
            upstream_connect_timeout: Duration::from_secs(5),
            upstream_timeout: Duration::from_secs(60),
            upstream_idle_timeout: Duration::from_secs(4),
            upstream_max_idle_per_server: 256,
            upstream_max_connections: 0,
            upstream_max_connections_per_server: 1_024,
            client_max_in_flight: 256,
            memory_budget: 1 << 30,
            h2_max_concurrent_streams: 100,
            metrics_max_sessions: 10_000,
            metrics_max_ips: 10_000,
            metrics_max_paths: 2_000,
            metrics_max_user_agents: 1_000,
            metrics_max_combinations: 50_000,
            metrics_api_memory: 128 << 20,
            activity_max_clients: 100_000,
            activity_memory: 1 << 30,
            sideband_max_body: 64 * 1024,
            sideband_pending_max: 100_000,
            sideband_pending_ttl: Duration::from_secs(120),
            ioa: IoaThresholds::default(),
            ioa_block_ttl: Duration::from_secs(3_600),
            decoy_memory: Duration::from_secs(86_400),
            list_max_entries: 1_000_000,
            flow_max_clients: 100_000,
            connection_queue_timeout: Duration::from_secs(5),
            management_access_key: "admin".into(),
            management_secret_key: Secret::new("admin"),
            environment_id: "00000000-0000-0000-0000-000000000000".into(),
            user_activities_tokens: Vec::new(),
            redis_url: None,
            cluster_id: "ase_cluster".into(),
            cluster_sync_interval: Duration::from_secs(1),
            cluster_request_budget: Duration::from_millis(5),
            cluster_client_spikes: false,
            metrics_require_auth: false,
            management_tls: false,
            management_hosts: Vec::new(),
            management_ca_cert_path: None,
        }
    }

    /// Reads `ase.conf` at `file`. A missing file is an error: ASE always ships one.
    pub fn load(file: &Path, warnings: &mut Vec<Warning>) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Read {
            file: file.to_path_buf(),
            source: e,
        })?;
        let dir = file.parent().unwrap_or(Path::new("."));
        Settings::parse(file, dir, &text, warnings)
    }

    /// Parses the text of an `ase.conf`; `file` is only used in messages.
    pub fn parse(
        file: &Path,
        dir: &Path,
        text: &str,
        warnings: &mut Vec<Warning>,
    ) -> Result<Settings, ConfigError> {
        let mut settings = Settings::defaults(dir);
        let mut seen: Vec<(String, usize)> = Vec::new();
        // Editors on Windows save UTF-8 with a byte-order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError::Syntax {
                    file: file.to_path_buf(),
                    line: line_no,
                    reason: format!("expected key=value, found {:?}", clip(line)),
                });
            };
            let (key, value) = (key.trim(), value.trim());
            if let Some((_, first)) = seen.iter().find(|(k, _)| k == key) {
                warnings.push(Warning::new(
                    file,
                    Some(line_no),
                    key,
                    format!("set again (first on line {first}); the last value wins"),
                ));
            } else {
                seen.push((key.to_string(), line_no));
            }
            match settings.apply(dir, key, value) {
                Ok(Applied::Used) => {}
                Ok(Applied::AseOnly) => warnings.push(Warning::note(
                    file,
                    Some(line_no),
                    key,
                    "an ASE setting that enforcer accepts and does not use".to_string(),
                )),
                Ok(Applied::Unknown) => warnings.push(Warning::new(
                    file,
                    Some(line_no),
                    key,
                    "unknown key, ignored".to_string(),
                )),
                Err(reason) => {
                    return Err(ConfigError::Value {
                        file: file.to_path_buf(),
                        line: Some(line_no),
                        key: clip(key).into_owned(),
                        reason: clip(&reason).into_owned(),
                    });
                }
            }
        }
        Ok(settings)
    }

    fn apply(&mut self, dir: &Path, key: &str, value: &str) -> Result<Applied, String> {
        let path = |v: &str| -> Result<PathBuf, String> {
            if v.is_empty() {
                Err("expected a path, found nothing".to_string())
            } else {
                Ok(dir.join(v))
            }
        };
        match key {
            "mode" => {
                self.mode = match value.to_ascii_lowercase().as_str() {
                    "inline" => Mode::Inline,
                    "sideband" => Mode::Sideband,
                    _ => return Err(format!("expected inline or sideband, found {value:?}")),
                }
            }
            "http_ws_port" => self.http_ws_port = parse_port(value)?,
            "https_wss_port" => self.https_wss_port = parse_port(value)?,
            "management_port" => self.management_port = parse_port(value)?,
            "enable_xff" => self.enable_xff = parse_bool(value)?,
            "enable_ase_health" => self.enable_ase_health = parse_bool(value)?,
            "timezone" => {
                self.timezone = match value.to_ascii_lowercase().as_str() {
                    "utc" => Timezone::Utc,
                    "local" => Timezone::Local,
                    _ => return Err(format!("expected utc or local, found {value:?}")),
                }
            }
            "admin_log_level" => {
                self.admin_log_level = match value.parse::<u8>() {
                    Ok(n @ 1..=5) => n,
                    _ => return Err(format!("expected a level from 1 to 5, found {value:?}")),
                }
            }
            "enable_firewall" => self.enable_firewall = parse_bool(value)?,
            "enable_ase_detected_attack" => self.enable_ase_detected_attack = parse_bool(value)?,
            "enable_sideband_authentication" => {
                self.enable_sideband_authentication = parse_bool(value)?
            }
            "enable_sideband_keepalive" => self.enable_sideband_keepalive = parse_bool(value)?,
            "server_ca_cert_path" => {
                self.server_ca_cert_path = if value.is_empty() {
                    None
                } else {
                    Some(path(value)?)
                }
            }
            "bind_address" => self.bind_address = parse_ip(value)?,
            "management_bind_address" => self.management_bind_address = parse_ip(value)?,
            "tls_cert_path" => self.tls_cert_path = path(value)?,
            "tls_key_path" => self.tls_key_path = path(value)?,
            "data_dir" => self.data_dir = path(value)?,
            "store" => {
                self.store = match value.to_ascii_lowercase().as_str() {
                    "redb" => StoreKind::Redb,
                    "none" => StoreKind::None,
                    _ => return Err(format!("expected redb or none, found {value:?}")),
                }
            }
            "store_flush_interval" => {
                let d: Duration = parse_positive(value)?;
                if d < Duration::from_millis(100) || d > Duration::from_secs(300) {
                    return Err(format!("{value:?} is outside 100ms to 5m"));
                }
                self.store_flush_interval = d;
            }
            "workers" => self.workers = parse_count(value, 0, 1024)?,
            "runtime" => {
                self.runtime = match value {
                    "per_core" => RuntimeShape::PerCore,
                    "multi_thread" => RuntimeShape::Shared,
                    _ => {
                        return Err(format!(
                            "expected per_core or multi_thread, found {value:?}"
                        ));
                    }
                }
            }
            "max_connections" => self.max_connections = parse_count(value, 1, usize::MAX)?,
            "max_header_size" => {
                let n = parse_bytes(value)?;
                if !(1024..=1 << 20).contains(&n) {
                    return Err(format!("{value:?} is outside 1kb..1mb"));
                }
                self.max_header_size = n as usize;
            }
            "max_headers" => self.max_headers = parse_count(value, 1, 1000)?,
            "header_read_timeout" => self.header_read_timeout = parse_positive(value)?,
            "idle_timeout" => self.idle_timeout = parse_positive(value)?,
            "tls_handshake_timeout" => self.tls_handshake_timeout = parse_positive(value)?,
            "shutdown_timeout" => self.shutdown_timeout = parse_duration(value)?,
            "upstream_connect_timeout" => self.upstream_connect_timeout = parse_positive(value)?,
            "upstream_timeout" => self.upstream_timeout = parse_positive(value)?,
            "upstream_idle_timeout" => self.upstream_idle_timeout = parse_positive(value)?,
            "upstream_max_idle_per_server" => {
                self.upstream_max_idle_per_server = parse_count(value, 0, 100_000)?
            }
            "upstream_max_connections" => {
                self.upstream_max_connections = parse_count(value, 0, 10_000_000)?
            }
            "upstream_max_connections_per_server" => {
                self.upstream_max_connections_per_server = parse_count(value, 0, 10_000_000)?
            }
            "memory_budget" => {
                let n = parse_bytes(value)?;
                if n < 16 << 20 {
                    return Err(format!("{value:?} is under the minimum of 16mb"));
                }
                self.memory_budget = n;
            }
            "client_max_in_flight" => {
                self.client_max_in_flight = parse_count(value, 1, 1_000_000)? as u32
            }
            "h2_max_concurrent_streams" => {
                self.h2_max_concurrent_streams = parse_count(value, 1, 10_000)? as u32
            }
            "metrics_max_sessions" => self.metrics_max_sessions = parse_cap(value)?,
            "metrics_max_ips" => self.metrics_max_ips = parse_cap(value)?,
            "metrics_max_paths" => self.metrics_max_paths = parse_cap(value)?,
            "metrics_max_user_agents" => self.metrics_max_user_agents = parse_cap(value)?,
            "metrics_max_combinations" => self.metrics_max_combinations = parse_cap(value)?,
            "activity_max_clients" => self.activity_max_clients = parse_cap(value)?,
            "activity_memory" => {
                self.activity_memory = parse_bytes(value)?;
                if self.activity_memory < 1 << 20 {
                    return Err(format!("{value:?} is under the minimum of 1mb"));
                }
            }
            "metrics_api_memory" => {
                self.metrics_api_memory = parse_bytes(value)?;
                if self.metrics_api_memory < 1 << 20 {
                    return Err(format!("{value:?} is below the minimum of 1mb"));
                }
            }
            "sideband_max_body" => {
                let n = parse_bytes(value)?;
                if !(1024..=64 << 20).contains(&n) {
                    return Err(format!("{value:?} is outside 1kb..64mb"));
                }
                self.sideband_max_body = n as usize;
            }
            "sideband_pending_max" => {
                self.sideband_pending_max = parse_count(value, 16, 10_000_000)?
            }
            "sideband_pending_ttl" => self.sideband_pending_ttl = parse_positive(value)?,
            "ioa_window" => {
                self.ioa.window = parse_positive(value)?;
                if self.ioa.window < Duration::from_secs(10) {
                    return Err(format!("{value:?} is under the minimum of 10s"));
                }
            }
            "ioa_login_failures" => {
                self.ioa.login_failures = parse_count(value, 1, 1_000_000)? as u64
            }
            "ioa_login_clients" => self.ioa.login_clients = parse_count(value, 1, 1_000_000)?,
            "ioa_login_failure_ratio" => {
                self.ioa.login_failure_ratio = parse_fraction(value, 0.0, 1.0)?
            }
            "ioa_login_client_failures" => {
                self.ioa.login_client_failures = parse_count(value, 1, 1_000_000)? as u64
            }
            "ioa_token_ips" => self.ioa.token_ips = parse_count(value, 1, 1_000)?,
            "ioa_probe_min_requests" => {
                self.ioa.probe_min_requests = parse_count(value, 1, 10_000_000)? as u64
            }
            "ioa_probe_min_paths" => self.ioa.probe_min_paths = parse_count(value, 1, 1_000)?,
            "ioa_probe_error_ratio" => {
                self.ioa.probe_error_ratio = parse_fraction(value, 0.0, 1.0)?
            }
            "ioa_activity_min_requests" => {
                self.ioa.activity_min_requests = parse_count(value, 1, 100_000_000)? as u64
            }
            "ioa_activity_factor" => self.ioa.activity_factor = parse_fraction(value, 1.0, 1e6)?,
            "ioa_exfil_min_bytes" => self.ioa.exfil_min_bytes = parse_bytes(value)?,
            "ioa_exfil_factor" => self.ioa.exfil_factor = parse_fraction(value, 1.0, 1e6)?,
            "ioa_baseline_clients" => {
                self.ioa.baseline_clients = parse_count(value, 1, 1_000_000)? as u64
            }
            "ioa_max_clients" => self.ioa.max_clients = parse_count(value, 100, 100_000_000)?,
            "ioa_block_ttl" => self.ioa_block_ttl = parse_positive(value)?,
            "decoy_memory" => self.decoy_memory = parse_positive(value)?,
            "list_max_entries" => self.list_max_entries = parse_count(value, 1, 100_000_000)?,
            "flow_max_clients" => self.flow_max_clients = parse_count(value, 100, 100_000_000)?,
            "connection_queue_timeout" => self.connection_queue_timeout = parse_positive(value)?,
            "management_access_key" => self.management_access_key = credential(value)?,
            "management_secret_key" => self.management_secret_key = Secret::new(credential(value)?),
            "metrics_require_auth" => self.metrics_require_auth = parse_bool(value)?,
            "environment_id" => self.environment_id = environment_id(value)?,
            "redis_url" => {
                self.redis_url = match value.trim() {
                    "" => None,
                    v if v.starts_with("redis://") || v.starts_with("redis-sentinel://") => {
                        Some(Secret::new(v.to_string()))
                    }
                    _ => {
                        return Err("expected redis://[user:password@]host:port[/db] or \
                             redis-sentinel://[user:password@]host:port,host:port/master[/db]"
                            .into());
                    }
                }
            }
            "cluster_id" => {
                if value.is_empty()
                    || value.len() > 64
                    || !value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(format!(
                        "{value:?}: expected 1 to 64 letters, digits, '_' or '-'"
                    ));
                }
                self.cluster_id = value.to_string();
            }
            "cluster_sync_interval" => {
                let d: Duration = parse_positive(value)?;
                if d < Duration::from_millis(100) || d > Duration::from_secs(60) {
                    return Err(format!("{value:?} is outside 100ms to 60s"));
                }
                self.cluster_sync_interval = d;
            }
            "cluster_client_spikes" => self.cluster_client_spikes = parse_bool(value)?,
            "cluster_request_budget" => {
                let d: Duration = parse_positive(value)?;
                if d > Duration::from_secs(1) {
                    return Err(format!("{value:?} is over 1s"));
                }
                self.cluster_request_budget = d;
            }
            "user_activities_tokens" => {
                self.user_activities_tokens = value
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(|t| bearer_token(t).map(Secret::new))
                    .collect::<Result<_, _>>()?
            }
            "management_tls" => self.management_tls = parse_bool(value)?,
            "management_hosts" => {
                self.management_hosts = value
                    .split(',')
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter(|h| !h.is_empty())
                    .collect()
            }
            "management_ca_cert_path" => {
                self.management_ca_cert_path = if value.is_empty() {
                    None
                } else {
                    Some(path(value)?)
                }
            }
            _ if ASE_ONLY_KEYS.contains(&key) => return Ok(Applied::AseOnly),
            _ => return Ok(Applied::Unknown),
        }
        Ok(Applied::Used)
    }

    /// The number of workers to run: the configured count, or one per available core.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

enum Applied {
    Used,
    AseOnly,
    Unknown,
}

/// Keys of ASE's `ase.conf` that have no meaning in enforcer (ABS export, e-mail alerts,
/// process counts, obfuscation). Accepted so an ASE file loads unchanged.
const ASE_ONLY_KEYS: &[&str] = &[
    "http_ws_process",
    "https_wss_process",
    "enable_access_log",
    "flush_log_immediate",
    "enable_audit",
    "syslog_server",
    "enable_cluster",
    "enable_sslv3",
    "enable_abs",
    "enable_abs_attack",
    "abs_attack_request_minutes",
    "keystore_password",
    "enable_hostname_rewrite",
    "hostname_refresh",
    "decoy_alert_interval",
    "attack_list_memory",
    "enable_google_pubsub",
    "google_pubsub_topic",
    "google_pubsub_concurrency",
    "google_pubsub_qps",
    "google_pubsub_apikey",
    "google_pubsub_timeout",
    "cache_queue_size",
    "tcp_send_buffer_size",
    "tcp_receive_buffer_size",
    "auth_method",
    "enable_1G",
    "buffer_size",
    "enable_email",
    "cpu_usage",
    "memory_usage",
    "filesystem_size",
    "email_report",
    "smtp_host",
    "smtp_port",
    "smtp_ssl",
    "smtp_cert_verification",
    "sender_email",
    "sender_password",
    "receiver_email",
    "abs_publish",
    "abs_publish_request_minutes",
    "enable_strict_parsing",
];

fn parse_port(v: &str) -> Result<u16, String> {
    v.parse::<u16>()
        .map_err(|_| format!("{v:?} is not a port number (0-65535; 0 picks a free port)"))
}

fn parse_ip(v: &str) -> Result<IpAddr, String> {
    v.parse::<IpAddr>()
        .map_err(|_| format!("{v:?} is not an IP address"))
}

fn parse_count(v: &str, min: usize, max: usize) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ if max == usize::MAX => Err(format!(
            "expected a whole number of at least {min}, found {v:?}"
        )),
        _ => Err(format!(
            "expected a whole number from {min} to {max}, found {v:?}"
        )),
    }
}

/// A credential: printable ASCII, no spaces, no ':' (ASE's rule for its keys).
fn credential(v: &str) -> Result<String, String> {
    if v.is_empty() || v.len() > 256 || !v.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err("expected 1-256 printable characters without spaces or ':'".into());
    }
    Ok(v.to_string())
}

fn environment_id(v: &str) -> Result<String, String> {
    if v.is_empty()
        || v.len() > 64
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err("expected 1-64 letters, digits, '-' or '_' (PingOne uses a UUID)".into());
    }
    Ok(v.to_string())
}

/// A bearer token: RFC 6750's `b64token` characters, 16 to 4096 of them.
fn bearer_token(v: &str) -> Result<String, String> {
    let ok = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if v.len() < 16 || v.len() > 4096 || !v.bytes().all(ok) {
        // The value is a secret: the message does not repeat it.
        return Err(format!(
            "a token of {} characters is not accepted: each needs 16-4096 letters, digits or -._~+/=",
            v.len()
        ));
    }
    Ok(v.to_string())
}

fn parse_fraction(v: &str, min: f64, max: f64) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x > min && x <= max => Ok(x),
        _ => Err(format!(
            "expected a number above {min} and at most {max}, found {v:?}"
        )),
    }
}

fn parse_cap(v: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if (1..=10_000_000).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a whole number from 1 to 10000000, found {v:?}"
        )),
    }
}

fn parse_positive(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Result<Settings, ConfigError>, Vec<Warning>) {
        let mut w = Vec::new();
        let r = Settings::parse(Path::new("cfg/ase.conf"), Path::new("cfg"), text, &mut w);
        (r, w)
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let (settings, _) = parse(
            "management_secret_key=s3cret-management-key\nuser_activities_tokens=tok-abcdefghijklmnop,tok-qrstuvwxyz012345\n",
        );
        let settings = settings.unwrap();
        assert_eq!(
            settings.management_secret_key.expose(),
            "s3cret-management-key"
        );
        assert_eq!(settings.user_activities_tokens.len(), 2);
        let debug = format!("{settings:?}");
        for secret in [
            "s3cret-management-key",
            "tok-abcdefghijklmnop",
            "tok-qrstuvwxyz012345",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[test]
    fn reads_ase_keys_comments_and_enforcer_keys() {
        let (s, w) = parse(
            "; ASE config\n# another comment\n\nmode = sideband\nhttp_ws_port=80\n\
             enable_xff=true\ntimezone=local\nupstream_timeout=500ms\ntls_cert_path=tls/a.crt\n",
        );
        let s = s.unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(s.mode, Mode::Sideband);
        assert_eq!(s.http_ws_port, 80);
        assert_eq!(s.https_wss_port, 8443);
        assert!(s.enable_xff);
        assert_eq!(s.timezone, Timezone::Local);
        assert_eq!(s.upstream_timeout, Duration::from_millis(500));
        assert_eq!(s.tls_cert_path, Path::new("cfg/tls/a.crt"));
    }

    #[test]
    fn unknown_and_ase_only_keys_warn_with_file_and_line() {
        let (s, w) = parse("enable_abs=true\nno_such_key=1\n");
        assert!(s.is_ok());
        assert_eq!(w.len(), 2);
        assert!(w[0].is_note());
        assert_eq!(
            w[1].to_string(),
            "cfg/ase.conf:2: no_such_key: unknown key, ignored"
        );
    }

    #[test]
    fn bad_value_names_file_line_key_and_reason() {
        let (s, _) = parse("mode=inline\nhttp_ws_port=80a\n");
        let e = s.unwrap_err().to_string();
        assert_eq!(
            e,
            "cfg/ase.conf:2: http_ws_port: \"80a\" is not a port number (0-65535; 0 picks a free port)"
        );
    }

    #[test]
    fn line_without_equals_is_a_syntax_error() {
        let (s, _) = parse("mode inline\n");
        assert_eq!(
            s.unwrap_err().to_string(),
            "cfg/ase.conf:1: expected key=value, found \"mode inline\""
        );
    }

    #[test]
    fn repeated_key_warns_and_last_wins() {
        let (s, w) = parse("http_ws_port=1\nhttp_ws_port=2\n");
        assert_eq!(s.unwrap().http_ws_port, 2);
        assert!(w[0].to_string().contains("first on line 1"));
    }
}
