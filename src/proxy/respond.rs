//! The one place on the inline path that turns enforcer's own answers into HTTP responses.
//!
//! Statuses and bodies follow ASE's error table (reference §5.1) where ASE defines one;
//! the proxy failures ASE leaves open use the conventional gateway codes. Bodies are plain
//! text, `Error: <what>`, so a client sees the same words ASE would print.
//!
//! | answer | status | body |
//! |---|---|---|
//! | unknown API | 503 | `Error: Unknown API` |
//! | unknown hostname | 503 | `Error: Unknown Hostname` |
//! | malformed request | 400 | `Error: Malformed Request` |
//! | backend refused, reset or unreachable | 502 | `Error: Bad Gateway` |
//! | backend too slow | 504 | `Error: Gateway Timeout` |
//! | every server unhealthy | 503 | `Error: Service Unavailable` |
//! | a transfer coding other than `chunked` | 501 | `Error: Not Implemented` |
//! | every backend connection allowed is in use (`upstream_max_connections`), after `connection_queue_timeout` | 503, `Retry-After: 1` | `Error: Service Unavailable` |
//! | the client has `client_max_in_flight` requests in flight | 429, `Retry-After: 1` | `Error: Too Many Requests` |
//! | `GET /ase` with `enable_ase_health` | 200 | `{"status":"up","mode":"inline"}` |
//!
//! Enforcement answers ([`blocked`]):
//!
//! | block | status | body |
//! |---|---|---|
//! | deny-listed identifier, decoy follower, missing mandatory token | 403 (reason `Unauthorized`, as ASE) | `Error: Unauthorized` |
//! | API pattern violation | the API's `error_code` (default 403), reason `error_def` | `error_message_body` |
//! | protocol redirect | `http_redirect.response_code` (default 301), `Location` | empty |
//! | decoy | `decoy_config.response_code`, reason `response_def` | `response_message` |
//! | flow control | 429, `Retry-After` (seconds) | `Error: Too Many Requests` |
//! | an identifier given twice (two bearer tokens, the session cookie twice...) | 400 | `Error: Malformed Request` |

use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER};
use http::{Response, StatusCode, Version};
use hyper::ext::ReasonPhrase;

use super::body::ProxyBody;
use crate::enforce::Block;

/// An answer enforcer gives without (or instead of) a backend response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    UnknownApi,
    UnknownHostname,
    MalformedRequest,
    BadGateway,
    GatewayTimeout,
    NoHealthyServer,
    NotImplemented,
    /// Every backend connection enforcer may open is in use (`upstream_max_connections`).
    UpstreamBusy,
    /// The client has `client_max_in_flight` requests in flight already.
    ClientBusy,
    Health,
}

impl Answer {
    pub fn status(self) -> StatusCode {
        match self {
            Answer::UnknownApi | Answer::UnknownHostname | Answer::NoHealthyServer => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Answer::MalformedRequest => StatusCode::BAD_REQUEST,
            Answer::BadGateway => StatusCode::BAD_GATEWAY,
            Answer::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Answer::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Answer::UpstreamBusy => StatusCode::SERVICE_UNAVAILABLE,
            Answer::ClientBusy => StatusCode::TOO_MANY_REQUESTS,
            Answer::Health => StatusCode::OK,
        }
    }

    fn body(self) -> &'static str {
        match self {
            Answer::UnknownApi => "Error: Unknown API",
            Answer::UnknownHostname => "Error: Unknown Hostname",
            Answer::MalformedRequest => "Error: Malformed Request",
            Answer::BadGateway => "Error: Bad Gateway",
            Answer::GatewayTimeout => "Error: Gateway Timeout",
            Answer::NoHealthyServer => "Error: Service Unavailable",
            Answer::NotImplemented => "Error: Not Implemented",
            Answer::UpstreamBusy => "Error: Service Unavailable",
            Answer::ClientBusy => "Error: Too Many Requests",
            Answer::Health => r#"{"status":"up","mode":"inline"}"#,
        }
    }
}

/// Builds the response for `answer` to a request of `version`. Never fails.
pub fn answer(answer: Answer, version: Version) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::local(answer.body()));
    *resp.status_mut() = answer.status();
    let content_type = if answer == Answer::Health {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if matches!(answer, Answer::UpstreamBusy | Answer::ClientBusy) {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    // After a malformed request the connection's framing cannot be trusted. HTTP/2 has no
    // `Connection` header; its streams are independent anyway.
    if matches!(answer, Answer::MalformedRequest | Answer::NotImplemented)
        && version < Version::HTTP_2
    {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Builds the answer for an enforcement block. Never fails.
pub fn blocked(block: &Block, version: Version) -> Response<ProxyBody> {
    let (status, reason, body): (StatusCode, &str, String) = match block {
        Block::Denied { .. } | Block::DecoyFollower { .. } | Block::MissingToken => (
            StatusCode::FORBIDDEN,
            "Unauthorized",
            "Error: Unauthorized".into(),
        ),
        Block::Pattern {
            status,
            reason,
            body,
            ..
        } => (*status, reason, body.clone()),
        Block::Decoy {
            status,
            reason,
            body,
        } => (*status, reason, body.clone()),
        Block::Redirect { status, reason, .. } => (*status, reason, String::new()),
        Block::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "",
            "Error: Too Many Requests".into(),
        ),
        Block::Ambiguous { .. } => (
            StatusCode::BAD_REQUEST,
            "",
            "Error: Malformed Request".into(),
        ),
    };
    let mut resp = Response::new(ProxyBody::local(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    match block {
        Block::Redirect { location, .. } => {
            if let Ok(v) = HeaderValue::from_str(location) {
                resp.headers_mut().insert(LOCATION, v);
            }
        }
        Block::RateLimited { retry_after, .. } => {
            resp.headers_mut().insert(
                RETRY_AFTER,
                HeaderValue::from(retry_after_secs(*retry_after)),
            );
        }
        _ => {}
    }
    // A custom reason phrase only exists on HTTP/1.
    if version < Version::HTTP_2
        && !reason.is_empty()
        && Some(reason) != status.canonical_reason()
        && let Ok(phrase) = ReasonPhrase::try_from(reason.as_bytes())
    {
        resp.extensions_mut().insert(phrase);
    }
    resp
}

/// Whole seconds, rounded up and at least one.
fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}
