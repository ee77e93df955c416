//! External authorization: `/ase/auth/<gateway>`, the call nginx (`auth_request`), Caddy
//! (`forward_auth`) and Envoy (`ext_authz` HTTP service) make before they forward a
//! client's request, on the sideband listener beside `/ase/request`.
//!
//! Such a call carries no JSON: the client's request arrives as the gateway sends it, its
//! own headers copied and the original method, URI, host and address in headers named by
//! the gateway, or (Envoy) appended to the path. Each gateway is read from where it, and
//! only it, writes (a header another gateway would pass through from the client could be
//! spoofed):
//!
//! | path | method | path and query | host | client |
//! |---|---|---|---|---|
//! | `/ase/auth/nginx` | `X-Original-Method` (else the call's) | `X-Original-URI` | `X-Original-Host` (else `Host`) | `X-Real-IP` |
//! | `/ase/auth/caddy` | `X-Forwarded-Method` (else the call's) | `X-Forwarded-Uri` | `X-Forwarded-Host` (else `Host`) | `X-Real-IP`, else the last `X-Forwarded-For` address (the one Caddy added) |
//! | `/ase/auth/envoy/<path>` | the call's | `/<path>` and the call's query | `Host` | `X-Real-IP` |
//!
//! The request is then described exactly as a request call's JSON describes it and goes
//! through the same code (`calls::admit`, the pipeline's `on_request`,
//! `calls::settle`): identities, lists, patterns, decoys, detection and recording are
//! `/ase/request`'s own. One addition: the API's `client_spike_threshold` applies, as
//! inline, since this answer can say 429 (a request call's cannot). No response call
//! follows, so the exchange is recorded at once, without a response status (it counts in
//! `total_requests`, not in `success`), and never waits in the correlation table.
//!
//! Answers ([`wire::reply`]): 200 with no body (allow; `X-Enforcer-Client`,
//! `X-Enforcer-Api`, and `X-Enforcer-User` when a user was identified), 403 (block), 429
//! with `Retry-After` (flow control), 400 naming the header at fault. A request outside
//! every API is allowed with both headers empty: it is not enforcer's to decide, and an
//! answer of 503 (as `/ase/request` gives) would make a fail-closed gateway refuse it.

use std::time::Instant;

use http::header::{HOST, HeaderValue};
use http::request::Parts;
use http::{HeaderMap, Uri};

use super::calls::{self, Described, Outcome};
use super::wire::{self, Reply, WireError};
use crate::app::App;
use crate::enforce::Block;
use crate::pipeline::{Decision, Exchange};

/// The gateway an external-authorization call comes from, named by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// nginx `auth_request`, with the `X-Original-*` headers its config sets.
    Nginx,
    /// Caddy `forward_auth`, with the `X-Forwarded-*` headers it sets itself.
    Caddy,
    /// Envoy `ext_authz` (HTTP service), with `path_prefix: /ase/auth/envoy`.
    Envoy,
}

const ENVOY_PREFIX: &str = "ase/auth/envoy";

impl Gateway {
    /// The gateway `path` (without its leading slashes) is for; `None` for any other path.
    /// nginx's and Caddy's may have more segments after their name (ignored).
    pub fn of(path: &str) -> Option<Gateway> {
        let rest = path.strip_prefix("ase/auth/")?;
        let (name, _) = rest.split_once('/').unwrap_or((rest, ""));
        match name {
            "nginx" => Some(Gateway::Nginx),
            "caddy" => Some(Gateway::Caddy),
            "envoy" => Some(Gateway::Envoy),
            _ => None,
        }
    }

    /// Where this gateway puts the original method, URI and host.
    fn headers(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Gateway::Nginx => Some(("x-original-method", "x-original-uri", "x-original-host")),
            Gateway::Caddy => Some(("x-forwarded-method", "x-forwarded-uri", "x-forwarded-host")),
            Gateway::Envoy => None,
        }
    }
}

/// Decides one external-authorization call from its head. Never fails: every outcome is
/// an answer.
pub fn decide(app: &App, gateway: Gateway, call: Parts) -> Reply {
    let started = Instant::now();
    let described = match describe(app, gateway, call) {
        Ok(d) => d,
        Err(e) => return Reply::BadRequest(e),
    };
    let (ex, headers) = match calls::admit(app, described) {
        Ok(pair) => pair,
        Err(Reply::UnknownApi { .. }) => {
            return Reply::Authorized {
                api: String::new(),
                client: String::new(),
                user: None,
            };
        }
        Err(other) => return other,
    };
    let mut ex = ex;
    let mut decision = app.pipeline().on_request(&mut ex, &headers);
    if matches!(decision, Decision::Allow) {
        decision = client_spike(app, &mut ex);
    }
    match calls::settle(app, ex, decision, started, None) {
        Outcome::Allowed {
            api,
            client,
            username,
        } => Reply::Authorized {
            api,
            client: client.to_string(),
            user: username,
        },
        Outcome::Blocked {
            block: Block::RateLimited { retry_after, .. },
            ..
        } => Reply::Limited { retry_after },
        Outcome::Blocked { api, block } => {
            tracing::debug!(
                api,
                reason = block.reason(),
                "external authorization: block"
            );
            Reply::Refused
        }
        Outcome::Malformed(e) => Reply::BadRequest(e),
    }
}

