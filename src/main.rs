//! The `enforcer` command line: parse arguments, load and validate the config, then run.
//!
//! Exit codes: 0 on success (including a graceful shutdown), 1 when the config is invalid
//! (reported before any port is bound), 2 when the server cannot start (a port is busy).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use enforcer::admin::client::Client;
use enforcer::app::App;
use enforcer::config::Config;

#[derive(Parser)]
#[command(
    name = "enforcer",
    version,
    about = "API Security Enforcer: ASE-compatible inline proxy and sideband decision service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run enforcer in the mode ase.conf sets (inline or sideband).
    Run(ConfigDir),
    /// Validate the config directory and exit: 0 when it is valid, 1 otherwise.
    Check(ConfigDir),
    /// Ask the running instance for a report (printed as JSON).
    #[command(subcommand)]
    Report(Report),
}

#[derive(Subcommand)]
enum Report {
    /// The api_metrics report of one API (ASE's GET /v4/abs/metrics).
    ApiMetrics {
        /// The API name (its file name in config/api without .json).
        #[arg(long)]
        api: String,
        /// Start of the window: 2018-02-13, 2018-02-13T18:00 or ISO 8601 with offset.
        /// Default: 24 hours before --to.
        #[arg(long)]
        from: Option<String>,
        /// End of the window (exclusive). Default: now.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

#[derive(Args)]
struct ConfigDir {
    /// Directory holding ase.conf and api/*.json.
    #[arg(long, short = 'c', default_value = "config", value_name = "DIR")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(dir) => run(&dir.config),
        Command::Check(dir) => check(&dir.config),
        Command::Report(Report::ApiMetrics { api, from, to, dir }) => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("api", &api);
            if let Some(from) = &from {
                query.append_pair("earlier_date", from);
            }
            if let Some(to) = &to {
                query.append_pair("later_date", to);
            }
            ask(&dir.config, &format!("/v4/abs/metrics?{}", query.finish()))
        }
    }
}

/// GETs `path` from the instance running on config `dir` and prints the answer.
fn ask(dir: &std::path::Path, path: &str) -> ExitCode {
    let answer = Client::for_config(dir).and_then(|c| c.get(path));
    match answer {
        Ok((status, body)) if status.is_success() => {
            println!("{}", String::from_utf8_lossy(&body).trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            eprintln!("enforcer: {status}: {message}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("enforcer: {e}");
            ExitCode::from(1)
        }
    }
}

fn load(dir: &std::path::Path) -> Result<App, ExitCode> {
    let config = Config::load(dir).map_err(|e| {
        eprintln!("enforcer: invalid config: {e}");
        ExitCode::from(1)
    })?;
    App::new(config).map_err(|e| {
        eprintln!("enforcer: invalid config: {e}");
        ExitCode::from(1)
    })
}

fn check(dir: &std::path::Path) -> ExitCode {
    match load(dir) {
        Ok(app) => {
            for w in &app.warnings {
                let kind = if w.is_note() { "note" } else { "warning" };
                eprintln!("{kind}: {w}");
            }
            println!(
                "{}: valid ({} mode, {} APIs)",
                dir.display(),
                app.settings.mode.as_str(),
                app.pipeline.apis().all().len()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

fn run(dir: &std::path::Path) -> ExitCode {
    let app = match load(dir) {
        Ok(app) => app,
        Err(code) => return code,
    };
    init_logging(app.settings.admin_log_level);
    for w in &app.warnings {
        if w.is_note() {
            tracing::info!("{w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    match enforcer::server::run(Arc::new(app)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("enforcer: {e}");
            ExitCode::from(2)
        }
    }
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
