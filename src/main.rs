//! The `enforcer` command line: parse arguments, load and validate the config, then run.
//!
//! Exit codes: 0 on success (including a graceful shutdown), 1 when the config is invalid
//! (reported before any port is bound), 2 when the server cannot start (a port is busy).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use http::Method;

/// mimalloc rather than glibc's malloc: it hands freed pages back to the system, so memory
/// taken by a burst (thousands of stalled HTTP/2 streams) is returned once the burst ends
/// instead of staying as the process's new high-water mark (docs/performance.md#allocator).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// The client for the instance running on config `dir`, with the credentials given.
fn client(dir: &ConfigDir) -> Result<Client, enforcer::admin::client::ClientError> {
    Ok(Client::for_config(&dir.config)?
        .with_credentials(dir.access_key.clone(), dir.secret_key.clone()))
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
        Command::Status(dir) => status(&dir),
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
            let body = serde_json::json!({ "secret_key": new }).to_string();
            match call(&dir, Method::PUT, "/v5/ase/credentials", body) {
                Ok(_) => {
                    println!(
                        "secret key updated: pass it with --secret-key or ENFORCER_SECRET_KEY from now on"
                    );
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        Command::Reload(dir) => match call(&dir, Method::POST, "/v4/ase/reload", String::new()) {
            Ok(v) => {
                println!(
                    "reloaded: {}",
                    v["status_message"].as_str().unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Report(Report::ApiMetrics {
            api,
            from,
            to,
            raw_user_agents,
            dir,
        }) => {
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
            ask(&dir, &format!("/v4/abs/metrics?{}", query.finish()))
        }
        Command::Report(Report::ClientActivity {
            kind,
            id,
            period,
            dir,
        }) => {
            let path = format!(
                "/v5/ase/clients/{}/{}/activity?{}",
                percent_encoding::utf8_percent_encode(&kind, percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(&id, percent_encoding::NON_ALPHANUMERIC),
                period.query().finish()
            );
            ask(&dir, &path)
        }
        Command::Report(Report::ApiActivity { api, period, dir }) => {
            let path = format!(
                "/v5/ase/apis/{}/activity?{}",
                percent_encoding::utf8_percent_encode(&api, percent_encoding::NON_ALPHANUMERIC),
                period.query().finish()
            );
            ask(&dir, &path)
        }
        Command::Report(Report::Attacks {
            ioa,
            client_type,
            api,
            sort,
            period,
            dir,
        }) => {
            let mut q = period.query();
            q.append_pair("sort", &sort);
            for (k, v) in [("type", ioa), ("client_type", client_type), ("api", api)] {
                if let Some(v) = v {
                    q.append_pair(k, &v);
                }
            }
            ask(&dir, &format!("/v5/ase/attacks?{}", q.finish()))
        }
        Command::Sideband(cmd) => sideband(cmd),
        Command::Blacklist(cmd) => list(ListName::Deny, cmd),
        Command::Whitelist(cmd) => list(ListName::Allow, cmd),
    }
}

#[derive(Clone, Copy)]
enum ListName {
    Deny,
    Allow,
}

impl ListName {
    /// ASE's words for the lists.
    fn word(self) -> &'static str {
        match self {
            ListName::Deny => "blacklist",
            ListName::Allow => "whitelist",
        }
    }
}

fn list(name: ListName, cmd: ListCommand) -> ExitCode {
    let path = format!("/v4/ase/{}", name.word());
    let source_of = |s: SourceArg| match s {
        SourceArg::Manual => "manual",
        SourceArg::Decoy => "decoy",
        SourceArg::Pattern => "pattern",
        SourceArg::Detection => "detection",
    };
    match cmd {
        ListCommand::Add { id, ttl, dir } => {
            let (mut body, shown) = match ident_body(&id) {
                Ok(pair) => pair,
                Err(code) => return code,
            };
            if let (Some(ttl), Some(obj)) = (ttl, body.as_object_mut()) {
                obj.insert("ttl".into(), ttl.into());
            }
            match call(&dir, Method::POST, &path, body.to_string()) {
                Ok(v) if v["added"] == 0 => println!("{shown} is already in {}", name.word()),
                Ok(_) => println!("{shown} added to {}", name.word()),
                Err(code) => return code,
            }
            ExitCode::SUCCESS
        }
        ListCommand::Delete { id, dir } => {
            let (body, shown) = match ident_body(&id) {
                Ok(pair) => pair,
                Err(code) => return code,
            };
            match call(&dir, Method::DELETE, &path, body.to_string()) {
                Ok(v) if v["removed"] == 0 => {
                    eprintln!("enforcer: {shown} is not in {}", name.word());
                    return ExitCode::from(1);
                }
                Ok(_) => println!("{shown} deleted from {}", name.word()),
                Err(code) => return code,
            }
            ExitCode::SUCCESS
        }
        ListCommand::Clear { source, dir } => {
            let query = source.map_or(String::new(), |s| format!("&source={}", source_of(s)));
            match call(
                &dir,
                Method::DELETE,
                &format!("{path}?all=true{query}"),
                String::new(),
            ) {
                Ok(v) => println!("{} cleared ({} entries removed)", name.word(), v["removed"]),
                Err(code) => return code,
            }
            ExitCode::SUCCESS
        }
        ListCommand::View { source, dir } => {
            let filter = match source {
                ViewArg::All => None,
                ViewArg::Manual => Some(SourceArg::Manual),
                ViewArg::Decoy => Some(SourceArg::Decoy),
                ViewArg::Pattern => Some(SourceArg::Pattern),
                ViewArg::Detection => Some(SourceArg::Detection),
            };
            let view = match call(&dir, Method::GET, &path, String::new()) {
                Ok(v) => v,
                Err(code) => return code,
            };
            print!("{}", format_view(name, &view, filter.map(source_of)));
            ExitCode::SUCCESS
        }
    }
}

/// The JSON body naming one identifier, and how to show it (`ip 1.2.3.4`).
fn ident_body(id: &Ident) -> Result<(serde_json::Value, String), ExitCode> {
    use serde_json::json;
    let v = &id.values;
    let pair = |what: &str| -> Result<(String, String), ExitCode> {
        match v.as_slice() {
            [name, value] => Ok((name.clone(), value.clone())),
            _ => {
                eprintln!("enforcer: {what} takes a name and a value");
                Err(ExitCode::from(2))
            }
        }
    };
    let one = |what: &str| -> Result<String, ExitCode> {
        match v.as_slice() {
            [value] => Ok(value.clone()),
            _ => {
                eprintln!("enforcer: {what} takes one value");
                Err(ExitCode::from(2))
            }
        }
    };
    Ok(match id.kind {
        IdentKind::Ip => {
            let ip = one("ip")?;
            (json!({ "ips": [ip] }), format!("ip {ip}"))
        }
        IdentKind::Cookie => {
            let (name, value) = pair("cookie")?;
            (
                json!({ "cookies": [{ "name": name, "value": value }] }),
                format!("cookie {name} {value}"),
            )
        }
        IdentKind::Token => {
            let t = one("token")?;
            (json!({ "oauth_tokens": [t] }), format!("token {t}"))
        }
        IdentKind::ApiKey => {
            let (name, value) = pair("api_key")?;
            (
                json!({ "api_keys": [{ "name": name, "value": value }] }),
                format!("api_key {name} {value}"),
            )
        }
        IdentKind::Username => {
            let u = one("username")?;
            (json!({ "usernames": [u] }), format!("username {u}"))
        }
    })
}

/// A list view in ASE's `view_blacklist` layout: one section per source, numbered lines.
fn format_view(name: ListName, view: &serde_json::Value, only: Option<&str>) -> String {
    let title = match name {
        ListName::Deny => "Blacklist",
        ListName::Allow => "Whitelist",
    };
    let sections = [
        ("manual", format!("Manual {title}")),
        ("decoy", format!("Realtime Decoy {title}")),
        ("pattern", format!("Realtime Pattern {title}")),
        ("detection", format!("Realtime Detection {title}")),
    ];
    let kinds = [
        ("ips", "ip"),
        ("cookies", "cookie"),
        ("oauth_tokens", "token"),
        ("api_keys", "api_key"),
        ("usernames", "username"),
    ];
    let mut out = String::new();
    for (source, heading) in sections {
        if only.is_some_and(|o| o != source) {
            continue;
        }
        out.push_str(&heading);
        out.push('\n');
        let mut n = 0;
        for (field, kind) in kinds {
            for e in view[field]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["source"] == source)
            {
                n += 1;
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                let mut line = match kind {
                    "cookie" | "api_key" => format!(
                        "{n}) type : {kind}, name : {}, value : {}",
                        s("name"),
                        s("value")
                    ),
                    _ => format!("{n}) type : {kind}, value : {}", s("value")),
                };
                if let Some(expires) = e["expires"].as_str() {
                    line.push_str(&format!(", expires : {expires}"));
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    out
}

/// `enforcer status`, in the layout of ASE's `cli.sh status`.
/// The store's row of `enforcer status`: kind, health, and whether records are still
/// being loaded back after a start.
fn store_line(p: &serde_json::Value) -> String {
    let kind = p["store"].as_str().unwrap_or("-");
    if kind == "none" {
        return "none".into();
    }
    let health = if p["healthy"].as_bool() == Some(false) {
        "unhealthy"
    } else {
        "healthy"
    };
    let restoring = if p["restoring"].as_bool() == Some(true) {
        ", restoring records"
    } else {
        ""
    };
    let last = p["last_flush"].as_str().unwrap_or("never");
    format!(
        "{kind}, {health}{restoring}, {} flushes, last {last}",
        p["flushes"]
    )
}

fn status(dir: &ConfigDir) -> ExitCode {
    let s = match call(dir, Method::GET, "/v4/ase/status", String::new()) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let text = |k: &str| match &s[k] {
        serde_json::Value::String(v) => v.clone(),
        serde_json::Value::Null => "-".into(),
        v => v.to_string(),
    };
    let rows = [
        ("status", text("status")),
        ("mode", text("mode")),
        ("http/ws", format!("port {}", text("http_ws_port"))),
        ("https/wss", format!("port {}", text("https_wss_port"))),
        ("management", format!("port {}", text("management_port"))),
        ("firewall", text("firewall")),
        ("sideband authentication", text("sideband_authentication")),
        ("ase detected attack", text("ase_detected_attack")),
        (
            "attack list",
            format!(
                "configured {} entries, deny {}, allow {}",
                s["attack_list"]["configured"], s["attack_list"]["deny"], s["attack_list"]["allow"]
            ),
        ),
        ("log level", text("log_level")),
        (
            "timezone",
            format!("{} ({})", text("timezone"), text("timezone_name")),
        ),
        ("apis", text("apis")),
        ("connections", text("connections")),
        ("version", text("version")),
        ("started", text("started")),
        ("store", store_line(&s["persistence"])),
    ];
    println!("API Security Enforcer");
    for (k, v) in rows {
        println!("{k:<24}: {v}");
    }
    if s["cluster"].is_object() {
        let c = match call(dir, Method::GET, "/v4/ase/cluster", String::new()) {
            Ok(v) => v,
            Err(code) => return code,
        };
        let field = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<24}: {} (this node {}), redis {} {}",
            "cluster",
            field(&c, "cluster_id"),
            field(&c, "node"),
            field(&c, "redis"),
            field(&c, "redis_status")
        );
        for n in c["nodes"].as_array().into_iter().flatten() {
            println!(
                "{:<24}: {} {}, management {}, last contact {}",
                "  node",
                field(n, "node"),
                field(n, "status"),
                field(n, "management"),
                field(n, "last_contact")
            );
        }
    }
    ExitCode::SUCCESS
}

fn api(cmd: ApiCommand) -> ExitCode {
    let path = |id: &str| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("api_id", id);
        format!("/v4/ase/api?{}", q.finish())
    };
    let put = |file: &PathBuf, id: Option<String>, dir: &ConfigDir, method: Method| -> ExitCode {
        let id = id.unwrap_or_else(|| {
            file.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string()
        });
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("enforcer: {}: {e}", file.display());
                return ExitCode::from(1);
            }
        };
        match call(dir, method, &path(&id), text) {
            Ok(v) => {
                println!("{}", v["status_message"].as_str().unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        }
    };
    match cmd {
        ApiCommand::Add { file, id, dir } => put(&file, id, &dir, Method::POST),
        ApiCommand::Update { file, id, dir } => put(&file, id, &dir, Method::PUT),
        ApiCommand::Delete { id, dir } => {
            match call(&dir, Method::DELETE, &path(&id), String::new()) {
                Ok(v) => {
                    println!("{}", v["status_message"].as_str().unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        ApiCommand::Show { id, dir } => match call(&dir, Method::GET, &path(&id), String::new()) {
            Ok(v) => {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        ApiCommand::List(dir) => match call(&dir, Method::GET, "/v4/ase/api", String::new()) {
            Ok(v) => {
                println!(
                    "{:<24} {:<8} {:<24} {:<24} servers",
                    "api_id", "protocol", "hostname", "url"
                );
                for a in v["apis"].as_array().into_iter().flatten() {
                    let servers: Vec<&str> = a["servers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str())
                        .collect();
                    println!(
                        "{:<24} {:<8} {:<24} {:<24} {}",
                        a["api_id"].as_str().unwrap_or_default(),
                        a["protocol"].as_str().unwrap_or_default(),
                        a["hostname"].as_str().unwrap_or_default(),
                        a["url"].as_str().unwrap_or_default(),
                        servers.join(", ")
                    );
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
    }
}

const TOKEN_PATH: &str = "/v5/ase/sideband/token";

fn sideband(cmd: Sideband) -> ExitCode {
    let (dir, method, path, body) = match &cmd {
        Sideband::Token(TokenCommand::Create(dir)) => {
            (dir, Method::POST, TOKEN_PATH.to_string(), None)
        }
        Sideband::Token(TokenCommand::Import { token, dir }) => {
            (dir, Method::PUT, TOKEN_PATH.into(), Some(token))
        }
        Sideband::Token(TokenCommand::List(dir)) => (dir, Method::GET, TOKEN_PATH.into(), None),
        Sideband::Token(TokenCommand::Delete { token, dir }) => {
            (dir, Method::DELETE, TOKEN_PATH.into(), Some(token))
        }
        Sideband::Authentication { action, dir } => {
            let (method, query) = match action {
                AuthAction::Enable => (Method::POST, "?status=enable"),
                AuthAction::Disable => (Method::POST, "?status=disable"),
                AuthAction::Status => (Method::GET, ""),
            };
            (
                dir,
                method,
                format!("/v5/ase/sideband/authentication{query}"),
                None,
            )
        }
    };
    let body = body
        .map(|t| serde_json::json!({ "token": t }).to_string())
        .unwrap_or_default();
    let answer = match call(dir, method, &path, body) {
        Ok(v) => v,
        Err(code) => return code,
    };
    match cmd {
        Sideband::Token(TokenCommand::Create(_)) => {
            println!(
                "Sideband token {} created.",
                answer["token"].as_str().unwrap_or_default()
            );
        }
        Sideband::Token(TokenCommand::List(_)) => {
            let tokens = answer["tokens"].as_array().cloned().unwrap_or_default();
            if tokens.is_empty() {
                println!("No sideband tokens.");
            }
            for (i, t) in tokens.iter().enumerate() {
                println!(
                    "{}) token : {}, created : {}",
                    i + 1,
                    t["token"].as_str().unwrap_or_default(),
                    t["created"].as_str().unwrap_or_default()
                );
            }
        }
        _ => println!("{}", answer["status_message"].as_str().unwrap_or_default()),
    }
    ExitCode::SUCCESS
}

/// Sends one request to the instance running on config `dir`; the JSON answer on success,
/// or the exit code after printing why not.
fn call(
    dir: &ConfigDir,
    method: Method,
    path: &str,
    body: String,
) -> Result<serde_json::Value, ExitCode> {
    let answer = client(dir).and_then(|c| c.send(method, path, body.into()));
    match answer {
        Ok((status, body)) if status.is_success() => serde_json::from_slice(&body).map_err(|e| {
            eprintln!("enforcer: the management API answered something that is not JSON: {e}");
            ExitCode::from(1)
        }),
        Ok((status, body)) => {
            eprintln!("enforcer: {status}: {}", message(&body));
            Err(ExitCode::from(1))
        }
        Err(e) => {
            eprintln!("enforcer: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// The `message` of a management API error body (or the body itself).
fn message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// GETs `path` from the instance running on config `dir` and prints the answer.
fn ask(dir: &ConfigDir, path: &str) -> ExitCode {
    let answer = client(dir).and_then(|c| c.get(path));
    match answer {
        Ok((status, body)) if status.is_success() => {
            println!("{}", String::from_utf8_lossy(&body).trim_end());
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("enforcer: {status}: {}", message(&body));
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
                "{}: valid ({} mode, {})",
                dir.display(),
                app.settings.mode.as_str(),
                count(app.apis.load().all().len(), "API")
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `1 API`, `2 APIs`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn run(dir: &std::path::Path) -> ExitCode {
    let app = match load(dir) {
        Ok(app) => app,
        Err(code) => return code,
    };
    serve(Arc::new(app), |_| {})
}

/// `enforcer demo`: the sample backend and the traffic generator run on a runtime of
/// their own beside the server's.
fn demo(dir: &std::path::Path, speed: f64) -> ExitCode {
    use enforcer::demo;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("demo")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("enforcer demo: cannot start a runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let backend = match demo::shop::start(&rt) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("enforcer demo: cannot start the sample backend: {e}");
            return ExitCode::from(2);
        }
    };
    let work = match demo::scratch_dir() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("enforcer demo: cannot create a scratch directory: {e}");
            return ExitCode::from(2);
        }
    };
    let options = demo::Options {
        speed,
        ..demo::Options::default()
    };
    let config = match demo::prepare(dir, &work, backend, options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("enforcer demo: {e}");
            return ExitCode::from(1);
        }
    };
    let app = match load(&config) {
        Ok(app) => Arc::new(app),
        Err(code) => return code,
    };
    // The traffic model talks to the shipped shop API.
    if app
        .pipeline()
        .route(Some("shop.example"), "/shop/items")
        .is_err()
    {
        eprintln!(
            "enforcer demo: {} has no API at /shop (the shipped config/api/shop.json) to send traffic to",
            dir.display()
        );
        return ExitCode::from(1);
    }
    let code = serve(app, |app| {
        // Only ASE's well-known default is printed; a real secret stays in ase.conf.
        let (user, password) = (
            app.settings.management_access_key.clone(),
            if app.settings.management_secret_key.expose() == "admin" {
                "admin".to_string()
            } else {
                "management_secret_key from ase.conf".to_string()
            },
        );
        let watched = app.clone();
        rt.spawn(async move {
            while watched.addresses.get().is_none() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            if let Some(a) = watched.addresses.get() {
                // A wildcard bind is reachable on loopback; print an address a browser can open.
                let reachable = |s: std::net::SocketAddr| {
                    if s.ip().is_unspecified() {
                        std::net::SocketAddr::new([127, 0, 0, 1].into(), s.port())
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
        });
        rt.spawn(demo::traffic(app.clone(), speed));
    });
    rt.shutdown_background();
    let _ = std::fs::remove_dir_all(&work);
    code
}

/// Runs the server on a loaded config until a signal stops it; `beside` starts whatever
/// runs next to it once the store is open.
fn serve(app: Arc<App>, beside: impl FnOnce(&Arc<App>)) -> ExitCode {
    init_logging(app.settings.admin_log_level);
    for w in &app.warnings {
        if w.is_note() {
            tracing::info!("{w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    match enforcer::store::persist::attach(&app) {
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
            eprintln!("enforcer: {e}");
            return ExitCode::from(1);
        }
    }
    if app.settings.management_secret_key.expose() == "admin" && !app.credentials.changed() {
        // ASE's well-known default on a port others can reach is an open door.
        if !app.settings.management_bind_address.is_loopback() {
            let msg = format!(
                "{}: management_secret_key: ASE's default secret \"admin\" with management_bind_address={} (not loopback): set a secret first (ase.conf, or enforcer update-password on a loopback bind)",
                app.config_dir.join("ase.conf").display(),
                app.settings.management_bind_address
            );
            tracing::error!("{msg}");
            eprintln!("enforcer: invalid config: {msg}");
            return ExitCode::from(1);
        }
        tracing::warn!(
            "the management API uses ASE's default secret key \"admin\": set management_secret_key in ase.conf or run enforcer update-password"
        );
    }
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
        if let Err(e) = enforcer::cluster::thread::start(&app) {
            eprintln!("enforcer: cannot start the cluster thread: {e}");
            return ExitCode::from(2);
        }
    }
    beside(&app);
    let served = enforcer::server::run(app.clone());
    if let Some(p) = app.persister.get() {
        p.stop();
    }
    match served {
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