/// The API's `client_spike_threshold` for an allowed request: unlike a request call (ASE's
/// sideband has no flow control), an external-authorization call can answer 429, so the
/// inline proxy's per-client limit applies. Counted on this node only, also with
/// `cluster_client_spikes`.
fn client_spike(app: &App, ex: &mut Exchange) -> Decision {
    let api = ex.api.clone();
    app.enforcer.client_spike(api.enforced(), ex)
}

/// The client request an external-authorization call describes.
fn describe(
    app: &App,
    gateway: Gateway,
    call: Parts,
) -> Result<Described<'static, HeaderMap>, WireError> {
    let mut headers = call.headers;
    let (method, uri) = match gateway.headers() {
        Some((method_header, uri_header, host_header)) => {
            let method = match text(&headers, method_header)? {
                Some(m) => calls::request_method(method_header, m)?,
                None => call.method,
            };
            let uri = text(&headers, uri_header)?
                .ok_or_else(|| WireError::new(uri_header, "is required"))?;
            let uri = calls::request_uri(uri_header, uri)?;
            if let Some(host) = headers.get(host_header).cloned() {
                headers.insert(HOST, host);
            }
            (method, uri)
        }
        None => (call.method, envoy_uri(&call.uri)?),
    };
    let client = client(app, gateway, &headers)?;
    if !headers.contains_key(HOST)
        && let Some(authority) = call.uri.authority()
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        // HTTP/2: Envoy's `:authority` is the client's host.
        headers.insert(HOST, host);
    }
    Ok(Described {
        client,
        method,
        uri,
        version: call.version,
        headers,
        username: None,
        client_id: None,
    })
}

/// Envoy's call path is `path_prefix` followed by the client's path and query.
fn envoy_uri(call: &Uri) -> Result<Uri, WireError> {
    const FIELD: &str = "(path)";
    let full = call.path_and_query().map_or("/", |p| p.as_str());
    let rest = full
        .trim_start_matches('/')
        .strip_prefix(ENVOY_PREFIX)
        .unwrap_or_default();
    let original = match rest.as_bytes().first() {
        None => "/".to_string(),
        Some(b'/') => rest.to_string(),
        Some(_) => format!("/{rest}"),
    };
    calls::request_uri(FIELD, &original)
}

/// The client's address: the header the gateway's config sets from the connection.
fn client(app: &App, gateway: Gateway, headers: &HeaderMap) -> Result<std::net::IpAddr, WireError> {
    const REAL_IP: &str = "x-real-ip";
    let given = match text(headers, REAL_IP)? {
        Some(ip) => Some(ip),
        // Caddy appends the address it took the connection from to X-Forwarded-For, and
        // passes a client's own entries only from proxies it is told to trust.
        None if gateway == Gateway::Caddy => text(headers, "x-forwarded-for")?
            .and_then(|xff| xff.rsplit(',').next())
            .map(str::trim),
        None => None,
    };
    let given = given.ok_or_else(|| WireError::new(REAL_IP, "is required"))?;
    Ok(wire::client_ip(given).unwrap_or_else(|| calls::unknown_client(app, given)))
}

/// A header's value as trimmed text; `None` when absent or empty, an error when it is not
/// text.
fn text<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, WireError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|v| Some(v.trim()).filter(|v| !v.is_empty()))
            .map_err(|_| WireError::new(name, "is not text")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_gateway() {
        for (path, gateway) in [
            ("ase/auth/nginx", Some(Gateway::Nginx)),
            ("ase/auth/nginx/anything", Some(Gateway::Nginx)),
            ("ase/auth/caddy", Some(Gateway::Caddy)),
            ("ase/auth/envoy", Some(Gateway::Envoy)),
            ("ase/auth/envoy/shop/items", Some(Gateway::Envoy)),
            ("ase/auth/envoyx/shop", None),
            ("ase/auth", None),
            ("ase/auth/", None),
            ("ase/authx/nginx", None),
        ] {
            assert_eq!(Gateway::of(path), gateway, "{path}");
        }
    }

    #[test]
    fn envoy_paths_carry_the_original_path_and_query() {
        let uri = |s: &str| envoy_uri(&s.parse().unwrap()).map(|u| u.to_string());
        assert_eq!(
            uri("/ase/auth/envoy/shop/items?q=1").unwrap(),
            "/shop/items?q=1"
        );
        assert_eq!(uri("/ase/auth/envoy").unwrap(), "/");
        assert_eq!(uri("/ase/auth/envoy?q=1").unwrap(), "/?q=1");
        assert_eq!(uri("//ase/auth/envoy/x").unwrap(), "/x");
        assert_eq!(uri("/ase/auth/envoy/a/../b").unwrap_err().field, "(path)");
    }
}
