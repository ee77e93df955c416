//! `config/api/<id>.json`: one ASE API definition (`{"api_metadata": {...}}`) per file,
//! read into a validated [`ApiDef`]. The API id is the file name without `.json`.
//!
//! Every field of ASE's API JSON parses, including those a later part of the pipeline
//! implements. ASE's documents are loosely typed (`"error_code": "401"` beside
//! `"response_code": 200`, empty strings for "not set"), so the raw structs accept numbers
//! as strings and strings as numbers; validation then turns empty strings into `None` and
//! checks the rules ASE documents (hostname not empty, `jwt` and `username_header` not both,
//! connection quotas all or none, and so on). Errors name the file and the JSON path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, StatusCode};
use serde::Deserialize;

use super::conf::Mode;
use super::error::{ConfigError, Warning};
use super::value::{Rate, StatusSet, parse_ase_period, parse_bytes, parse_rate};

/// `protocol`: plain HTTP (REST) or WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http,
    Ws,
}

/// The hostname an API answers for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// `*`: any host.
    Any,
    /// One host name, lower case, without port.
    Exact(String),
}

/// A validated API definition.
#[derive(Debug, Clone)]
pub struct ApiDef {
    /// The file name without `.json`.
    pub id: String,
    /// Where it was read from (for messages).
    pub file: PathBuf,
    pub protocol: Protocol,
    /// The base path, normalised: starts with `/`, no trailing `/` (except the root `/`).
    pub url: String,
    pub hostname: HostMatch,
    /// Name of the session cookie (a client identifier).
    pub cookie: Option<String>,
    pub cookie_idle_timeout: Option<Duration>,
    pub logout_api_enabled: bool,
    pub cookie_persistence_enabled: bool,
    pub oauth2_access_token: bool,
    pub is_token_mandatory: bool,
    pub apikey_qs: Option<String>,
    pub apikey_header: Option<HeaderName>,
    pub login_url: Option<String>,
    /// An enforcer addition: the path of the password-reset endpoint (`userActivities`).
    pub password_reset_url: Option<String>,
    /// Which answers are sign-on successes or failures on `login_url`, and password
    /// resets on `password_reset_url`.
    pub user_events: UserEventStatuses,
    pub enable_blocking: bool,
    /// `api_mapping.internal_url`: replaces `url` in the forwarded path.
    pub internal_url: Option<String>,
    pub pattern: PatternEnforcement,
    pub flow_control: FlowControl,
    pub api_memory_size: Option<u64>,
    pub health_check: Option<HealthCheck>,
    pub server_ssl: bool,
    pub servers: Vec<ServerDef>,
    pub username_header: Option<HeaderName>,
    pub jwt: Option<JwtDef>,
    pub decoy: DecoyConfig,
}

/// The answers that make a request to `login_url` a sign-on success or failure, and one
/// to `password_reset_url` a password reset (`login_success_status`,
/// `login_failure_status`, `password_reset_status`: codes and classes, `[200, "3xx"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserEventStatuses {
    pub sign_on_success: StatusSet,
    pub sign_on_failure: StatusSet,
    pub password_reset: StatusSet,
}

impl Default for UserEventStatuses {
    fn default() -> Self {
        UserEventStatuses {
            sign_on_success: StatusSet::class(2),
            sign_on_failure: StatusSet::of(&[401, 403]),
            password_reset: StatusSet::class(2),
        }
    }
}

/// `api_pattern_enforcement`.
#[derive(Debug, Clone, Default)]
pub struct PatternEnforcement {
    /// Allowed protocols (`http`, `https`, `ws`, `wss`); empty means not enforced.
    pub protocols_allowed: Vec<String>,
    pub http_redirect: Option<HttpRedirect>,
    /// Empty means not enforced.
    pub methods_allowed: Vec<Method>,
    /// Empty means not enforced.
    pub content_types_allowed: Vec<String>,
    pub error_code: Option<StatusCode>,
    pub error_def: String,
    pub error_message_body: String,
}

/// `api_pattern_enforcement.http_redirect`.
#[derive(Debug, Clone)]
pub struct HttpRedirect {
    pub response_code: StatusCode,
    pub response_def: String,
    pub https_url: String,
}

