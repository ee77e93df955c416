//! [`Exchange`]: the facts about one request and its response, the same in both modes.
//!
//! The transport (inline proxy or sideband handler) creates an `Exchange` once the request
//! has matched an API, the pipeline phases fill it in as the exchange progresses, and
//! `on_complete` hands the finished record on. Nothing here refers to hyper connections or
//! JSON: a sideband call and a proxied request produce the same record.
//!
//! The exchange carries the API it matched as a type parameter `A` (the pipeline's
//! `Arc<Api>`, with that API's definition and runtime handles), so this vocabulary needs
//! nothing from the layers above it; code that only reads the facts is generic over `A`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Method, StatusCode, Uri, Version};

use super::client::ApiKey;
use super::ioa::IoaRecord;
use super::mode::Mode;
use super::reason::Reason;

/// The client address of an exchange whose client is unknown (a sideband call whose
/// `source_ip` is no address, without a trusted `X-Forwarded-For`). Reports show it as
/// `0.0.0.0`; no IP-based detection, deny-listing or rate limiting applies to it, since
/// it stands for many clients at once.
pub const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);

/// Unix seconds of a `SystemTime` (0 before the epoch).
pub fn unix_secs(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Which backend served the exchange, as the reports show it.
#[derive(Debug, Clone)]
pub enum Upstream {
    /// Inline: the server the proxy forwarded to (`host:port`).
    Server(Arc<str>),
    /// Sideband: the gateway chose the backend; reports show `0.0.0.0`.
    Gateway,
}

impl Upstream {
    pub fn addr(&self) -> &str {
        match self {
            Upstream::Server(addr) => addr,
            Upstream::Gateway => "0.0.0.0",
        }
    }
}

/// What the pipeline decided about an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verdict {
    #[default]
    Allowed,
    /// Stopped, for this reason.
    Blocked(Reason),
    /// Would have been stopped, but the API has `enable_blocking: false`.
    WouldBlock(Reason),
}

/// One request/response exchange, about the API `A` it matched.
#[derive(Debug)]
pub struct Exchange<A> {
    pub mode: Mode,
    pub api: A,
    /// Wall-clock time the request arrived (for time buckets).
    pub received_at: SystemTime,
    /// Monotonic start (for latency).
    pub started: Instant,
    pub method: Method,
    /// Path and query as the client sent them.
    pub uri: Uri,
    pub version: Version,
    /// The peer that sent the request (the gateway's `source_ip` in sideband mode).
    pub peer_ip: IpAddr,
    /// The client: `peer_ip`, or the first `X-Forwarded-For` address when `enable_xff`.
    pub client_ip: IpAddr,
    pub user_agent: Option<HeaderValue>,
    /// The value of the API's session cookie, if the request carried it.
    pub session: Option<String>,
    /// The user, when the caller said who it is (sideband `user_info`).
    pub username: Option<String>,
    /// The OAuth client, when the caller said (sideband `user_info`) or the JWT did.
    pub client_id: Option<String>,
    /// The OAuth2 bearer token, when the API captures it.
    pub token: Option<String>,
    /// The API key, when the API names where it is.
    pub api_key: Option<ApiKey>,
    /// The client connected over TLS (inline).
    pub tls: bool,
    /// The request is a WebSocket handshake (inline).
    pub websocket: bool,
    /// The request announced a body.
    pub has_body: bool,
    /// The client connection, numbered from process start (inline; 0 in sideband).
    pub connection_id: u64,
    pub verdict: Verdict,
    /// The response status the client got; `None` if it never got one.
    pub status: Option<StatusCode>,
    /// enforcer answered the client itself (a block, a decoy, a redirect, 429, or a proxy
    /// failure such as 502), so `status` says nothing about the backend or the client's
    /// behaviour there.
    pub answered_by_enforcer: bool,
    /// The backend that was reached; `None` if none was.
    pub upstream: Option<Upstream>,
    /// Request body bytes received from the client.
    pub request_bytes: u64,
    /// Response body bytes sent to the client.
    pub response_bytes: u64,
    /// Set when the exchange completes.
    pub latency: Option<Duration>,
    /// Inline: from forwarding to the backend's response head.
    pub upstream_latency: Option<Duration>,
    /// Sideband: to decode and decide the request call.
    pub decision_latency: Option<Duration>,
    /// IoAs this exchange raised (in the request phase or by detection when it completed),
    /// recorded by the sink with the exchange.
    pub raised: Vec<IoaRecord>,
}

impl<A> Exchange<A> {
    pub fn new(
        mode: Mode,
        api: A,
        method: Method,
        uri: Uri,
        version: Version,
        peer_ip: IpAddr,
    ) -> Exchange<A> {
        Exchange {
            mode,
            api,
            received_at: SystemTime::now(),
            started: Instant::now(),
            method,
            uri,
            version,
            peer_ip,
            client_ip: peer_ip,
            user_agent: None,
            session: None,
            username: None,
            client_id: None,
            token: None,
            api_key: None,
            tls: false,
            websocket: false,
            has_body: false,
            connection_id: 0,
            verdict: Verdict::Allowed,
            status: None,
            answered_by_enforcer: false,
            upstream: None,
            request_bytes: 0,
            response_bytes: 0,
            latency: None,
            upstream_latency: None,
            decision_latency: None,
            raised: Vec::new(),
        }
    }

    /// When the exchange ended: its arrival plus its latency (the arrival until it has
    /// completed). Derived, not read from the clock again: an exchange reads the wall
    /// clock once, when it starts.
    pub fn completed_at(&self) -> SystemTime {
        self.received_at + self.latency.unwrap_or_default()
    }

    /// The request path without the query.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The status the backend gave (inline) or the gateway reported (sideband), if any:
    /// what detection, sign-on events and error-code panes may learn from. enforcer's own
    /// answers are never evidence about a client.
    pub fn backend_status(&self) -> Option<StatusCode> {
        self.status.filter(|_| !self.enforcer_answered())
    }

    /// enforcer answered the client itself (a block, a decoy, a redirect, 429, a proxy
    /// failure).
    pub fn enforcer_answered(&self) -> bool {
        self.answered_by_enforcer || matches!(self.verdict, Verdict::Blocked(_))
    }

    /// Whether the client's address is known (see [`UNKNOWN_CLIENT`]).
    pub fn client_ip_known(&self) -> bool {
        self.client_ip != UNKNOWN_CLIENT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_ends_at_its_arrival_plus_its_latency() {
        let mut ex = Exchange::new(
            Mode::Sideband,
            (),
            Method::GET,
            Uri::from_static("/a"),
            Version::HTTP_11,
            UNKNOWN_CLIENT,
        );
        assert_eq!(
            ex.completed_at(),
            ex.received_at,
            "not over yet: its arrival"
        );
        ex.latency = Some(Duration::from_millis(1500));
        assert_eq!(
            ex.completed_at(),
            ex.received_at + Duration::from_millis(1500)
        );
        assert_eq!(
            unix_secs(SystemTime::UNIX_EPOCH + Duration::from_secs(7)),
            7
        );
        assert_eq!(
            unix_secs(SystemTime::UNIX_EPOCH - Duration::from_secs(7)),
            0
        );
    }
}
