//! [`App`]: the process-wide state, built once from a validated [`Config`] and shared
//! (behind an `Arc`) by every worker, listener and task. No globals: whatever needs the
//! state is handed this.
//!
//! Building an `App` is the last fallible step before binding ports: it loads the TLS
//! material, so a missing or mismatched certificate fails `enforcer check` and `run`
//! with the `ase.conf` key that named it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, watch};

use crate::admin::credentials::Credentials;
use crate::cluster::{Cluster, ClusterError};
use crate::config::{ApiDef, Config, ConfigError, Settings, Timezone, Warning};
use crate::enforce::Enforcer;
use crate::metrics::prom::Prom;
use crate::metrics::{Caps, Metrics};
use crate::pipeline::{Apis, Context, Pipeline};
use crate::sideband::Sideband;
use crate::store::persister::Persister;
use crate::tls::{self, TlsError};

/// Shared state of a running enforcer.
pub struct App {
    pub config_dir: PathBuf,
    pub settings: Settings,
    /// The API table in service (each API with its handles into the components below).
    pub apis: Apis,
    /// Decisions: lists, flow control, detection.
    pub enforcer: Enforcer,
    /// The one sink and everything reports read: api_metrics, activity, users,
    /// Prometheus, the IoA log.
    pub metrics: Arc<Metrics>,
    pub sideband: Sideband,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub warnings: Vec<Warning>,
    /// The zone report dates are read and printed in (`timezone=utc|local`).
    pub timezone: jiff::tz::TimeZone,
    live: AtomicUsize,
    connections: AtomicU64,
    /// When the process started.
    pub started: jiff::Timestamp,
    /// The addresses the listeners bound (known once the server is up).
    pub addresses: OnceLock<Addresses>,
    /// Serialises changes to the configuration (reloads, API writes).
    config_lock: Mutex<()>,
    /// Bumped whenever the API table changes; the health checkers follow it.
    pub apis_changed: watch::Sender<u64>,
    /// The management credentials (the secret can change at run time).
    pub credentials: Credentials,
    /// The dashboard's browser sessions.
    pub sessions: crate::admin::sessions::Sessions,
    /// The management port's host and brute-force guards.
    pub guard: crate::admin::guard::Guard,
    /// File descriptors, backend connections, requests in flight per client.
    pub limits: crate::limits::Limits,
    /// The persister, once started (`store=none`: never).
    pub persister: OnceLock<Persister>,
    /// Cluster mode (`redis_url`), or `None` for a single node.
    pub cluster: Option<Cluster>,
}

/// The addresses the server listens on (the config may have said port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    pub http: std::net::SocketAddr,
    pub https: std::net::SocketAddr,
    pub management: std::net::SocketAddr,
}

