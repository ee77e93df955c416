//! WebSocket pass-through for APIs with `protocol: "ws"`.
//!
//! After the backend answers the handshake with `101 Switching Protocols`, both
//! connections are upgraded and bytes are copied both ways until either side closes. The
//! tunnel holds its client connection's slot (so it counts against `max_connections` and
//! shutdown waits for it) and completes the exchange with the bytes each way.

use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use super::Conn;
use super::body::Completion;

/// Runs one tunnel to its end.
pub async fn run(conn: Arc<Conn>, client: OnUpgrade, upstream: OnUpgrade, mut done: Completion) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!("client {}: websocket upgrade failed: {e}", conn.peer.ip());
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((from_client, to_client)) => done.add_tunnel_bytes(from_client, to_client),
        Err(e) => tracing::debug!("client {}: websocket tunnel closed: {e}", conn.peer.ip()),
    }
}
