//! API pattern enforcement (`api_pattern_enforcement`, inline) and decoys (`decoy_config`,
//! both modes).
//!
//! Pattern rules, checked in this order, each only when configured:
//! 1. protocol: the request's `http`, `https`, `ws` or `wss` must be in `protocol_allowed`;
//!    a plain-HTTP request that fails it is redirected when `http_redirect.https_url` is
//!    set (to that URL, plus the request's path and query when the URL has no path);
//! 2. method: in `methods_allowed`;
//! 3. content type: the media type of a request that has a body or a `Content-Type` must be
//!    in `content_type_allowed`.
//!
//! A violation is answered with the API's `error_code` (default 403), `error_def` as the
//! reason phrase and `error_message_body` as the body.
//!
//! Decoys: with `decoy_enabled` and no `decoy_subpaths`, the whole API is an out-of-context
//! decoy; with sub-paths, only those paths under the API's base path are (in-context
//! decoys). A decoy request is answered with the configured fake response and never
//! reaches a backend.

use http::{Method, StatusCode};

use crate::config::ApiDef;
use crate::config::api::PatternEnforcement;

/// The rule a request broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    Protocol,
    Method,
    ContentType,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Protocol => "protocol",
            Rule::Method => "method",
            Rule::ContentType => "contenttype",
        }
    }
}

/// What pattern enforcement says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Redirect {
        status: StatusCode,
        reason: String,
        location: String,
    },
    Violation {
        rule: Rule,
        status: StatusCode,
        reason: String,
        body: String,
    },
}

/// The facts pattern enforcement looks at.
#[derive(Debug, Clone, Copy)]
pub struct Shape<'a> {
    pub tls: bool,
    pub websocket: bool,
    pub method: &'a Method,
    pub content_type: Option<&'a str>,
    pub has_body: bool,
    pub path_and_query: &'a str,
}

/// Checks a request against the API's pattern rules.
pub fn check(p: &PatternEnforcement, s: &Shape<'_>) -> Option<Outcome> {
    if !p.protocols_allowed.is_empty() {
        let proto = match (s.websocket, s.tls) {
            (true, true) => "wss",
            (true, false) => "ws",
            (false, true) => "https",
            (false, false) => "http",
        };
        if !p.protocols_allowed.iter().any(|a| a == proto) {
            if let Some(r) = &p.http_redirect
                && !s.tls
            {
                return Some(Outcome::Redirect {
                    status: r.response_code,
                    reason: r.response_def.clone(),
                    location: redirect_target(&r.https_url, s.path_and_query),
                });
            }
            return Some(violation(p, Rule::Protocol));
        }
    }
    if !p.methods_allowed.is_empty() && !p.methods_allowed.contains(s.method) {
        return Some(violation(p, Rule::Method));
    }
    if !p.content_types_allowed.is_empty() && (s.has_body || s.content_type.is_some()) {
        let media = s
            .content_type
            .and_then(|ct| ct.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !p.content_types_allowed.contains(&media) {
            return Some(violation(p, Rule::ContentType));
        }
    }
    None
}

fn violation(p: &PatternEnforcement, rule: Rule) -> Outcome {
    let status = p.error_code.unwrap_or(StatusCode::FORBIDDEN);
    let reason = if p.error_def.is_empty() {
        status.canonical_reason().unwrap_or("Error").to_string()
    } else {
        p.error_def.clone()
    };
    let body = if p.error_message_body.is_empty() {
        format!("Error: {reason}")
    } else {
        p.error_message_body.clone()
    };
    Outcome::Violation {
        rule,
        status,
        reason,
        body,
    }
}

/// `https_url` as is when it names a path; otherwise with the request's path and query.
fn redirect_target(https_url: &str, path_and_query: &str) -> String {
    let after_scheme = https_url
        .split_once("://")
        .map_or(https_url, |(_, rest)| rest);
    match after_scheme.find('/') {
        Some(i) if after_scheme.len() > i + 1 => https_url.to_string(),
        _ => format!("{}{path_and_query}", https_url.trim_end_matches('/')),
    }
}

/// Where in the API a decoy request landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoy {
    /// The whole API is a decoy.
    OutOfContext,
    /// One of `decoy_subpaths` under a real API.
    InContext,
}