/// `flow_control`.
#[derive(Debug, Clone, Default)]
pub struct FlowControl {
    pub client_spike_threshold: Option<Rate>,
    pub server_connection_queueing: bool,
    pub bytes_in_threshold: Option<Rate>,
    pub bytes_out_threshold: Option<Rate>,
}

/// `health_check` with its interval, retry count and URL.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub interval: Duration,
    /// Consecutive failed checks before a server is taken out of rotation.
    pub retry_count: u32,
    pub url: String,
}

/// One entry of `servers`.
#[derive(Debug, Clone)]
pub struct ServerDef {
    pub host: String,
    pub port: u16,
    pub server_spike_threshold: Option<Rate>,
    /// Maximum concurrent connections; 0 means no quota.
    pub server_connection_quota: u32,
}

/// Where the JWT carrying the username sits (`jwt.location`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtLocation {
    /// `h:<header>` or `h:<header>:bearer`.
    Header { name: HeaderName, bearer: bool },
    /// `qs:<key>`.
    Query(String),
}

/// `jwt`: the claims that carry the username and the client id.
#[derive(Debug, Clone)]
pub struct JwtDef {
    pub location: JwtLocation,
    pub username_claim: String,
    pub clientid_claim: Option<String>,
}

/// `decoy_config`.
#[derive(Debug, Clone)]
pub struct DecoyConfig {
    pub enabled: bool,
    pub response_code: StatusCode,
    pub response_def: String,
    pub response_message: String,
    pub subpaths: Vec<String>,
}

impl ApiDef {
    /// Reads and validates one API file. `mode` decides which fields are required.
    pub fn load(
        file: &Path,
        mode: Mode,
        warnings: &mut Vec<Warning>,
    ) -> Result<ApiDef, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Read {
            file: file.to_path_buf(),
            source: e,
        })?;
        let id = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        ApiDef::parse(file, &id, text, mode, warnings)
    }

    /// Parses the JSON text of an API definition; `file` is only used in messages.
    pub fn parse(
        file: &Path,
        id: &str,
        text: &str,
        mode: Mode,
        warnings: &mut Vec<Warning>,
    ) -> Result<ApiDef, ConfigError> {
        validate_id(id).map_err(|reason| ConfigError::Value {
            file: file.to_path_buf(),
            line: None,
            key: "(file name)".to_string(),
            reason,
        })?;
        let mut ignored = Vec::new();
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: RawFile = {
            let mut note = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
            let de = serde_ignored::Deserializer::new(&mut de, &mut note);
            serde_path_to_error::deserialize(de).map_err(|e| ConfigError::Value {
                file: file.to_path_buf(),
                line: None,
                key: json_key(&e.path().to_string()),
                reason: e.inner().to_string(),
            })?
        };
        de.end().map_err(|e| ConfigError::Value {
            file: file.to_path_buf(),
            line: None,
            key: "(document)".to_string(),
            reason: e.to_string(),
        })?;
        for path in ignored {
            warnings.push(Warning::new(
                file,
                None,
                &path,
                "unknown field, ignored".to_string(),
            ));
        }
        let err = |key: &str, reason: String| ConfigError::Value {
            file: file.to_path_buf(),
            line: None,
            key: format!("api_metadata.{key}"),
            reason,
        };
        raw.api_metadata.validate(id, file, mode, &err)
    }

    /// The backend scheme.
    pub fn server_scheme(&self) -> &'static str {
        if self.server_ssl { "https" } else { "http" }
    }
}

/// API ids become file names and URL parameters: keep them to a safe alphabet.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "API id {id:?} must be 1-128 characters of letters, digits, '_', '-' or '.', not starting with '.'"
        ))
    }
}

fn json_key(path: &str) -> String {
    if path == "." || path.is_empty() {
        "(document)".to_string()
    } else {
        path.to_string()
    }
}

