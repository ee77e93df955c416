//! The start-up order of a process: what `enforcer run`, `check` and `demo` do between
//! the parsed command line and the served ports. `main.rs` parses the arguments and calls
//! these; every step is here, in this order:
//!
//! 1. [`load`]: read and validate the config directory into a [`Config`], then build the
//!    [`App`] from it (nothing is bound yet, so an invalid config never holds a port).
//! 2. [`serve`]: start logging and report the config's warnings; attach the store and
//!    restore what it holds (`persist::attach`), before any request can be
//!    recorded; refuse ASE's default secret on a management port others can reach; start
//!    the cluster thread (cluster mode); start whatever runs beside the server (the demo's
//!    backend and traffic); then [`server::run`] binds the ports and serves until a
//!    shutdown signal has drained the connections; last, the persister's final flush.
//!
//! Every failure is a [`StartError`] (or a [`DemoError`] around one) that says what
//! failed; [`StartError::exit_code`] is the process's exit code for it: 1 when the config
//! or the store is at fault, 2 when the server cannot start (a port is busy).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::config::{Config, ConfigError};
use crate::server::{self, ServerError};
use crate::store::StoreError;

/// Why the process could not start (or stopped serving with an error).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config directory is invalid: nothing was bound.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// The store could not be opened or restored.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// ASE's default secret on a management port others can reach.
    #[error("invalid config: {0}")]
    DefaultSecret(String),
    #[error("cannot start the cluster thread: {0}")]
    Cluster(#[source] std::io::Error),
    #[error("{0}")]
    Server(#[from] ServerError),
}

impl StartError {
    /// The exit code: 1 when the config or the store is at fault, 2 when the server
    /// cannot start or serve.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) | StartError::Store(_) | StartError::DefaultSecret(_) => 1,
            StartError::Cluster(_) | StartError::Server(_) => 2,
        }
    }
}

/// Reads and validates config directory `dir` and builds the app from it.
pub fn load(dir: &Path) -> Result<App, StartError> {
    let config = Config::load(dir)?;
    Ok(App::new(config)?)
}

/// What `enforcer check` found in a valid config directory.
#[derive(Debug)]
pub struct Checked {
    /// The config's warnings and notes, each as `warning: …` or `note: …`.
    pub warnings: Vec<String>,
    /// `config: valid (inline mode, 1 API)`.
    pub summary: String,
}

/// Validates config directory `dir` as `run` would, binding nothing.
pub fn check(dir: &Path) -> Result<Checked, StartError> {
    let app = load(dir)?;
    let warnings = app
        .warnings
        .iter()
        .map(|w| {
            let kind = if w.is_note() { "note" } else { "warning" };
            format!("{kind}: {w}")
        })
        .collect();
    let summary = format!(
        "{}: valid ({} mode, {})",
        dir.display(),
        app.settings.mode.as_str(),
        count(app.apis.load().all().len(), "API")
    );
    Ok(Checked { warnings, summary })
}

/// `1 API`, `2 APIs`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `enforcer run`: loads config directory `dir` and serves it until a signal stops it.
pub fn run(dir: &Path) -> Result<(), StartError> {
    serve(Arc::new(load(dir)?), |_| {})
}

