//! The pipeline: the one model of a request that both transports drive.
//!
//! The inline proxy and the sideband handler each turn their input into an [`Exchange`]
//! and call the same phases, in this order:
//!
//! 1. [`Pipeline::route`]: match host and path to an API ([`route`]). No match ends the
//!    exchange with ASE's "Unknown API" / "Unknown Hostname" before any phase runs.
//! 2. [`Pipeline::on_request`]: capture identities from the request head and decide.
//!    Returns a [`Decision`]; the transport forwards (inline) or answers 200 (sideband) on
//!    `Allow`, and otherwise answers for the pipeline.
//! 3. [`Pipeline::on_response`]: the response head is known (from the backend inline, from
//!    the gateway's `/ase/response` call in sideband).
//! 4. [`Pipeline::on_complete`]: the exchange is over (body finished, connection dropped or
//!    request rejected); runs exactly once per exchange: detection, then the one sink
//!    ([`Metrics::record`]).
//!
//! Neither transport records or enforces on its own, so the two modes cannot drift apart.
//!
//! A [`Pipeline`] holds no state: it borrows the components the `App` owns side by side
//! (the API table, the [`Enforcer`], the [`Metrics`]) and sequences them. Each API's
//! handles into those components (its recorder and Prometheus children, its flow-control
//! and detection state) are resolved once per API table ([`route::Api`]), so a request
//! does no lookups.

pub mod route;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::StatusCode;
use http::header::{COOKIE, HeaderName, USER_AGENT};

pub use crate::enforce::Decision;
pub use crate::vocab::{UNKNOWN_CLIENT, Upstream, Verdict};
pub use route::{Api, ApiTable, Apis, Context, RouteError, Server};

use crate::config::Mode;
use crate::enforce::flow::{Kind, Pick};
use crate::enforce::{Block, Enforcer, flow_event};
use crate::metrics::Metrics;
use crate::vocab::{Headers, Reason};

/// An exchange routed to one of the pipeline's APIs.
pub type Exchange = crate::vocab::Exchange<Arc<Api>>;

/// The request pipeline: the phases, over borrowed components. Cheap to build per use.
#[derive(Debug, Clone, Copy)]
pub struct Pipeline<'a> {
    pub mode: Mode,
    /// Take the client from `X-Forwarded-For` (`enable_xff`).
    pub enable_xff: bool,
    pub apis: &'a Apis,
    pub enforcer: &'a Enforcer,
    pub metrics: &'a Metrics,
}

impl Pipeline<'_> {
    /// Phase 1: match a request to an API.
    pub fn route(&self, host: Option<&str>, path: &str) -> Result<Arc<Api>, RouteError> {
        self.apis.route(host, path)
    }

    /// Phase 2, when the request head is known: capture the client's identifiers and
    /// decide (see `enforce`). Runs before any byte goes to a backend.
    /// `headers`: hyper's map inline, the call's own list in sideband mode.
    pub fn on_request(&self, ex: &mut Exchange, headers: &impl Headers) -> Decision {
        if self.enable_xff
            && let Some(ip) = forwarded_client(headers)
        {
            ex.client_ip = ip;
        }
        ex.user_agent = headers.value(&USER_AGENT);
        if let Some(name) = ex.api.def.cookie.as_deref() {
            ex.session = cookie_value(headers, name).map(str::to_string);
        }
        let api = ex.api.clone();
        self.enforcer.decide(api.enforced(), ex, headers)
    }

    /// Inline, after `on_request` allowed: the server to forward to, within the API's
    /// server spike thresholds and connection quotas (waiting for a slot when queueing is
    /// on). `Ok(None)`: every server is out of rotation.
    pub async fn pick_server(&self, ex: &mut Exchange) -> Result<Option<Pick>, Block> {
        let api = ex.api.clone();
        let shared = self.enforcer.shared_counters();
        let picked = if self.enforcer.cfg.shared_client_spikes {
            match api
                .flow
                .check_client_shared(api.id(), ex.client_ip, shared)
                .await
            {
                Ok(()) => api.flow.pick(api.id(), api.candidates(), shared).await,
                Err(limited) => Err(limited),
            }
        } else {
            api.flow.pick(api.id(), api.candidates(), shared).await
        };
        match picked {
            Ok(Some(pick)) => {
                if pick.queued {
                    api.flow.record(
                        Kind::ConnectionQueued,
                        flow_event(api.id(), ex, Some(pick.server.addr.to_string())),
                    );
                }
                Ok(Some(pick))
            }
            Ok(None) => Ok(None),
            Err(limited) => {
                api.flow
                    .record(limited.kind, flow_event(api.id(), ex, None));
                ex.verdict = Verdict::Blocked(Reason::FlowControl);
                Err(Block::RateLimited {
                    kind: limited.kind,
                    retry_after: limited.retry_after,
                })
            }
        }
    }

    /// Expires list entries, decoy memory and idle flow-control and detection state.
    pub fn sweep(&self) {
        let table = self.apis.load();
        self.enforcer
            .sweep(table.all().iter().map(|a| a.enforced()));
    }

    /// Phase 3, when the response head is known.
    pub fn on_response(&self, ex: &mut Exchange, status: StatusCode) {
        ex.status = Some(status);
    }

    /// Phase 4, once per exchange, when it is over: detection, then the sink.
    pub fn on_complete(&self, mut ex: Exchange) {
        let latency = ex.started.elapsed();
        ex.latency = Some(latency);
        let api = ex.api.clone();
        self.enforcer.observe(api.enforced(), &mut ex);
        self.metrics.record(api.handles(), &ex);
        tracing::debug!(
            target: "enforcer::access",
            api = api.id(),
            client = %ex.client_ip,
            method = %ex.method,
            path = ex.path(),
            status = ex.status.map(|s| s.as_u16()),
            upstream = ex.upstream.as_ref().map(Upstream::addr),
            req_bytes = ex.request_bytes,
            resp_bytes = ex.response_bytes,
            latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        );
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The first address in the first `X-Forwarded-For` header: the original client as the
/// first trusted proxy saw it. Accepts `ip`, `ip:port` and `[v6]:port` forms.
pub fn forwarded_client(headers: &impl Headers) -> Option<IpAddr> {
    let value = headers.text(&X_FORWARDED_FOR)?;
    let first = value.split(',').next()?.trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The value of cookie `name` in the request's `Cookie` header(s).
pub fn cookie_value<'h>(headers: &'h impl Headers, name: &str) -> Option<&'h str> {
    headers
        .all(&COOKIE)
        .filter_map(crate::vocab::headers::text)
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn xff_takes_the_first_address() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "3.1.1.4, 10.0.0.1".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("3.1.1.4".parse().unwrap()));
        h.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(forwarded_client(&h), Some("2001:db8::1".parse().unwrap()));
        h.insert("x-forwarded-for", "unknown".parse().unwrap());
        assert_eq!(forwarded_client(&h), None);
    }

    #[test]
    fn cookies_are_found_across_headers() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=1; JSESSIONID=abc".parse().unwrap());
        h.append(COOKIE, "b=\"2\"".parse().unwrap());
        assert_eq!(cookie_value(&h, "JSESSIONID"), Some("abc"));
        assert_eq!(cookie_value(&h, "b"), Some("2"));
        assert_eq!(cookie_value(&h, "c"), None);
    }
}
