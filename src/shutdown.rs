//! The shutdown signal: a `watch` flag the server raises once, which every listener and
//! the management port wait on. At the bottom so both sides can read it without
//! importing each other.

use tokio::sync::watch;

/// Resolves once shutdown has been requested (or the control side is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&v| v).await.map(|_| ());
}