/// Runs the server on a loaded app until a signal stops it, in the order of the module
/// docs; `beside` starts whatever runs next to it once the store is open and the cluster
/// thread started. Errors are also logged (the log may go somewhere stderr does not).
pub fn serve(app: Arc<App>, beside: impl FnOnce(&Arc<App>)) -> Result<(), StartError> {
    init_logging(app.settings.admin_log_level);
    for w in &app.warnings {
        if w.is_note() {
            tracing::info!("{w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    match crate::persist::attach(&app) {
        Ok(Some(r)) => tracing::info!(
            buckets = r.buckets,
            requests = r.requests,
            list_entries = r.list_entries,
            skipped = r.skipped,
            "restored from the store"
        ),
        Ok(None) => tracing::info!("store=none: nothing persists across restarts"),
        Err(e) => {
            tracing::error!("{e}");
            return Err(e.into());
        }
    }
    refuse_open_default_secret(&app)?;
    if app.settings.user_activities_tokens.is_empty() {
        tracing::info!(
            "userActivities answers 401 to every call: no user_activities_tokens in ase.conf"
        );
    }
    if let Some(c) = &app.cluster {
        tracing::info!(
            cluster = %c.cluster_id,
            node = %c.node_id,
            redis = %c.shown,
            "cluster mode: state is shared through Redis"
        );
        crate::cluster::thread::start(&app).map_err(StartError::Cluster)?;
    }
    beside(&app);
    let served = server::run(app.clone());
    if let Some(p) = app.persister.get() {
        p.stop();
    }
    served.map_err(|e| {
        tracing::error!("{e}");
        e.into()
    })
}

/// ASE's well-known default secret is only a warning on a loopback management port; on a
/// port others can reach it is an open door, and the start is refused.
fn refuse_open_default_secret(app: &App) -> Result<(), StartError> {
    if app.settings.management_secret_key.expose() != "admin" || app.credentials.changed() {
        return Ok(());
    }
    if !app.settings.management_bind_address.is_loopback() {
        let msg = format!(
            "{}: management_secret_key: ASE's default secret \"admin\" with management_bind_address={} (not loopback): set a secret first (ase.conf, or enforcer update-password on a loopback bind)",
            app.config_dir.join("ase.conf").display(),
            app.settings.management_bind_address
        );
        tracing::error!("{msg}");
        return Err(StartError::DefaultSecret(msg));
    }
    tracing::warn!(
        "the management API uses ASE's default secret key \"admin\": set management_secret_key in ase.conf or run enforcer update-password"
    );
    Ok(())
}

/// Logs go to stderr. `ENFORCER_LOG` (tracing's filter syntax) overrides ase.conf's
/// `admin_log_level` (1 fatal … 5 debug).
fn init_logging(level: u8) {
    let default = match level {
        1 | 2 => "error",
        3 => "warn",
        4 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENFORCER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("enforcer={default},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Why `enforcer demo` could not run: its own set-up, or the start of the server.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot start a runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the sample backend: {0}")]
    Backend(#[source] std::io::Error),
    #[error("cannot create a scratch directory: {0}")]
    Scratch(#[source] std::io::Error),
    #[error("{0}")]
    Prepare(#[from] crate::demo::DemoError),
    #[error(
        "{} has no API at /shop (the shipped config/api/shop.json) to send traffic to",
        dir.display()
    )]
    NoShop { dir: PathBuf },
    /// The server's own start failed, as it would for `enforcer run`.
    #[error(transparent)]
    Start(#[from] StartError),
}

impl DemoError {
    /// The exit code: 2 when the demo's runtime or backend cannot start, 1 for a config
    /// it cannot use, the server's own code otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            DemoError::Runtime(_) | DemoError::Backend(_) | DemoError::Scratch(_) => 2,
            DemoError::Prepare(_) | DemoError::NoShop { .. } => 1,
            DemoError::Start(e) => e.exit_code(),
        }
    }
}

/// `enforcer demo`: inline mode on a scratch copy of config directory `dir`, with the
/// sample backend and the generated traffic (`speed` times real time) on a runtime of
/// their own beside the server's. The copy is removed when the server stops.
pub fn demo(dir: &Path, speed: f64) -> Result<(), DemoError> {
    use crate::demo;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("demo")
        .enable_all()
        .build()
        .map_err(DemoError::Runtime)?;
    let backend = demo::shop::start(&rt).map_err(DemoError::Backend)?;
    let work = demo::scratch_dir().map_err(DemoError::Scratch)?;
    let options = demo::Options {
        speed,
        ..demo::Options::default()
    };
    let config = demo::prepare(dir, &work, backend, options)?;
    let app = Arc::new(load(&config)?);
    // The traffic model talks to the shipped shop API.
    if app
        .pipeline()
        .route(Some("shop.example"), "/shop/items")
        .is_err()
    {
        return Err(DemoError::NoShop {
            dir: dir.to_path_buf(),
        });
    }
    let served = serve(app, |app| {
        rt.spawn(announce_demo(app.clone()));
        rt.spawn(demo::traffic(app.clone(), speed));
    });
    rt.shutdown_background();
    let _ = std::fs::remove_dir_all(&work);
    Ok(served?)
}

/// Prints the dashboard's address once the ports are bound. Only ASE's well-known default
/// password is printed; a real secret stays in ase.conf.
async fn announce_demo(app: Arc<App>) {
    let user = app.settings.management_access_key.clone();
    let password = if app.settings.management_secret_key.expose() == "admin" {
        "admin"
    } else {
        "management_secret_key from ase.conf"
    };
    while app.addresses.get().is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(a) = app.addresses.get() {
        // A wildcard bind is reachable on loopback; print an address a browser can open.
        let reachable = |s: SocketAddr| {
            if s.ip().is_unspecified() {
                SocketAddr::new([127, 0, 0, 1].into(), s.port())
            } else {
                s
            }
        };
        let (management, http) = (reachable(a.management), reachable(a.http));
        println!(
            "enforcer demo: dashboard http://{management}/dashboard/ (user {user}, password {password}); \
             traffic goes through http://{http}/shop/ (Ctrl-C stops)"
        );
    }
}
