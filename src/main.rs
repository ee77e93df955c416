//! The `enforcer` command line: parse the arguments (clap) and call the library.
//! `run`, `check` and `demo` are [`enforcer::start`] (the start-up order); every other
//! command asks the running instance through [`enforcer::admin::client`], with the
//! credentials given here or in `ase.conf`, and prints its answer ([`enforcer::admin::text`]).
//!
//! Exit codes: 0 on success (including a graceful shutdown), 1 when the config is invalid
//! (reported before any port is bound), 2 when the server cannot start (a port is busy).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// mimalloc rather than glibc's malloc: it hands freed pages back to the system, so memory
/// taken by a burst (thousands of stalled HTTP/2 streams) is returned once the burst ends
/// instead of staying as the process's new high-water mark (docs/performance.md#allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use enforcer::admin::client::{Client, ClientError};
use enforcer::admin::text;
use enforcer::admin::wire::ListChange;
use enforcer::enforce::lists::{ListKind, Source};
use enforcer::start;
use enforcer::vocab::ClientKind;

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
    Run(LocalDir),
    /// Run inline mode on a copy of the config with a built-in sample backend and
    /// generated traffic (shoppers and attackers); prints the dashboard's address.
    Demo {
        #[command(flatten)]
        dir: LocalDir,
        /// Run the traffic this many times faster than real time (the copy's detection
        /// windows and block lifetimes shrink alike); 1 is real time.
        #[arg(long, default_value_t = 1.0, value_parser = speed)]
        speed: f64,
    },
    /// Validate the config directory and exit: 0 when it is valid, 1 otherwise.
    Check(LocalDir),
    /// Show the running instance's status.
    Status(ConfigDir),
    /// API definitions of the running instance: applied live and saved in config/api.
    #[command(subcommand)]
    Api(ApiCommand),
    /// Re-read the config directory and swap in its API definitions (like SIGHUP).
    Reload(ConfigDir),
    /// Ask the running instance for a report (printed as JSON).
    #[command(subcommand)]
    Report(Report),
    /// Sideband authentication of the running instance: ASE-Tokens and the switch.
    #[command(subcommand)]
    Sideband(Sideband),
    /// The deny list of the running instance (ASE's blacklist).
    #[command(subcommand)]
    Blacklist(ListCommand),
    /// The allow list of the running instance (ASE's whitelist).
    #[command(subcommand)]
    Whitelist(ListCommand),
    /// Change the management secret key of the running instance (ASE's update_password).
    /// It is stored hashed and overrides management_secret_key in ase.conf from then on.
    UpdatePassword {
        /// The new secret key (8 to 256 characters); read from standard input when absent.
        #[arg(long, env = "ENFORCER_NEW_SECRET_KEY", hide_env_values = true)]
        new_secret_key: Option<String>,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

#[derive(Subcommand)]
enum ListCommand {
    /// Add an identifier: ip ADDR|CIDR, cookie NAME VALUE, token VALUE, api_key NAME VALUE
    /// or username NAME.
    Add {
        #[command(flatten)]
        id: Ident,
        /// Remove the entry again after this long (30m, 1h, 7d...).
        #[arg(long)]
        ttl: Option<String>,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Delete an identifier (same arguments as add).
    Delete {
        #[command(flatten)]
        id: Ident,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Remove every entry, or only those from one source.
    Clear {
        #[arg(long, value_enum)]
        source: Option<SourceArg>,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Print the list grouped by source, as ASE's view_blacklist does.
    View {
        #[arg(value_enum, default_value = "all")]
        source: ViewArg,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

#[derive(Args)]
struct Ident {
    /// The identifier type.
    #[arg(value_enum)]
    kind: IdentKind,
    /// The value (cookie and api_key take the name, then the value).
    #[arg(num_args = 1..=2, required = true)]
    values: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum IdentKind {
    Ip,
    Cookie,
    Token,
    ApiKey,
    Username,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SourceArg {
    Manual,
    Decoy,
    Pattern,
    Detection,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ViewArg {
    All,
    Manual,
    Decoy,
    Pattern,
    Detection,
}

#[derive(Subcommand)]
enum ApiCommand {
    /// Add an API from a JSON file ({"api_metadata": {...}}).
    Add {
        file: PathBuf,
        /// The API id (default: the file name without .json).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Replace an API's definition with a JSON file.
    Update {
        file: PathBuf,
        /// The API id (default: the file name without .json).
        #[arg(long)]
        id: Option<String>,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// List the APIs in service.
    List(ConfigDir),
    /// Print an API's definition.
    Show {
        id: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Delete an API.
    Delete {
        id: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

#[derive(Subcommand)]
enum Sideband {
    /// The ASE-Tokens gateways may present.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Require an ASE-Token on sideband calls (enable), stop requiring it (disable), or
    /// show the setting (status).
    Authentication {
        #[arg(value_enum)]
        action: AuthAction,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a random token and print it.
    Create(ConfigDir),
    /// Add a token chosen elsewhere (32 lowercase letters and digits).
    Import {
        token: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// List the valid tokens.
    List(ConfigDir),
    /// Delete a token.
    Delete {
        token: String,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AuthAction {
    Enable,
    Disable,
    Status,
}

#[derive(Subcommand)]
enum Report {
    /// The api_metrics report of one API (ASE's GET /v4/abs/metrics).
    ApiMetrics {
        /// The API name (its file name in config/api without .json).
        #[arg(long)]
        api: String,
        /// Start of the window: 2018-02-13 (from midnight), 2018-02-13T18:00 or ISO 8601
        /// with an offset. Default: 24 hours before --to.
        #[arg(long)]
        from: Option<String>,
        /// End of the window. A date alone includes that whole day (--to 2018-02-13 ends at
        /// midnight after it); a time (2018-02-13T18:00, or ISO 8601) is exclusive.
        /// Default: now.
        #[arg(long)]
        to: Option<String>,
        /// List the User-Agent headers as sent instead of their browser groups (CHROME,
        /// DOWNLOAD, BOT, ...).
        #[arg(long)]
        raw_user_agents: bool,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// One client's activity: APIs accessed and the eight panes of the dashboard.
    ClientActivity {
        /// ip, token, cookie, username or api_key.
        #[arg(long = "type")]
        kind: String,
        /// The identifier's value.
        #[arg(long)]
        id: String,
        #[command(flatten)]
        period: PeriodArgs,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// One API's activity: IoAs, error codes, tokens, users, IPs, devices, endpoints.
    ApiActivity {
        #[arg(long)]
        api: String,
        #[command(flatten)]
        period: PeriodArgs,
        #[command(flatten)]
        dir: ConfigDir,
    },
    /// Attack management: the clients with IoAs in the period.
    Attacks {
        /// Only this IoA type (name or type id).
        #[arg(long = "type")]
        ioa: Option<String>,
        /// Only this client type.
        #[arg(long)]
        client_type: Option<String>,
        /// Only this API.
        #[arg(long)]
        api: Option<String>,
        /// time (latest detection first) or count.
        #[arg(long, default_value = "time")]
        sort: String,
        #[command(flatten)]
        period: PeriodArgs,
        #[command(flatten)]
        dir: ConfigDir,
    },
}

#[derive(Args)]
struct PeriodArgs {
    /// day, week, month or 6months, ending now (or at --at).
    #[arg(long, default_value = "day")]
    period: String,
    /// End of the period: a date alone includes that whole day; a time or unix seconds
    /// is exact. Default: now.
    #[arg(long)]
    at: Option<String>,
}

impl PeriodArgs {
    fn query(&self) -> form_urlencoded::Serializer<'static, String> {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("period", &self.period);
        if let Some(at) = &self.at {
            q.append_pair("at", &through_day(at));
        }
        q
    }
}

/// `--speed`: a factor from 1 to 60 (beyond, the ten-second minimum of `ioa_window`
/// would stretch the detection window).
fn speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if (1.0..=60.0).contains(&v) => Ok(v),
        _ => Err(format!("{text:?}: a factor from 1 to 60")),
    }
}

/// An end given as a date alone means "through that day": the next midnight. Anything
/// else (a time, an offset, unix seconds) is passed on as written.
fn through_day(end: &str) -> String {
    let text = end.trim();
    // jiff reads the date part of a date-time as a date too: only `YYYY-MM-DD` is a day.
    match text.parse::<jiff::civil::Date>() {
        Ok(day) if text.len() == "2018-02-13".len() => {
            day.tomorrow().map_or(end.to_string(), |d| d.to_string())
        }
        _ => end.to_string(),
    }
}

/// A command on a config directory that starts nothing of its own.
#[derive(Args)]
struct LocalDir {
    /// Directory holding ase.conf and api/*.json.
    #[arg(long, short = 'c', default_value = "config", value_name = "DIR")]
    config: PathBuf,
}

/// The running instance a command talks to (found from its config directory), and the
/// management credentials to use.
#[derive(Args)]
struct ConfigDir {
    /// Directory holding ase.conf and api/*.json of the running instance.
    #[arg(long, short = 'c', default_value = "config", value_name = "DIR")]
    config: PathBuf,
    /// Management API access key (default: management_access_key in ase.conf).
    #[arg(long, env = "ENFORCER_ACCESS_KEY", hide_env_values = true)]
    access_key: Option<String>,
    /// Management API secret key (default: management_secret_key in ase.conf, or the
    /// one set by update-password).
    #[arg(long, env = "ENFORCER_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(dir) => run(&dir.config),
        Command::Demo { dir, speed } => demo(&dir.config, speed),
        Command::Check(dir) => check(&dir.config),
        Command::Status(dir) => {
            let mut clustered = false;
            let code = remote(&dir, |c| {
                let status = c.status()?;
                clustered = status.cluster.is_some();
                Ok(text::status(&status))
            });
            // The status rows are printed before the cluster is asked for: a cluster that
            // cannot answer leaves them on the screen.
            if !clustered {
                return code;
            }
            remote(&dir, |c| Ok(text::cluster(&c.cluster()?)))
        }
        Command::Api(cmd) => api(cmd),
        Command::UpdatePassword {
            new_secret_key,
            dir,
        } => {
            let new = match new_secret_key {
                Some(k) => k,
                None => {
                    let mut line = String::new();
                    if let Err(e) = std::io::stdin().read_line(&mut line) {
                        eprintln!("enforcer: cannot read the new secret key: {e}");
                        return ExitCode::from(1);
                    }
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            remote(&dir, |c| {
                c.set_secret(&new)?;
                Ok("secret key updated: pass it with --secret-key or ENFORCER_SECRET_KEY from now on\n".into())
            })
        }
        Command::Reload(dir) => remote(&dir, |c| {
            Ok(format!("reloaded: {}\n", c.reload()?.status_message))
        }),
        Command::Report(report) => self::report(report),
        Command::Sideband(cmd) => sideband(cmd),
        Command::Blacklist(cmd) => list(ListKind::Deny, cmd),
        Command::Whitelist(cmd) => list(ListKind::Allow, cmd),
    }
}

/// Runs `command` against the instance running on config `dir` and prints its text;
/// exit code 1 (after saying why) when the instance cannot be reached or refuses.
fn remote(
    dir: &ConfigDir,
    command: impl FnOnce(&Client) -> Result<String, ClientError>,
) -> ExitCode {
    let done = Client::for_config(&dir.config).and_then(|c| {
        let c = c.with_credentials(dir.access_key.clone(), dir.secret_key.clone());
        command(&c)
    });
    match done {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("enforcer: {e}");
            ExitCode::from(1)
        }
    }
}

/// `enforcer report …`: the report as the instance wrote it.
fn report(report: Report) -> ExitCode {
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let (dir, path) = match report {
        Report::ApiMetrics {
            api,
            from,
            to,
            raw_user_agents,
            dir,
        } => {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query.append_pair("api", &api);
            if raw_user_agents {
                query.append_pair("user_agent", "raw");
            }
            if let Some(from) = &from {
                query.append_pair("earlier_date", from);
            }
            if let Some(to) = &to {
                query.append_pair("later_date", &through_day(to));
            }
            (dir, format!("/v4/abs/metrics?{}", query.finish()))
        }
        Report::ClientActivity {
            kind,
            id,
            period,
            dir,
        } => {
            let path = format!(
                "/v5/ase/clients/{}/{}/activity?{}",
                encode(&kind),
                encode(&id),
                period.query().finish()
            );
            (dir, path)
        }
        Report::ApiActivity { api, period, dir } => {
            let path = format!(
                "/v5/ase/apis/{}/activity?{}",
                encode(&api),
                period.query().finish()
            );
            (dir, path)
        }
        Report::Attacks {
            ioa,
            client_type,
            api,
            sort,
            period,
            dir,
        } => {
            let mut q = period.query();
            q.append_pair("sort", &sort);
            for (k, v) in [("type", ioa), ("client_type", client_type), ("api", api)] {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            (dir, format!("/v5/ase/attacks?{}", q.finish()))
        }
    };
    remote(&dir, |c| Ok(format!("{}\n", c.get_text(&path)?.trim_end())))
}

impl SourceArg {
    fn source(self) -> Source {
        match self {
            SourceArg::Manual => Source::Manual,
            SourceArg::Decoy => Source::Decoy,
            SourceArg::Pattern => Source::Pattern,
            SourceArg::Detection => Source::Detection,
        }
    }
}

/// ASE's word for a list.
fn word(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Deny => "blacklist",
        ListKind::Allow => "whitelist",
    }
}

fn list(kind: ListKind, cmd: ListCommand) -> ExitCode {
    let name = word(kind);
    match cmd {
        ListCommand::Add { id, ttl, dir } => {
            let (mut change, shown) = match ident_change(&id) {
                Ok(pair) => pair,
                Err(code) => return code,
            };
            change.ttl = ttl;
            remote(&dir, |c| {
                Ok(if c.list_add(kind, &change)?.added == 0 {
                    format!("{shown} is already in {name}\n")
                } else {
                    format!("{shown} added to {name}\n")
                })
            })
        }
        ListCommand::Delete { id, dir } => {
            let (change, shown) = match ident_change(&id) {
                Ok(pair) => pair,
                Err(code) => return code,
            };
            let mut absent = false;
            let code = remote(&dir, |c| {
                absent = c.list_remove(kind, &change)?.removed == 0;
                Ok(if absent {
                    String::new()
                } else {
                    format!("{shown} deleted from {name}\n")
                })
            });
            if absent {
                eprintln!("enforcer: {shown} is not in {name}");
                return ExitCode::from(1);
            }
            code
        }
        ListCommand::Clear { source, dir } => remote(&dir, |c| {
            let removed = c.list_clear(kind, source.map(SourceArg::source))?.removed;
            Ok(format!("{name} cleared ({removed} entries removed)\n"))
        }),
        ListCommand::View { source, dir } => {
            let only = match source {
                ViewArg::All => None,
                ViewArg::Manual => Some(Source::Manual),
                ViewArg::Decoy => Some(Source::Decoy),
                ViewArg::Pattern => Some(Source::Pattern),
                ViewArg::Detection => Some(Source::Detection),
            };
            remote(&dir, |c| {
                Ok(text::list_view(kind, &c.list_view(kind)?, only))
            })
        }
    }
}

/// The list change naming one identifier, and how to show it (`ip 1.2.3.4`); exit code
/// 2 when the identifier has the wrong number of values.
fn ident_change(id: &Ident) -> Result<(ListChange, String), ExitCode> {
    let kind = match id.kind {
        IdentKind::Ip => ClientKind::Ip,
        IdentKind::Cookie => ClientKind::Cookie,
        IdentKind::Token => ClientKind::Token,
        IdentKind::ApiKey => ClientKind::ApiKey,
        IdentKind::Username => ClientKind::Username,
    };
    ListChange::naming(kind, &id.values).map_err(|e| {
        eprintln!("enforcer: {e}");
        ExitCode::from(2)
    })
}

fn api(cmd: ApiCommand) -> ExitCode {
    let put = |file: &Path, id: Option<String>, dir: &ConfigDir, create: bool| -> ExitCode {
        let id = id.unwrap_or_else(|| {
            file.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string()
        });
        let definition = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("enforcer: {}: {e}", file.display());
                return ExitCode::from(1);
            }
        };
        remote(dir, |c| {
            Ok(format!(
                "{}\n",
                c.put_api(&id, definition, create)?.status_message
            ))
        })
    };
    match cmd {
        ApiCommand::Add { file, id, dir } => put(&file, id, &dir, true),
        ApiCommand::Update { file, id, dir } => put(&file, id, &dir, false),
        ApiCommand::Delete { id, dir } => remote(&dir, |c| {
            Ok(format!("{}\n", c.delete_api(&id)?.status_message))
        }),
        ApiCommand::Show { id, dir } => remote(&dir, |c| {
            let definition = c.api(&id)?;
            Ok(format!(
                "{}\n",
                serde_json::to_string_pretty(&definition).unwrap_or_default()
            ))
        }),
        ApiCommand::List(dir) => remote(&dir, |c| Ok(text::api_table(&c.apis()?))),
    }
}

fn sideband(cmd: Sideband) -> ExitCode {
    match cmd {
        Sideband::Token(TokenCommand::Create(dir)) => remote(&dir, |c| {
            Ok(format!(
                "Sideband token {} created.\n",
                c.create_token()?.token
            ))
        }),
        Sideband::Token(TokenCommand::List(dir)) => {
            remote(&dir, |c| Ok(text::tokens(&c.tokens()?)))
        }
        Sideband::Token(TokenCommand::Import { token, dir }) => remote(&dir, |c| {
            Ok(format!("{}\n", c.import_token(&token)?.status_message))
        }),
        Sideband::Token(TokenCommand::Delete { token, dir }) => remote(&dir, |c| {
            Ok(format!("{}\n", c.delete_token(&token)?.status_message))
        }),
        Sideband::Authentication { action, dir } => {
            let set = match action {
                AuthAction::Enable => Some(true),
                AuthAction::Disable => Some(false),
                AuthAction::Status => None,
            };
            remote(&dir, |c| {
                Ok(format!(
                    "{}\n",
                    c.sideband_authentication(set)?.status_message
                ))
            })
        }
    }
}

/// `enforcer check`: the warnings on stderr, the verdict on stdout.
fn check(dir: &Path) -> ExitCode {
    match start::check(dir) {
        Ok(checked) => {
            for w in &checked.warnings {
                eprintln!("{w}");
            }
            println!("{}", checked.summary);
            ExitCode::SUCCESS
        }
        Err(e) => failed(&e),
    }
}

/// Prints why the start failed; its exit code.
fn failed(e: &start::StartError) -> ExitCode {
    eprintln!("enforcer: {e}");
    ExitCode::from(e.exit_code())
}

fn run(dir: &Path) -> ExitCode {
    match start::run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => failed(&e),
    }
}

fn demo(dir: &Path, speed: f64) -> ExitCode {
    match start::demo(dir, speed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(start::DemoError::Start(e)) => failed(&e),
        Err(e) => {
            eprintln!("enforcer demo: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::through_day;

    #[test]
    fn a_date_alone_runs_through_that_day() {
        assert_eq!(through_day("2026-11-30"), "2026-12-01");
        assert_eq!(through_day("2026-12-31"), "2027-01-01");
        assert_eq!(through_day("2026-11-30T18:00"), "2026-11-30T18:00");
        assert_eq!(through_day("1764460800"), "1764460800");
        assert_eq!(through_day("soon"), "soon");
    }
}
