//! [`App`]: the process-wide state, built once from a validated [`Config`] and shared
//! (behind an `Arc`) by every worker, listener and task. No globals: whatever needs the
//! state is handed this.
//!
//! Building an `App` is the last fallible step before binding ports: it loads the TLS
//! material, so a missing or mismatched certificate fails `enforcer check` and `run`
//! with the `ase.conf` key that named it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError, Settings, Timezone, Warning};
use crate::metrics::{Caps, Metrics};
use crate::pipeline::Pipeline;
use crate::sideband::Sideband;
use crate::tls::{self, TlsError};

/// Shared state of a running enforcer.
pub struct App {
    pub config_dir: PathBuf,
    pub settings: Settings,
    pub pipeline: Pipeline,
    pub sideband: Sideband,
    pub server_tls: Arc<rustls::ServerConfig>,
    pub upstream_tls: Arc<rustls::ClientConfig>,
    pub warnings: Vec<Warning>,
    /// The zone report dates are read and printed in (`timezone=utc|local`).
    pub timezone: jiff::tz::TimeZone,
    live: AtomicUsize,
    connections: AtomicU64,
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
        let metrics = Arc::new(Metrics::new(
            Caps {
                sessions: s.metrics_max_sessions,
                ips: s.metrics_max_ips,
                paths: s.metrics_max_paths,
                user_agents: s.metrics_max_user_agents,
                combinations: s.metrics_max_combinations,
            },
            s.metrics_api_memory,
        ));
        let timezone = match s.timezone {
            Timezone::Utc => jiff::tz::TimeZone::UTC,
            Timezone::Local => jiff::tz::TimeZone::system(),
        };
        let sideband = Sideband::new(s, &s.data_dir).map_err(|e| ConfigError::State {
            reason: e.to_string(),
        })?;
        Ok(App {
            sideband,
            timezone,
            pipeline: Pipeline::new(&config, metrics),
            config_dir: config.dir,
            settings: config.settings,
            server_tls,
            upstream_tls,
            warnings: config.warnings,
            live: AtomicUsize::new(0),
            connections: AtomicU64::new(0),
        })
    }

    /// Admits a new client connection unless `max_connections` are already open. The
    /// returned [`Live`] slot is held for as long as the connection lives.
    pub fn admit(self: &Arc<Self>, drain: mpsc::Sender<()>) -> Option<Live> {
        let max = self.settings.max_connections;
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Live {
            app: self.clone(),
            _drain: drain,
        })
    }

    /// A number for a new client connection.
    pub fn next_connection_id(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Client connections open now.
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
    }
}