#[derive(Deserialize)]
struct RawFile {
    api_metadata: RawApi,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawApi {
    protocol: Option<String>,
    url: Option<String>,
    hostname: Option<String>,
    cookie: Loose,
    cookie_idle_timeout: Loose,
    logout_api_enabled: LooseBool,
    cookie_persistence_enabled: LooseBool,
    oauth2_access_token: LooseBool,
    is_token_mandatory: LooseBool,
    apikey_qs: Loose,
    apikey_header: Loose,
    login_url: Loose,
    password_reset_url: Loose,
    login_success_status: Option<serde_json::Value>,
    login_failure_status: Option<serde_json::Value>,
    password_reset_status: Option<serde_json::Value>,
    enable_blocking: LooseBool,
    api_mapping: RawMapping,
    api_pattern_enforcement: RawPattern,
    flow_control: RawFlow,
    api_memory_size: Loose,
    health_check: LooseBool,
    health_check_interval: Loose,
    health_retry_count: Loose,
    health_url: Loose,
    server_ssl: LooseBool,
    servers: Vec<RawServer>,
    username_header: Loose,
    jwt: Option<RawJwt>,
    decoy_config: RawDecoy,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMapping {
    internal_url: Loose,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawPattern {
    protocol_allowed: Loose,
    http_redirect: RawRedirect,
    methods_allowed: Vec<String>,
    content_type_allowed: Loose,
    error_code: Loose,
    error_def: Loose,
    error_message_body: Loose,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawRedirect {
    response_code: Loose,
    response_def: Loose,
    https_url: Loose,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawFlow {
    client_spike_threshold: Loose,
    server_connection_queueing: LooseBool,
    bytes_in_threshold: Loose,
    bytes_out_threshold: Loose,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawServer {
    host: Loose,
    port: Loose,
    server_spike_threshold: Loose,
    server_connection_quota: Loose,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawJwt {
    location: Loose,
    username: Loose,
    clientid: Loose,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDecoy {
    decoy_enabled: LooseBool,
    response_code: Loose,
    response_def: Loose,
    response_message: Loose,
    decoy_subpaths: Vec<String>,
}

/// A scalar ASE writes either as a string or as a number; `null` and `""` mean unset.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(from = "LooseRepr")]
struct Loose(Option<String>);

#[derive(Deserialize)]
#[serde(untagged)]
enum LooseRepr {
    Str(String),
    Int(i64),
    Float(f64),
    Null(()),
}

impl From<LooseRepr> for Loose {
    fn from(r: LooseRepr) -> Loose {
        let s = match r {
            LooseRepr::Str(s) => s.trim().to_string(),
            LooseRepr::Int(n) => n.to_string(),
            LooseRepr::Float(f) => f.to_string(),
            LooseRepr::Null(()) => String::new(),
        };
        Loose((!s.is_empty()).then_some(s))
    }
}

impl Loose {
    fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A boolean ASE may write as `true` or `"true"`.
#[derive(Debug, Default, Clone, Copy)]
struct LooseBool(Option<bool>);

impl<'de> Deserialize<'de> for LooseBool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Bool(bool),
            Str(String),
            Null(()),
        }
        match Repr::deserialize(d)? {
            Repr::Bool(b) => Ok(LooseBool(Some(b))),
            Repr::Null(()) => Ok(LooseBool(None)),
            Repr::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(LooseBool(Some(true))),
                "false" => Ok(LooseBool(Some(false))),
                "" => Ok(LooseBool(None)),
                _ => Err(serde::de::Error::custom(format!(
                    "expected true or false, found {s:?}"
                ))),
            },
        }
    }
}

impl LooseBool {
    fn or(self, default: bool) -> bool {
        self.0.unwrap_or(default)
    }
}

/// A status set written as a code, a class, a comma-separated string of them or an array;
/// absent, `null`, `""` or `[]` keep the default.
fn status_set(v: Option<&serde_json::Value>, default: StatusSet) -> Result<StatusSet, String> {
    use serde_json::Value;
    let mut items: Vec<String> = Vec::new();
    let mut push = |v: &Value| match v {
        Value::String(s) => {
            items.extend(
                s.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
            );
            Ok(())
        }
        Value::Number(n) => {
            items.push(n.to_string());
            Ok(())
        }
        other => Err(format!("expected status codes or classes, found {other}")),
    };
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => list.iter().try_for_each(&mut push)?,
        Some(other) => push(other)?,
    }
    if items.is_empty() {
        return Ok(default);
    }
    let mut set = StatusSet::EMPTY;
    for item in &items {
        set.parse_item(item)?;
    }
    Ok(set)
}

fn parse_status(s: &str) -> Result<StatusCode, String> {
    s.parse::<u16>()
        .ok()
        .and_then(|n| StatusCode::from_u16(n).ok())
        .filter(|c| (100..=599).contains(&c.as_u16()))
        .ok_or_else(|| format!("{s:?} is not an HTTP status code (100-599)"))
}

fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|_| format!("{s:?} is not a valid header name"))
}

/// Normalises a base path: leading `/`, no trailing `/`, no empty, `.` or `..` segments.
fn normalize_base_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} must start with '/'"));
    }
    let mut out = String::with_capacity(s.len());
    for seg in s.split('/').filter(|seg| !seg.is_empty()) {
        if seg == "." || seg == ".." {
            return Err(format!("{s:?} must not contain '.' or '..' segments"));
        }
        if seg
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'?' || b == b'#')
        {
            return Err(format!(
                "{s:?} must be a plain path (no spaces, '?' or '#')"
            ));
        }
        out.push('/');
        out.push_str(seg);
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

