//! Deny and allow list endpoints: `/v4/ase/blacklist` and `/v4/ase/whitelist`.
//!
//! The body of an add or a remove, and the view, use the same shape (modelled on ABS's
//! attack list, with names for cookies and API keys):
//!
//! ```json
//! { "ips": ["1.2.3.4", "10.0.0.0/8"],
//!   "cookies": [{"name": "JSESSIONID", "value": "abc"}],
//!   "oauth_tokens": ["eyJ..."],
//!   "api_keys": [{"name": "X-API-KEY", "value": "k1"}],
//!   "usernames": ["mallory"],
//!   "ttl": "1h" }
//! ```
//!
//! `ttl` (optional, on an add) makes the entries expire. In the view every entry also
//! carries `source` (manual, decoy, pattern, detection), `added`, `expires` and `reason`.

use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use ipnet::IpNet;

use super::wire::{Added, ListChange, ListEntry, ListView, Removed};
use super::{Body, Query, bad_parameter, body, durably, error, json, not_allowed};
use crate::app::App;
use crate::config::value::parse_duration;
use crate::enforce::lists::{Entry, Identifier, ListError, ListKind, Source};
use crate::metrics::unix_secs;

pub(super) async fn handle(
    app: Arc<App>,
    kind: ListKind,
    method: &Method,
    query: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    let source = match query.get("source").map(parse_source).transpose() {
        Ok(s) => s,
        Err(bad) => return bad.response(),
    };
    let lists = &app.enforcer.lists;
    match *method {
        Method::GET => json(StatusCode::OK, &view(&app, kind, source)),
        Method::DELETE if query.get("all") == Some("true") => {
            let removed = lists.clear(kind, source);
            durably(
                &app,
                json(
                    StatusCode::OK,
                    &Removed {
                        status: "success".into(),
                        removed,
                    },
                ),
            )
            .await
        }
        Method::POST | Method::DELETE => {
            let bytes = match body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let change: ListChange = match serde_json::from_slice(&bytes) {
                Ok(c) => c,
                Err(e) => return bad_parameter("(body)", format!("not a list change: {e}")),
            };
            let ids = match identifiers(&change) {
                Ok(ids) => ids,
                Err(bad) => return bad.response(),
            };
            if *method == Method::DELETE {
                let removed = lists.remove(kind, &ids);
                let done = json(
                    StatusCode::OK,
                    &Removed {
                        status: "success".into(),
                        removed,
                    },
                );
                return durably(&app, done).await;
            }
            let now = unix_secs(std::time::SystemTime::now());
            let expires = match change.ttl.as_deref().map(parse_duration).transpose() {
                Ok(ttl) => {
                    ttl.map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
                }
                Err(e) => return bad_parameter("ttl", format!("ttl: {e}")),
            };
            let items = ids
                .into_iter()
                .map(|id| {
                    let entry = Entry {
                        source: Source::Manual,
                        added: now,
                        expires,
                        reason: None,
                    };
                    (id, entry)
                })
                .collect();
            match lists.add(kind, items) {
                Ok(added) => {
                    let done = json(
                        StatusCode::OK,
                        &Added {
                            status: "success".into(),
                            added,
                        },
                    );
                    durably(&app, done).await
                }
                Err(e @ ListError::Full(..)) => {
                    error(StatusCode::CONFLICT, "list_full", e.to_string())
                }
            }
        }
        _ => not_allowed("GET, POST, DELETE"),
    }
}

/// A parameter or body value that is not acceptable.
struct BadValue {
    parameter: String,
    message: String,
}

impl BadValue {
    fn new(parameter: &str, message: String) -> BadValue {
        BadValue {
            parameter: parameter.to_string(),
            message,
        }
    }

    fn response(self) -> Response<Body> {
        bad_parameter(&self.parameter, self.message)
    }
}

fn parse_source(s: &str) -> Result<Source, BadValue> {
    Source::ALL
        .into_iter()
        .find(|x| x.as_str() == s)
        .ok_or_else(|| {
            BadValue::new(
                "source",
                "source: manual, decoy, pattern or detection".into(),
            )
        })
}

/// The identifiers of a change, each validated; errors name the offending value.
fn identifiers(c: &ListChange) -> Result<Vec<Identifier>, BadValue> {
    let mut ids = Vec::new();
    for (i, ip) in c.ips.iter().enumerate() {
        let ip = ip.trim();
        let parsed = if ip.contains('/') {
            ip.parse::<IpNet>().map(|n| Identifier::Net(n.trunc())).ok()
        } else {
            ip.parse::<IpAddr>().map(Identifier::Ip).ok()
        };
        ids.push(parsed.ok_or_else(|| {
            BadValue::new(
                &format!("ips[{i}]"),
                format!("{ip:?} is not an IP address or CIDR range"),
            )
        })?);
    }
    let text = |field: &str, i: usize, v: &str| -> Result<String, BadValue> {
        let v = v.trim();
        if v.is_empty() {
            Err(BadValue::new(
                &format!("{field}[{i}]"),
                format!("{field}[{i}]: must not be empty"),
            ))
        } else {
            Ok(v.to_string())
        }
    };
    for (i, nv) in c.cookies.iter().enumerate() {
        ids.push(Identifier::Cookie {
            name: text("cookies", i, &nv.name)?,
            value: text("cookies", i, &nv.value)?,
        });
    }
    for (i, t) in c.oauth_tokens.iter().enumerate() {
        ids.push(Identifier::Token(text("oauth_tokens", i, t)?));
    }
    for (i, nv) in c.api_keys.iter().enumerate() {
        ids.push(Identifier::ApiKey {
            // Header names are case-insensitive: keys are matched by the lower-case name.
            name: text("api_keys", i, &nv.name)?.to_ascii_lowercase(),
            value: text("api_keys", i, &nv.value)?,
        });
    }
    for (i, u) in c.usernames.iter().enumerate() {
        ids.push(Identifier::Username(text("usernames", i, u)?));
    }
    Ok(ids)
}

/// The list as JSON, optionally only one source's entries.
fn view(app: &App, kind: ListKind, source: Option<Source>) -> ListView {
    let set = app.enforcer.lists.load(kind);
    let mut out = ListView::default();
    let time = |t: i64| jiff::Timestamp::from_second(t).map(|t| t.to_string()).ok();
    for (id, e) in set.entries() {
        if source.is_some_and(|s| s != e.source) {
            continue;
        }
        let (list, name, value) = match id {
            Identifier::Ip(ip) => (&mut out.ips, None, ip.to_string()),
            Identifier::Net(n) => (&mut out.ips, None, n.to_string()),
            Identifier::Cookie { name, value } => {
                (&mut out.cookies, Some(name.clone()), value.clone())
            }
            Identifier::Token(t) => (&mut out.oauth_tokens, None, t.clone()),
            Identifier::ApiKey { name, value } => {
                (&mut out.api_keys, Some(name.clone()), value.clone())
            }
            Identifier::Username(u) => (&mut out.usernames, None, u.clone()),
        };
        list.push(ListEntry {
            source: e.source,
            added: time(e.added),
            expires: e.expires.and_then(time),
            reason: e.reason.as_deref().map(str::to_string),
            value,
            name,
        });
    }
    out
}
