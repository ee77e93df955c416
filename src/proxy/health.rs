//! Active health checks of inline backends (`health_check`, `health_check_interval`,
//! `health_retry_count`, `health_url`).
//!
//! Every server of an API with `health_check: true` gets a task that sends
//! `GET <health_url>` every interval on a fresh connection. A 2xx or 3xx answer passes;
//! anything else (another status, refusal, timeout) fails. After `health_retry_count`
//! consecutive failures the server leaves the round robin; the first passing check brings
//! it back. The tasks run beside the workers and only touch the servers' atomic flags.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::header::{HOST, HeaderValue, USER_AGENT};
use http::uri::PathAndQuery;
use tokio::task::JoinHandle;

use super::body::UpstreamBody;
use super::forward::Forwarder;
use crate::config::HostMatch;
use crate::config::api::HealthCheck;
use crate::pipeline::{Api, ApiTable, Server};

/// Starts a checker for every server of every API that asks for health checks.
pub fn spawn(
    forwarder: Arc<Forwarder>,
    table: &ApiTable,
    upstream_timeout: Duration,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for api in table.all() {
        let Some(hc) = api.def.health_check.clone() else {
            continue;
        };
        for server in &api.servers {
            tasks.push(tokio::spawn(watch(
                forwarder.clone(),
                api.clone(),
                server.clone(),
                hc.clone(),
                upstream_timeout.min(hc.interval),
            )));
        }
    }
    tasks
}

async fn watch(
    fwd: Arc<Forwarder>,
    api: Arc<Api>,
    server: Arc<Server>,
    hc: HealthCheck,
    timeout: Duration,
) {
    let mut tick = tokio::time::interval(hc.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match probe(&fwd, &api, &server, &hc, timeout).await {
            Ok(()) => {
                if server.check_passed() {
                    tracing::info!(api = api.id(), server = %server.addr, "health check passed: server back in rotation");
                }
            }
            Err(reason) => {
                if server.check_failed(hc.retry_count) {
                    tracing::warn!(
                        api = api.id(),
                        server = %server.addr,
                        "health check failed {} times in a row ({reason}): server taken out of rotation",
                        hc.retry_count
                    );
                } else {
                    tracing::debug!(api = api.id(), server = %server.addr, "health check failed: {reason}");
                }
            }
        }
    }
}

async fn probe(
    fwd: &Forwarder,
    api: &Api,
    server: &Server,
    hc: &HealthCheck,
    timeout: Duration,
) -> Result<(), String> {
    let path = PathAndQuery::try_from(hc.url.as_str()).map_err(|e| e.to_string())?;
    let host = match &api.def.hostname {
        HostMatch::Exact(h) => HeaderValue::from_str(h).ok(),
        HostMatch::Any => None,
    }
    .or_else(|| HeaderValue::from_str(&server.addr).ok());
    let mut req = Request::new(UpstreamBody::Empty);
    *req.uri_mut() = http::Uri::from(path);
    if let Some(host) = host {
        req.headers_mut().insert(HOST, host);
    }
    req.headers_mut().insert(
        USER_AGENT,
        HeaderValue::from_static(concat!("enforcer-health/", env!("CARGO_PKG_VERSION"))),
    );
    let resp = fwd
        .send_within(req, server, api.def.server_ssl, timeout)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("{} answered {status}", hc.url))
    }
}