impl RawApi {
    fn validate(
        self,
        id: &str,
        file: &Path,
        mode: Mode,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<ApiDef, ConfigError> {
        let protocol = match self
            .protocol
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("http") | Some("https") => Protocol::Http,
            Some("ws") | Some("wss") => Protocol::Ws,
            Some(other) => {
                return Err(err(
                    "protocol",
                    format!("expected http or ws, found {other:?}"),
                ));
            }
        };
        let url = match self.url.as_deref() {
            None | Some("") => return Err(err("url", "is required (the API's base path)".into())),
            Some(u) => normalize_base_path(u).map_err(|r| err("url", r))?,
        };
        let hostname = match self.hostname.as_deref().map(str::trim) {
            None | Some("") => {
                return Err(err(
                    "hostname",
                    "is required; use \"*\" for any host".into(),
                ));
            }
            Some("*") => HostMatch::Any,
            Some(h) => {
                let h = h.to_ascii_lowercase();
                let host = strip_port(&h);
                if host.is_empty()
                    || !host.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'[' | b']')
                    })
                {
                    return Err(err("hostname", format!("{h:?} is not a host name")));
                }
                HostMatch::Exact(host.to_string())
            }
        };

        let pattern = self.api_pattern_enforcement.validate(err)?;

        let flow_control = FlowControl {
            client_spike_threshold: opt_rate(&self.flow_control.client_spike_threshold)
                .map_err(|r| err("flow_control.client_spike_threshold", r))?,
            server_connection_queueing: self.flow_control.server_connection_queueing.or(false),
            bytes_in_threshold: opt_rate(&self.flow_control.bytes_in_threshold)
                .map_err(|r| err("flow_control.bytes_in_threshold", r))?,
            bytes_out_threshold: opt_rate(&self.flow_control.bytes_out_threshold)
                .map_err(|r| err("flow_control.bytes_out_threshold", r))?,
        };

        let health_check = if self.health_check.or(false) {
            let interval = match self.health_check_interval.get() {
                None => Duration::from_secs(60),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if n > 0 => Duration::from_secs(n),
                    _ => {
                        return Err(err(
                            "health_check_interval",
                            format!("expected a number of seconds greater than 0, found {v:?}"),
                        ));
                    }
                },
            };
            let retry_count = match self.health_retry_count.get() {
                None => 4,
                Some(v) => match v.parse::<u32>() {
                    Ok(n) if n > 0 => n,
                    _ => {
                        return Err(err(
                            "health_retry_count",
                            format!("expected a whole number greater than 0, found {v:?}"),
                        ));
                    }
                },
            };
            let url = self.health_url.get().unwrap_or("/health").to_string();
            if !url.starts_with('/') {
                return Err(err("health_url", format!("{url:?} must start with '/'")));
            }
            Some(HealthCheck {
                interval,
                retry_count,
                url,
            })
        } else {
            None
        };

        let mut servers = Vec::with_capacity(self.servers.len());
        for (i, s) in self.servers.iter().enumerate() {
            let key = |k: &str| format!("servers[{i}].{k}");
            let host = match s.host.get() {
                Some(h) if !h.contains(['/', ' ']) => h.to_string(),
                Some(h) => {
                    return Err(err(
                        &key("host"),
                        format!("{h:?} is not a host name or address"),
                    ));
                }
                None => return Err(err(&key("host"), "is required".into())),
            };
            let port = match s.port.get().map(str::parse::<u16>) {
                Some(Ok(p)) if p > 0 => p,
                Some(_) => {
                    return Err(err(
                        &key("port"),
                        format!(
                            "{:?} is not a port number (1-65535)",
                            s.port.get().unwrap_or_default()
                        ),
                    ));
                }
                None => return Err(err(&key("port"), "is required".into())),
            };
            let authority = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            if http::uri::Authority::try_from(authority.as_str()).is_err() {
                return Err(err(
                    &key("host"),
                    format!("{host:?} is not a host name or address"),
                ));
            }
            let server_connection_quota = match s.server_connection_quota.get() {
                None => 0,
                Some(v) => v.parse::<u32>().map_err(|_| {
                    err(
                        &key("server_connection_quota"),
                        format!("expected a whole number, found {v:?}"),
                    )
                })?,
            };
            servers.push(ServerDef {
                host,
                port,
                server_spike_threshold: opt_rate(&s.server_spike_threshold)
                    .map_err(|r| err(&key("server_spike_threshold"), r))?,
                server_connection_quota,
            });
        }
        let with_quota = servers
            .iter()
            .filter(|s| s.server_connection_quota > 0)
            .count();
        if with_quota > 0 && with_quota < servers.len() {
            return Err(err(
                "servers",
                "server_connection_quota must be set on every server or on none".into(),
            ));
        }

        let decoy = self.decoy_config.validate(err)?;
        if mode == Mode::Inline && servers.is_empty() && !decoy.enabled {
            return Err(err(
                "servers",
                "inline mode needs at least one server to forward to".into(),
            ));
        }

        let username_header = self
            .username_header
            .get()
            .map(parse_header_name)
            .transpose()
            .map_err(|r| err("username_header", r))?;
        let jwt = match self.jwt {
            Some(j) if j.location.get().is_some() => Some(j.validate(err)?),
            _ => None,
        };
        if jwt.is_some() && username_header.is_some() {
            return Err(err(
                "username_header",
                "only one of jwt and username_header may be configured".into(),
            ));
        }

        let internal_url = match self.api_mapping.internal_url.get() {
            None => None,
            Some(u) => {
                Some(normalize_base_path(u).map_err(|r| err("api_mapping.internal_url", r))?)
            }
        };
        let path_key = |key: &str, v: &Loose| match v.get() {
            Some(l) if !l.starts_with('/') => {
                Err(err(key, format!("{l:?} must be a path starting with '/'")))
            }
            other => Ok(other.map(str::to_string)),
        };
        let login_url = path_key("login_url", &self.login_url)?;
        let password_reset_url = path_key("password_reset_url", &self.password_reset_url)?;
        let defaults = UserEventStatuses::default();
        let statuses = |key: &str, v: &Option<serde_json::Value>, default: StatusSet| {
            status_set(v.as_ref(), default).map_err(|r| err(key, r))
        };
        let user_events = UserEventStatuses {
            sign_on_success: statuses(
                "login_success_status",
                &self.login_success_status,
                defaults.sign_on_success,
            )?,
            sign_on_failure: statuses(
                "login_failure_status",
                &self.login_failure_status,
                defaults.sign_on_failure,
            )?,
            password_reset: statuses(
                "password_reset_status",
                &self.password_reset_status,
                defaults.password_reset,
            )?,
        };

        Ok(ApiDef {
            id: id.to_string(),
            file: file.to_path_buf(),
            protocol,
            url,
            hostname,
            cookie: self.cookie.get().map(str::to_string),
            cookie_idle_timeout: self
                .cookie_idle_timeout
                .get()
                .map(parse_ase_period)
                .transpose()
                .map_err(|r| err("cookie_idle_timeout", r))?,
            logout_api_enabled: self.logout_api_enabled.or(false),
            cookie_persistence_enabled: self.cookie_persistence_enabled.or(false),
            oauth2_access_token: self.oauth2_access_token.or(false),
            is_token_mandatory: self.is_token_mandatory.or(false),
            apikey_qs: self.apikey_qs.get().map(str::to_string),
            apikey_header: self
                .apikey_header
                .get()
                .map(parse_header_name)
                .transpose()
                .map_err(|r| err("apikey_header", r))?,
            login_url,
            password_reset_url,
            user_events,
            enable_blocking: self.enable_blocking.or(false),
            internal_url,
            pattern,
            flow_control,
            api_memory_size: self
                .api_memory_size
                .get()
                .map(parse_bytes)
                .transpose()
                .map_err(|r| err("api_memory_size", r))?,
            health_check,
            server_ssl: self.server_ssl.or(false),
            servers,
            username_header,
            jwt,
            decoy,
        })
    }
}

