//! Inline mode: enforcer as a reverse proxy in front of the API backends.
//!
//! The server accepts a connection and hands each request to [`handler::handle`], which
//! drives the shared pipeline and forwards allowed requests ([`forward`], over the worker's
//! connections in [`pool`]) to a healthy server ([`health`]), streaming bodies both ways
//! ([`body`]) and tunnelling WebSockets ([`tunnel`]). Every answer enforcer gives itself is
//! built in [`respond`].

pub mod body;
pub mod forward;
pub mod handler;
pub mod health;
pub mod pool;
pub mod respond;
pub mod tunnel;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::{App, Live};
use forward::Forwarder;

/// The inline transport's state on one worker.
pub struct Inline {
    pub app: Arc<App>,
    pub forwarder: Forwarder,
}

impl Inline {
    pub fn new(app: Arc<App>) -> Inline {
        let forwarder = Forwarder::new(&app.settings, app.upstream_tls.clone());
        Inline { app, forwarder }
    }
}

/// One client connection.
pub struct Conn {
    pub inline: Arc<Inline>,
    /// Numbered from process start (flow-control reports name it).
    pub id: u64,
    pub peer: SocketAddr,
    /// `peer`'s address as the `X-Forwarded-For`/`X-Real-IP` value, made once.
    pub peer_value: http::HeaderValue,
    /// Whether the client connected over TLS.
    pub tls: bool,
    /// Held while the connection (or a tunnel started on it) lives.
    pub live: Live,
}

impl Conn {
    pub fn new(inline: Arc<Inline>, id: u64, peer: SocketAddr, tls: bool, live: Live) -> Conn {
        // An IP address always formats as a valid header value.
        let peer_value = http::HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
        Conn {
            inline,
            id,
            peer,
            peer_value,
            tls,
            live,
        }
    }
}
