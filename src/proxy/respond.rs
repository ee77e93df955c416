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
//! | `GET /ase` with `enable_ase_health` | 200 | `{"status":"up","mode":"inline"}` |

use http::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode, Version};

use super::body::ProxyBody;

/// An answer enforcer gives without (or instead of) a backend response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    UnknownApi,
    UnknownHostname,
    MalformedRequest,
    BadGateway,
    GatewayTimeout,
    NoHealthyServer,
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
    // After a malformed request the connection's framing cannot be trusted. HTTP/2 has no
    // `Connection` header; its streams are independent anyway.
    if answer == Answer::MalformedRequest && version < Version::HTTP_2 {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