impl RawPattern {
    fn validate(
        self,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<PatternEnforcement, ConfigError> {
        let key = |k: &str| format!("api_pattern_enforcement.{k}");
        let protocols_allowed = list(self.protocol_allowed.get());
        for p in &protocols_allowed {
            if !matches!(p.as_str(), "http" | "https" | "ws" | "wss") {
                return Err(err(
                    &key("protocol_allowed"),
                    format!("{p:?} is not one of http, https, ws, wss"),
                ));
            }
        }
        let http_redirect = match self.http_redirect.https_url.get() {
            None => None,
            Some(url) => Some(HttpRedirect {
                response_code: match self.http_redirect.response_code.get() {
                    None => StatusCode::MOVED_PERMANENTLY,
                    Some(c) => {
                        parse_status(c).map_err(|r| err(&key("http_redirect.response_code"), r))?
                    }
                },
                response_def: self
                    .http_redirect
                    .response_def
                    .get()
                    .unwrap_or_default()
                    .to_string(),
                https_url: url.to_string(),
            }),
        };
        let mut methods_allowed = Vec::new();
        for (i, m) in self.methods_allowed.iter().enumerate() {
            let m = m.trim().to_ascii_uppercase();
            if m.is_empty() {
                continue;
            }
            methods_allowed.push(Method::from_bytes(m.as_bytes()).map_err(|_| {
                err(
                    &key(&format!("methods_allowed[{i}]")),
                    format!("{m:?} is not an HTTP method"),
                )
            })?);
        }
        Ok(PatternEnforcement {
            protocols_allowed,
            http_redirect,
            methods_allowed,
            content_types_allowed: list(self.content_type_allowed.get()),
            error_code: self
                .error_code
                .get()
                .map(parse_status)
                .transpose()
                .map_err(|r| err(&key("error_code"), r))?,
            error_def: self.error_def.get().unwrap_or_default().to_string(),
            error_message_body: self
                .error_message_body
                .get()
                .unwrap_or_default()
                .to_string(),
        })
    }
}

impl RawDecoy {
    fn validate(
        self,
        err: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<DecoyConfig, ConfigError> {
        let mut subpaths = Vec::new();
        for (i, p) in self.decoy_subpaths.iter().enumerate() {
            let p = p.trim();
            if p.is_empty() {
                continue;
            }
            let with_slash = if p.starts_with('/') {
                p.to_string()
            } else {
                format!("/{p}")
            };
            subpaths.push(
                normalize_base_path(&with_slash)
                    .map_err(|r| err(&format!("decoy_config.decoy_subpaths[{i}]"), r))?,
            );
        }
        Ok(DecoyConfig {
            enabled: self.decoy_enabled.or(false),
            response_code: match self.response_code.get() {
                None => StatusCode::OK,
                Some(c) => parse_status(c).map_err(|r| err("decoy_config.response_code", r))?,
            },
            response_def: self.response_def.get().unwrap_or_default().to_string(),
            response_message: self.response_message.get().unwrap_or_default().to_string(),
            subpaths,
        })
    }
}

impl RawJwt {
    fn validate(self, err: &dyn Fn(&str, String) -> ConfigError) -> Result<JwtDef, ConfigError> {
        let raw = self.location.get().unwrap_or_default();
        let location = if let Some(rest) = raw.strip_prefix("h:") {
            let (name, bearer) = match rest.rsplit_once(':') {
                Some((name, scheme)) if scheme.eq_ignore_ascii_case("bearer") => (name, true),
                Some(_) => {
                    return Err(err(
                        "jwt.location",
                        format!("{raw:?}: expected h:<header> or h:<header>:bearer"),
                    ));
                }
                None => (rest, false),
            };
            JwtLocation::Header {
                name: parse_header_name(name).map_err(|r| err("jwt.location", r))?,
                bearer,
            }
        } else if let Some(key) = raw.strip_prefix("qs:").filter(|k| !k.is_empty()) {
            JwtLocation::Query(key.to_string())
        } else {
            return Err(err(
                "jwt.location",
                format!("{raw:?}: expected h:<header>[:bearer] or qs:<key>"),
            ));
        };
        let username_claim = self
            .username
            .get()
            .ok_or_else(|| {
                err(
                    "jwt.username",
                    "is required when jwt.location is set".into(),
                )
            })?
            .to_string();
        let clientid_claim = self.clientid.get().map(str::to_string);
        if clientid_claim.as_deref() == Some(username_claim.as_str()) {
            return Err(err(
                "jwt.clientid",
                "must name a different claim than jwt.username".into(),
            ));
        }
        Ok(JwtDef {
            location,
            username_claim,
            clientid_claim,
        })
    }
}

fn opt_rate(v: &Loose) -> Result<Option<Rate>, String> {
    v.get().map_or(Ok(None), parse_rate)
}

/// Splits a comma- or space-separated list, lower-cased.
fn list(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default()
        .split([',', ' '])
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `host:port` → `host`; leaves IPv6 literals (`[::1]`) and bare names alone.
pub fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Whether a request path is a configured path (`login_url`, `password_reset_url`):
/// equal but for a trailing `/`. Login-attack detection uses the same rule.
pub fn same_path(path: &str, configured: &str) -> bool {
    path.trim_end_matches('/') == configured.trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, mode: Mode) -> Result<(ApiDef, Vec<Warning>), String> {
        let mut w = Vec::new();
        ApiDef::parse(Path::new("api/shop.json"), "shop", text, mode, &mut w)
            .map(|d| (d, w))
            .map_err(|e| e.to_string())
    }

    /// ASE's full inline example (reference §2.1) parses with every field.
    #[test]
    fn full_ase_example_parses() {
        let text = r#"{ "api_metadata": {
            "protocol": "http", "url": "/your_rest_api/", "hostname": "*", "cookie": "",
            "cookie_idle_timeout": "200m", "logout_api_enabled": false,
            "cookie_persistence_enabled": false, "oauth2_access_token": false,
            "is_token_mandatory": false, "apikey_qs": "", "apikey_header": "", "login_url": "",
            "enable_blocking": true, "api_mapping": { "internal_url": "" },
            "api_pattern_enforcement": { "protocol_allowed": "", "http_redirect":
                { "response_code": "", "response_def": "", "https_url": "" },
              "methods_allowed": [], "content_type_allowed": "", "error_code": "401",
              "error_def": "Unauthorized", "error_message_body": "401 Unauthorized" },
            "flow_control": { "client_spike_threshold": "0/second", "server_connection_queueing": false },
            "api_memory_size": "128mb", "health_check": true, "health_check_interval": 60,
            "health_retry_count": 4, "health_url": "/health", "server_ssl": false,
            "servers": [
              { "host": "127.0.0.1", "port": 8080, "server_spike_threshold": "0/second", "server_connection_quota": 0 },
              { "host": "127.0.0.1", "port": "8081", "server_spike_threshold": "10/minute", "server_connection_quota": 0 }
            ],
            "username_header": "",
            "jwt": { "location": "h:authorization:bearer", "username": "username", "clientid": "client_id" },
            "decoy_config": { "decoy_enabled": false, "response_code": 200, "response_def": "",
              "response_message": "", "decoy_subpaths": [] } } }"#;
        let (d, w) = parse(text, Mode::Inline).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(d.url, "/your_rest_api");
        assert_eq!(d.hostname, HostMatch::Any);
        assert_eq!(d.cookie, None);
        assert_eq!(d.cookie_idle_timeout, Some(Duration::from_secs(12_000)));
        assert!(d.enable_blocking);
        assert_eq!(d.pattern.error_code, Some(StatusCode::UNAUTHORIZED));
        assert_eq!(d.servers.len(), 2);
        assert_eq!(d.servers[1].port, 8081);
        assert_eq!(
            d.servers[1].server_spike_threshold.map(|r| r.count),
            Some(10)
        );
        assert_eq!(d.health_check.as_ref().map(|h| h.retry_count), Some(4));
        assert_eq!(d.api_memory_size, Some(128 << 20));
        let jwt = d.jwt.unwrap();
        assert_eq!(
            jwt.location,
            JwtLocation::Header {
                name: HeaderName::from_static("authorization"),
                bearer: true
            }
        );
        assert_eq!(jwt.clientid_claim.as_deref(), Some("client_id"));
    }