/// Whether `path` (already matched to `api`) is a decoy.
pub fn decoy(api: &ApiDef, path: &str) -> Option<Decoy> {
    if !api.decoy.enabled {
        return None;
    }
    if api.decoy.subpaths.is_empty() {
        return Some(Decoy::OutOfContext);
    }
    let mut rest = path.split('/').filter(|s| !s.is_empty());
    for base in api.url.split('/').filter(|s| !s.is_empty()) {
        if rest.next() != Some(base) {
            return None;
        }
    }
    let rest: Vec<&str> = rest.collect();
    api.decoy
        .subpaths
        .iter()
        .any(|sub| {
            let sub: Vec<&str> = sub.split('/').filter(|s| !s.is_empty()).collect();
            !sub.is_empty() && rest.len() >= sub.len() && rest[..sub.len()] == sub[..]
        })
        .then_some(Decoy::InContext)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    fn api(extra: &str) -> ApiDef {
        let text = format!(r#"{{"api_metadata":{{"url":"/shop","hostname":"*"{extra}}}}}"#);
        ApiDef::parse(
            std::path::Path::new("t.json"),
            "t",
            &text,
            Mode::Sideband,
            &mut Vec::new(),
        )
        .unwrap()
    }

    fn shape<'a>(tls: bool, method: &'a Method, ct: Option<&'a str>, body: bool) -> Shape<'a> {
        Shape {
            tls,
            websocket: false,
            method,
            content_type: ct,
            has_body: body,
            path_and_query: "/shop/items?x=1",
        }
    }

    #[test]
    fn protocol_method_and_content_type_rules() {
        let a = api(
            r#","api_pattern_enforcement":{"protocol_allowed":"https","methods_allowed":["GET","POST"],
                "content_type_allowed":"application/json","error_code":"401","error_def":"Unauthorized",
                "error_message_body":"401 Unauthorized"}"#,
        );
        let p = &a.pattern;
        let get = Method::GET;
        assert_eq!(check(p, &shape(true, &get, None, false)), None);
        let Some(Outcome::Violation {
            rule,
            status,
            reason,
            body,
        }) = check(p, &shape(false, &get, None, false))
        else {
            panic!("plain http must violate")
        };
        assert_eq!(
            (rule, status.as_u16(), reason.as_str(), body.as_str()),
            (Rule::Protocol, 401, "Unauthorized", "401 Unauthorized")
        );
        let delete = Method::DELETE;
        assert!(matches!(
            check(p, &shape(true, &delete, None, false)),
            Some(Outcome::Violation {
                rule: Rule::Method,
                ..
            })
        ));
        let post = Method::POST;
        assert_eq!(
            check(
                p,
                &shape(true, &post, Some("application/json; charset=utf-8"), true)
            ),
            None
        );
        assert!(matches!(
            check(p, &shape(true, &post, Some("text/xml"), true)),
            Some(Outcome::Violation {
                rule: Rule::ContentType,
                ..
            })
        ));
        assert!(matches!(
            check(p, &shape(true, &post, None, true)),
            Some(Outcome::Violation {
                rule: Rule::ContentType,
                ..
            })
        ));
    }

    #[test]
    fn plain_http_is_redirected_when_configured() {
        let a = api(r#","api_pattern_enforcement":{"protocol_allowed":"https",
                "http_redirect":{"response_code":"301","response_def":"Moved Permanently","https_url":"https://shop.example.com"}}"#);
        let get = Method::GET;
        assert_eq!(
            check(&a.pattern, &shape(false, &get, None, false)),
            Some(Outcome::Redirect {
                status: StatusCode::MOVED_PERMANENTLY,
                reason: "Moved Permanently".into(),
                location: "https://shop.example.com/shop/items?x=1".into(),
            })
        );
        assert_eq!(
            redirect_target("https://h/landing", "/x"),
            "https://h/landing"
        );
    }

    #[test]
    fn decoys_in_and_out_of_context() {
        let whole = api(
            r#","decoy_config":{"decoy_enabled":true,"response_code":200,"response_message":"ok"}"#,
        );
        assert_eq!(decoy(&whole, "/shop/anything"), Some(Decoy::OutOfContext));
        let sub = api(
            r#","decoy_config":{"decoy_enabled":true,"decoy_subpaths":["admin","debug/vars"]}"#,
        );
        assert_eq!(decoy(&sub, "/shop/admin"), Some(Decoy::InContext));
        assert_eq!(decoy(&sub, "/shop/admin/users"), Some(Decoy::InContext));
        assert_eq!(decoy(&sub, "/shop/debug/vars"), Some(Decoy::InContext));
        assert_eq!(decoy(&sub, "/shop/debug"), None);
        assert_eq!(decoy(&sub, "/shop/items"), None);
        assert_eq!(decoy(&sub, "/shop/administrator"), None);
        assert_eq!(decoy(&api(""), "/shop/admin"), None);
    }
}
