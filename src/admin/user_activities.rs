//! `GET /v1/environments/{environmentId}/userActivities[?filter=...]`: PingOne's User
//! Activities API on the management port.
//!
//! Where it sits: `admin::handle` sends every `/v1/environments/...` path here before the
//! management credentials are checked, because this API has its own: `Authorization:
//! Bearer <token>` with one of `user_activities_tokens`. The filter is parsed by `scim`,
//! compiled and built by `reports::user_activities`.
//!
//! Checks, in order: the token (401), the environment id and path (404), the method
//! (405), the parameters (`filter`, `sampleSize`, `limit`, `cursor`; 400). Errors use PingOne's shape: `{"id", "code", "message",
//! "details": [{"code", "target", "message", "innerError": {...}}]}`.

use std::sync::Arc;

use http::header::{ALLOW, AUTHORIZATION, HOST, HeaderValue, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use subtle::ConstantTimeEq;

use super::{Body, json};
use crate::app::App;
use crate::cluster::remote;
use crate::config::value::Secret;
use crate::reports::user_activities::{self, Href, Links, MAX_BUCKETS, QueryError, Sample};
use crate::scim;

/// The path prefix this module answers under.
pub const PREFIX: &str = "/v1/environments/";

/// What a query value escapes: all but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The longest filter accepted (longer ones answer 400 without being parsed).
const MAX_FILTER: usize = 4_096;

pub(super) async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let settings = &app.settings;
    // The dashboard's logged-in browser may read the report too.
    let browser = super::dashboard::api_user(&app, req.headers()).is_some();
    if !browser && let Err(why) = bearer(&settings.user_activities_tokens, req.headers()) {
        let mut resp = failure(
            StatusCode::UNAUTHORIZED,
            "ACCESS_FAILED",
            "The request could not be completed. You do not have access to this resource.",
            vec![Detail::plain("INVALID_TOKEN", "Authorization", why)],
        );
        resp.headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    let path = req.uri().path();
    let rest = path.strip_prefix(PREFIX).unwrap_or_default();
    let (env, resource) = rest.split_once('/').unwrap_or((rest, ""));
    if env != settings.environment_id || resource.trim_end_matches('/') != "userActivities" {
        return failure(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource was not found.",
            vec![Detail::plain(
                "NOT_FOUND",
                "path",
                format!(
                    "no resource {path}: this node serves /v1/environments/{}/userActivities",
                    settings.environment_id
                ),
            )],
        );
    }
    if req.method() != Method::GET {
        let mut resp = failure(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "The request could not be completed. The method is not allowed for this resource.",
            vec![Detail::plain(
                "METHOD_NOT_ALLOWED",
                "method",
                format!("{} is not allowed: use GET", req.method()),
            )],
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return resp;
    }

    let params: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    // Each parameter at most once; the error names the one repeated.
    let one = |name: &'static str| -> Result<Option<&str>, &'static str> {
        let mut values = params
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        match (values.next(), values.next()) {
            (Some(v), None) if !v.trim().is_empty() => Ok(Some(v)),
            (_, None) => Ok(None),
            _ => Err(name),
        }
    };
    let (text, sample, limit, cursor) = match (
        one("filter"),
        one("sampleSize"),
        one("limit"),
        one("cursor"),
    ) {
        (Ok(f), Ok(s), Ok(l), Ok(c)) => (f.map(str::to_string), s, l, c),
        (Err(name), ..) | (_, Err(name), ..) | (_, _, Err(name), _) | (.., Err(name)) => {
            let code = if name == "filter" {
                "INVALID_FILTER"
            } else {
                "INVALID_VALUE"
            };
            let why = if name == "filter" {
                "give one filter parameter (combine conditions with and)".to_string()
            } else {
                format!("give one {name} parameter")
            };
            return invalid(Detail::plain(code, name, why));
        }
    };
    if text.as_ref().is_some_and(|t| t.len() > MAX_FILTER) {
        return invalid(Detail::plain(
            "INVALID_FILTER",
            "filter",
            format!("the filter is longer than {MAX_FILTER} bytes"),
        ));
    }
    let sample = match sample.map(|s| Sample::parse(s).ok_or(s)).transpose() {
        Ok(s) => s,
        Err(bad) => {
            return invalid(Detail::plain(
                "INVALID_VALUE",
                "sampleSize",
                format!("sampleSize {bad:?} is not one of HOUR, DAY or WEEK"),
            ));
        }
    };
    let max = MAX_BUCKETS as usize;
    let asked = match limit
        .map(|l| l.parse::<usize>().ok().filter(|n| *n > 0).ok_or(l))
        .transpose()
    {
        Ok(l) => l.map(|l| l.min(max)),
        Err(bad) => {
            return invalid(Detail::plain(
                "INVALID_VALUE",
                "limit",
                format!("limit {bad:?} is not a positive whole number"),
            ));
        }
    };
    let cursor = match cursor.map(|c| c.parse::<i64>().map_err(|_| c)).transpose() {
        Ok(c) => c,
        Err(bad) => {
            return invalid(Detail::plain(
                "INVALID_VALUE",
                "cursor",
                format!("cursor {bad:?} is not one this API gave (use _links.next)"),
            ));
        }
    };
    let parsed = match text.as_deref().map(scim::parse::parse).transpose() {
        Ok(f) => f,
        Err(e) => {
            return invalid(Detail {
                code: "INVALID_FILTER",
                target: "filter",
                message: format!("the filter does not parse {e}"),
                inner_error: Some(Inner {
                    position: Some(e.offset),
                    expected: Some(e.expected.clone()),
                    fragment: text
                        .as_deref()
                        .and_then(|t| t.get(e.offset..))
                        .filter(|rest| !rest.is_empty())
                        .map(|rest| rest.chars().take(40).collect()),
                }),
            });
        }
    };
    let base = self_base(&app, req.headers(), path);
    let limit = asked.unwrap_or(max);
    let href = move |cursor: Option<i64>| Href {
        href: with_query(&base, text.as_deref(), sample, asked, cursor),
    };
    let env = settings.environment_id.clone();
    // Evaluating the filter on up to 5,000 buckets and folding up to 200 days of hours is
    // CPU work: keep it off the connection threads.
    let built = tokio::task::spawn_blocking(move || {
        let now = jiff::Timestamp::now().as_second();
        let query = user_activities::compile(parsed.as_ref(), sample, now)?;
        let page = query.page(cursor, limit);
        let links = Links {
            this: href(cursor),
            next: page.next.map(|c| href(Some(c))),
            prev: page.prev.map(|c| href(Some(c))),
        };
        // In a cluster, this node's hours and every other node's, summed.
        let (from, to) = page.hours(query.sample);
        let users = remote::users(app.cluster.as_ref(), &app.metrics.users, from, to);
        Ok(user_activities::build(&users, &query, &page, &env, links))
    })
    .await;
    match built {
        Ok(Ok(report)) => json(StatusCode::OK, &report),
        Ok(Err(QueryError { message, part })) => invalid(Detail {
            code: "INVALID_FILTER",
            target: "filter",
            message,
            inner_error: part.map(|p| Inner {
                position: None,
                expected: None,
                fragment: Some(p),
            }),
        }),
        Err(e) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNEXPECTED_ERROR",
            "An unexpected error occurred.",
            vec![Detail::plain("UNEXPECTED_ERROR", "report", e.to_string())],
        ),
    }
}

/// Checks `Authorization: Bearer <token>` against every configured token, in constant
/// time per token and without stopping at the first match.
fn bearer(tokens: &[Secret], headers: &http::HeaderMap) -> Result<(), String> {
    if tokens.is_empty() {
        return Err("no user_activities_tokens are configured on this node".into());
    }
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err("send Authorization: Bearer <token>".into());
    };
    let presented = value.as_bytes();
    let token = match presented.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => presented[7..].trim_ascii(),
        _ => return Err("the Authorization header is not a Bearer token".into()),
    };
    let mut ok = subtle::Choice::from(0);
    for t in tokens {
        ok |= t.expose().as_bytes().ct_eq(token);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err("the token is not valid for this environment".into())
    }
}