/// Why a change to an API definition was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiChangeError {
    #[error(transparent)]
    Invalid(ConfigError),
    #[error("API {0:?} already exists")]
    Exists(String),
    #[error("API {0:?} is not defined")]
    NotFound(String),
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl App {
    pub fn new(config: Config) -> Result<App, ConfigError> {
        let conf_file = config.dir.join("ase.conf");
        let tls_error = |e: TlsError| ConfigError::Value {
            file: conf_file.clone(),
            line: None,
            key: e.key.to_string(),
            reason: format!("{}: {}", e.file.display(), e.reason),
        };
        let s = &config.settings;
        let server_tls =
            tls::server_config(&s.tls_cert_path, &s.tls_key_path).map_err(tls_error)?;
        let upstream_tls =
            tls::upstream_config(s.server_ca_cert_path.as_deref()).map_err(tls_error)?;
        let budget = crate::memory::Budget::new(s.memory_budget);
        let prom = Arc::new(Prom::new(s.mode.as_str()).map_err(|e| ConfigError::State {
            reason: format!("cannot set up Prometheus metrics: {e}"),
        })?);
        let metrics = Arc::new(Metrics::within(
            Caps {
                sessions: s.metrics_max_sessions,
                ips: s.metrics_max_ips,
                paths: s.metrics_max_paths,
                user_agents: s.metrics_max_user_agents,
                combinations: s.metrics_max_combinations,
            },
            s.metrics_api_memory,
            crate::metrics::activity::ActivityCaps {
                clients: s.activity_max_clients,
                memory: s.activity_memory.min(budget.activity),
            },
            budget.records,
            prom,
        ));
        let timezone = match s.timezone {
            Timezone::Utc => jiff::tz::TimeZone::UTC,
            Timezone::Local => jiff::tz::TimeZone::system(),
        };
        let sideband = Sideband::new(s);
        let credentials =
            Credentials::new(&s.management_access_key, s.management_secret_key.expose());
        let cluster = Cluster::from_settings(s).map_err(|e| ConfigError::Value {
            file: conf_file.clone(),
            line: None,
            key: match e {
                ClusterError::Url(_) => "redis_url".into(),
                ClusterError::NodeId { .. } => "data_dir".into(),
            },
            reason: e.to_string(),
        })?;
        let guard = crate::admin::guard::Guard::new(&s.management_hosts);
        let limits = crate::limits::Limits::new(s);
        let enforcer = Enforcer::new(crate::enforce::Config::from_settings(s));
        if let Some(c) = &cluster {
            enforcer.share_counters(c.spikes.clone());
        }
        let apis = Apis::new(
            config.apis.clone(),
            Context {
                metrics: &metrics,
                enforce: &enforcer.cfg,
            },
        );
        Ok(App {
            cluster,
            sideband,
            timezone,
            apis,
            enforcer,
            metrics,
            config_dir: config.dir,
            settings: config.settings,
            server_tls,
            upstream_tls,
            warnings: config.warnings,
            live: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
            started: jiff::Timestamp::now(),
            addresses: OnceLock::new(),
            config_lock: Mutex::new(()),
            apis_changed: watch::Sender::new(0),
            credentials,
            sessions: Default::default(),
            guard,
            limits,
            persister: OnceLock::new(),
        })
    }

    /// Admits a new client connection unless `max_connections` are already open. The
    /// returned [`Live`] slot is held for as long as the connection lives.
    pub fn admit(self: &Arc<Self>, drain: mpsc::Sender<()>) -> Option<Live> {
        let max = self.limits.max_connections;
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.metrics.prom.connections_active.inc();
        Some(Live {
            app: self.clone(),
            _drain: drain,
        })
    }

    fn lock_config(&self) -> std::sync::MutexGuard<'_, ()> {
        self.config_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn api_dir(&self) -> PathBuf {
        self.config_dir.join("api")
    }

    /// Re-reads the config directory and swaps in its API definitions (SIGHUP,
    /// `enforcer reload`). The whole directory must be valid, `ase.conf` included, or
    /// nothing changes. `ase.conf` settings themselves take effect at the next start;
    /// the answer says whether they differ from the running ones. Blocking: call it off
    /// the async threads.
    pub fn reload(&self) -> Result<Reloaded, ConfigError> {
        let _one = self.lock_config();
        let config = Config::load(&self.config_dir)?;
        let settings_changed = config.settings != self.settings;
        if settings_changed {
            tracing::warn!(
                "reload: ase.conf differs from the running settings; restart to apply them"
            );
        }
        let apis = config.apis.len();
        self.replace_apis(config.apis);
        self.apis_changed.send_modify(|v| *v += 1);
        tracing::info!(apis, "reload: the new API definitions are in service");
        Ok(Reloaded {
            apis,
            settings_changed,
        })
    }

    /// Creates (`create`) or replaces API `id` from the JSON `text`, writes it to
    /// `config/api/<id>.json` atomically and swaps the new table in. Blocking.
    pub fn put_api(&self, id: &str, text: &str, create: bool) -> Result<(), ApiChangeError> {
        let _one = self.lock_config();
        let file = self.api_dir().join(format!("{id}.json"));
        crate::config::api::validate_id(id).map_err(|reason| {
            ApiChangeError::Invalid(ConfigError::Value {
                file: file.clone(),
                line: None,
                key: "api_id".into(),
                reason,
            })
        })?;
        let exists = file.is_file();
        if create && exists {
            return Err(ApiChangeError::Exists(id.to_string()));
        }
        if !create && !exists {
            return Err(ApiChangeError::NotFound(id.to_string()));
        }
        let mut warnings = Vec::new();
        let def = ApiDef::parse(&file, id, text, self.settings.mode, &mut warnings)
            .map_err(ApiChangeError::Invalid)?;
        let mut defs = self.load_other_apis(id)?;
        if let Some(clash) = defs
            .iter()
            .find(|a| a.hostname == def.hostname && a.url == def.url)
        {
            return Err(ApiChangeError::Invalid(ConfigError::DuplicateApi {
                first: clash.file.clone(),
                second: file,
                hostname: match &def.hostname {
                    crate::config::HostMatch::Any => "*".into(),
                    crate::config::HostMatch::Exact(h) => h.clone(),
                },
                url: def.url.clone(),
            }));
        }
        crate::config::write_atomically(&file, text.as_bytes()).map_err(|source| {
            ApiChangeError::Io {
                file: file.clone(),
                source,
            }
        })?;
        defs.push(def);
        defs.sort_by(|a, b| a.id.cmp(&b.id));
        self.swap_apis(defs);
        tracing::info!(
            api = id,
            "API {} through the management API",
            if create { "added" } else { "updated" }
        );
        Ok(())
    }

    /// Deletes API `id` (its file too) and swaps the new table in. Blocking.
    pub fn delete_api(&self, id: &str) -> Result<(), ApiChangeError> {
        let _one = self.lock_config();
        let file = self.api_dir().join(format!("{id}.json"));
        if crate::config::api::validate_id(id).is_err() || !file.is_file() {
            return Err(ApiChangeError::NotFound(id.to_string()));
        }
        let defs = self.load_other_apis(id)?;
        std::fs::remove_file(&file).map_err(|source| ApiChangeError::Io {
            file: file.clone(),
            source,
        })?;
        self.swap_apis(defs);
        tracing::info!(api = id, "API deleted through the management API");
        Ok(())
    }

    /// Every API on disk except `id`, validated.
    fn load_other_apis(&self, id: &str) -> Result<Vec<ApiDef>, ApiChangeError> {
        let mut defs =
            crate::config::load_apis(&self.api_dir(), self.settings.mode, &mut Vec::new())
                .map_err(ApiChangeError::Invalid)?;
        defs.retain(|a| a.id != id);
        Ok(defs)
    }

    fn swap_apis(&self, defs: Vec<ApiDef>) {
        self.replace_apis(defs);
        self.apis_changed.send_modify(|v| *v += 1);
    }

    fn replace_apis(&self, defs: Vec<ApiDef>) {
        self.apis.replace(
            defs,
            Context {
                metrics: &self.metrics,
                enforce: &self.enforcer.cfg,
            },
        );
    }

    /// The request pipeline over this instance's components.
    pub fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            mode: self.settings.mode,
            enable_xff: self.settings.enable_xff,
            apis: &self.apis,
            enforcer: &self.enforcer,
            metrics: &self.metrics,
        }
    }

    /// A number for a new client connection.
    pub fn next_connection_id(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Client connections open now.
    /// Commits the pending state now, for operator changes that must be durable before
    /// they are acknowledged (no-op without a store).
    ///
    /// In cluster mode a Redis that cannot be reached does not fail the change: it is in
    /// effect here, the persister keeps retrying, and the other nodes get it once Redis
    /// answers again (`Ok(false)`: not stored yet).
    pub async fn durable(&self) -> Result<bool, String> {
        match self.persister.get() {
            Some(p) => match p.flush_now().await {
                Ok(()) => Ok(true),
                Err(e) if self.cluster.is_some() => {
                    tracing::warn!(
                        "the change is in effect here; it reaches the cluster once Redis answers: {e}"
                    );
                    Ok(false)
                }
                Err(e) => Err(e),
            },
            None => Ok(true),
        }
    }

    pub fn live_connections(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

/// A client connection's slot: counts against `max_connections`, and keeps graceful
/// shutdown waiting (through its clone of the worker's drain channel) until dropped.
pub struct Live {
    app: Arc<App>,
    _drain: mpsc::Sender<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.app.live.fetch_sub(1, Ordering::AcqRel);
        self.app.metrics.prom.connections_active.dec();
    }
}

/// What a reload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// APIs in service now.
    pub apis: usize,
    /// `ase.conf` differs from the running settings (which need a restart to change).
    pub settings_changed: bool,
}