    /// The minimal sideband `root` API from ASE's Docker image parses in sideband mode.
    #[test]
    fn minimal_sideband_root_parses() {
        let text = r#"{ "api_metadata": { "protocol": "http", "url": "/", "hostname": "*", "cookie": "",
            "oauth2_access_token": true, "apikey_qs": "", "apikey_header": "", "login_url": "",
            "enable_blocking": false, "api_memory_size": "1mb",
            "decoy_config": { "decoy_enabled": false, "response_code": 200, "response_def": "",
            "response_message": "", "decoy_subpaths": [] } } }"#;
        let (d, _) = parse(text, Mode::Sideband).unwrap();
        assert_eq!(d.url, "/");
        assert!(d.oauth2_access_token);
        let e = parse(text, Mode::Inline).unwrap_err();
        assert_eq!(
            e,
            "api/shop.json: api_metadata.servers: inline mode needs at least one server to forward to"
        );
    }

    #[test]
    fn errors_name_the_json_path() {
        let e = parse(
            r#"{"api_metadata":{"url":"/a","hostname":"*","servers":[{"host":"h","port":"eighty"}]}}"#,
            Mode::Inline,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "api/shop.json: api_metadata.servers[0].port: \"eighty\" is not a port number (1-65535)"
        );
        let e = parse(
            r#"{"api_metadata":{"url":"/a","hostname":"*","health_check":"yes"}}"#,
            Mode::Sideband,
        )
        .unwrap_err();
        assert!(
            e.starts_with("api/shop.json: api_metadata.health_check: "),
            "{e}"
        );
        let e = parse(
            r#"{"api_metadata":{"url":"/a","hostname":""}}"#,
            Mode::Sideband,
        )
        .unwrap_err();
        assert!(e.contains("api_metadata.hostname: is required"), "{e}");
        let e = parse("{\"api_metadata\": ", Mode::Sideband).unwrap_err();
        assert!(e.contains("EOF"), "{e}");
    }

    #[test]
    fn unknown_fields_warn() {
        let (_, w) = parse(
            r#"{"api_metadata":{"url":"/a","hostname":"*","colour":"red"}}"#,
            Mode::Sideband,
        )
        .unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].to_string(),
            "api/shop.json: api_metadata.colour: unknown field, ignored"
        );
    }

    #[test]
    fn jwt_and_username_header_exclude_each_other() {
        let e = parse(
            r#"{"api_metadata":{"url":"/a","hostname":"*","username_header":"x-user",
               "jwt":{"location":"qs:token","username":"sub"}}}"#,
            Mode::Sideband,
        )
        .unwrap_err();
        assert!(e.contains("only one of jwt and username_header"), "{e}");
    }

    #[test]
    fn quotas_all_or_none() {
        let e = parse(
            r#"{"api_metadata":{"url":"/a","hostname":"*","servers":[
               {"host":"a","port":1,"server_connection_quota":5},{"host":"b","port":2}]}}"#,
            Mode::Inline,
        )
        .unwrap_err();
        assert!(e.contains("every server or on none"), "{e}");
    }

    #[test]
    fn base_paths_normalise() {
        assert_eq!(normalize_base_path("/a//b/"), Ok("/a/b".to_string()));
        assert_eq!(normalize_base_path("/"), Ok("/".to_string()));
        assert!(normalize_base_path("a").is_err());
        assert!(normalize_base_path("/a/../b").is_err());
    }

    #[test]
    fn ports_strip_from_hosts() {
        assert_eq!(strip_port("example.com:8080"), "example.com");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("[::1]:80"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }
}