/// This request's URL, without its query, as the client addressed it (`Host`).
fn self_base(app: &App, headers: &http::HeaderMap, path: &str) -> String {
    let scheme = if app.settings.management_tls {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| http::uri::Authority::try_from(*h).is_ok())
        .map_or_else(
            || {
                format!(
                    "{}:{}",
                    app.settings.management_bind_address, app.settings.management_port
                )
            },
            str::to_string,
        );
    format!("{scheme}://{host}{path}")
}

/// `base` with the parameters that shape the answer, percent-encoded: the `_links` hrefs.
fn with_query(
    base: &str,
    filter: Option<&str>,
    sample: Option<Sample>,
    limit: Option<usize>,
    cursor: Option<i64>,
) -> String {
    let mut parts = Vec::new();
    if let Some(f) = filter {
        parts.push(format!(
            "filter={}",
            percent_encoding::utf8_percent_encode(f, COMPONENT)
        ));
    }
    if let Some(s) = sample {
        parts.push(format!("sampleSize={}", s.name()));
    }
    if let Some(l) = limit {
        parts.push(format!("limit={l}"));
    }
    if let Some(c) = cursor {
        parts.push(format!("cursor={c}"));
    }
    if parts.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", parts.join("&"))
    }
}

#[derive(Serialize)]
struct Failure {
    id: String,
    code: &'static str,
    message: &'static str,
    details: Vec<Detail>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail {
    code: &'static str,
    target: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    inner_error: Option<Inner>,
}

impl Detail {
    fn plain(code: &'static str, target: &'static str, message: String) -> Detail {
        Detail {
            code,
            target,
            message,
            inner_error: None,
        }
    }
}

/// The part of the filter at fault: where parsing stopped and what was expected there,
/// or the term the compile step could not use.
#[derive(Serialize)]
struct Inner {
    #[serde(skip_serializing_if = "Option::is_none")]
    position: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fragment: Option<String>,
}

fn invalid(detail: Detail) -> Response<Body> {
    failure(
        StatusCode::BAD_REQUEST,
        "INVALID_DATA",
        "The request could not be completed. One or more validation errors were in the request.",
        vec![detail],
    )
}

fn failure(
    status: StatusCode,
    code: &'static str,
    message: &'static str,
    details: Vec<Detail>,
) -> Response<Body> {
    json(
        status,
        &Failure {
            id: error_id(),
            code,
            message,
            details,
        },
    )
}

/// A random (version 4) UUID naming one error answer, as PingOne gives.
fn error_id() -> String {
    let mut b = [0u8; 16];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        // No randomness: the id is only a label for the answer; a fixed one is still valid.
        return "00000000-0000-4000-8000-000000000000".into();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked() {
        let tokens = vec![
            Secret::new("aaaaaaaaaaaaaaaa1"),
            Secret::new("bbbbbbbbbbbbbbbb2"),
        ];
        let mut h = http::HeaderMap::new();
        assert!(bearer(&tokens, &h).is_err());
        h.insert(AUTHORIZATION, "Bearer bbbbbbbbbbbbbbbb2".parse().unwrap());
        assert!(bearer(&tokens, &h).is_ok());
        h.insert(AUTHORIZATION, "bearer  aaaaaaaaaaaaaaaa1 ".parse().unwrap());
        assert!(bearer(&tokens, &h).is_ok());
        h.insert(AUTHORIZATION, "Bearer aaaaaaaaaaaaaaaa".parse().unwrap());
        assert!(bearer(&tokens, &h).is_err());
        h.insert(AUTHORIZATION, "Basic aaaaaaaaaaaaaaaa1".parse().unwrap());
        assert!(bearer(&tokens, &h).is_err());
        h.insert(AUTHORIZATION, "Bearer bbbbbbbbbbbbbbbb2".parse().unwrap());
        assert!(bearer(&[], &h).is_err());
    }

    #[test]
    fn error_ids_are_v4_uuids() {
        let id = error_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, error_id());
    }
}
