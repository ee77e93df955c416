//! The `api_metrics` report, in exactly the shape of ASE/ABS's `GET /v4/abs/metrics`: the
//! same keys, nesting, types and key order (see `docs/reports.md`).
//!
//! Semantics: `total_requests` counts every request to the API in the window; `success`
//! those answered 2xx; `sessions` the distinct session ids (values of the API's `cookie`);
//! `no_sessions` the requests without one; `servers` counts per backend `host:port`
//! (`0.0.0.0` in sideband mode), and a request that reached no server adds to none.
//! `user_agent` is the agent's browser group and `device` its operating system, in ABS's
//! vocabulary (`metrics::agent`); [`UserAgents::Raw`] lists the raw headers instead.
//!
//! Order, so that equal input always gives equal output: every `{value, count}` list is
//! sorted by count, highest first, ties by value; `session_details` by `total_requests`
//! then session id; `no_session.request_details` by `total_requests` then path; the
//! `method` list of a source IP alphabetically. `most_popular_ips` holds the top
//! [`TOP_IPS`] addresses. Values beyond the recorder's caps appear as `(other)`.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use http::Method;
use serde::Serialize;

use super::window::{Window, ase_date};
use crate::metrics::Os;
use crate::metrics::snapshot::{Classes, Group, HashMap, OTHER, Snapshot};

/// How many addresses `most_popular_ips` lists.
pub const TOP_IPS: usize = 3;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ApiMetrics {
    pub company: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub earlier_date: String,
    pub later_date: String,
    pub api_name: String,
    pub req_resp_summary: Summary,
    pub req_resp_details: Details,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub api_url: String,
    pub total_requests: u64,
    pub success: u64,
    pub sessions: u64,
    pub no_sessions: u64,
    pub most_popular_method: String,
    pub most_popular_device: String,
    pub most_popular_ips: Vec<String>,
    pub servers: Vec<ServerCount>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ServerCount {
    pub server: String,
    pub count: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Details {
    pub api_url: String,
    pub session_details: Vec<SessionDetail>,
    pub no_session: NoSession,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SessionDetail {
    pub session_id: String,
    pub total_requests: u64,
    pub source_ip: Vec<SourceIp>,
    pub user_agent: Vec<UserAgentCount>,
    pub path_info: Vec<PathCount>,
    pub device: Vec<DeviceCount>,
    pub server: Vec<ServerCount>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SourceIp {
    pub ip: String,
    pub count: u64,
    pub method: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UserAgentCount {
    pub user_agent: String,
    pub count: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PathCount {
    pub path: String,
    pub count: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DeviceCount {
    pub device: String,
    pub count: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NoSession {
    pub request_details: Vec<RequestDetail>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RequestDetail {
    pub total_requests: u64,
    pub source_ip: Vec<SourceIp>,
    pub user_agent: Vec<UserAgentCount>,
    pub path: String,
    pub device: Vec<DeviceCount>,
    pub server: Vec<ServerCount>,
}

/// What the `user_agent` lists hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UserAgents {
    /// The browser group, as ABS reports it (`CHROME`, `DOWNLOAD`, `BOT`, …).
    #[default]
    Classes,
    /// The User-Agent header as sent (`-` without one): an enforcer addition, to see which
    /// client a session is.
    Raw,
}

/// Builds the report for API `api_name` (base path `api_url`) from a snapshot of `window`.
pub fn build(
    api_name: &str,
    api_url: &str,
    window: &Window,
    tz: &jiff::tz::TimeZone,
    snap: &Snapshot,
    agents: UserAgents,
) -> ApiMetrics {
    let user_agents = |g: &Group| -> Vec<UserAgentCount> {
        let counts = match agents {
            UserAgents::Classes => ranked(g.browsers.iter().map(|(b, n)| (b.as_str(), n)))
                .into_iter()
                .map(|(b, n)| (b.to_string(), n))
                .collect(),
            UserAgents::Raw => ranked_arc(&g.user_agents).collect::<Vec<_>>(),
        };
        counts
            .into_iter()
            .map(|(user_agent, count)| UserAgentCount { user_agent, count })
            .collect()
    };
    let methods = ranked(snap.methods.iter().map(|(m, n)| (method_label(m), *n)));
    let devices = device_counts(&snap.devices);
    let ips = ranked(
        snap.ips
            .iter()
            .filter_map(|(ip, n)| ip.map(|ip| (IpKey(ip), *n))),
    );
    let mut session_details: Vec<SessionDetail> = snap
        .sessions
        .iter()
        .map(|(id, g)| SessionDetail {
            session_id: id.to_string(),
            total_requests: g.requests,
            source_ip: source_ips(g),
            user_agent: user_agents(g),
            path_info: ranked_arc(&g.paths)
                .map(|(path, count)| PathCount { path, count })
                .collect(),
            device: device_counts(&g.devices),
            server: server_counts(&g.servers),
        })
        .collect();
    session_details.sort_by(|a, b| {
        b.total_requests
            .cmp(&a.total_requests)
            .then_with(|| a.session_id.cmp(&b.session_id))
    });
    let mut request_details: Vec<RequestDetail> = snap
        .no_session_paths
        .iter()
        .map(|(path, g)| RequestDetail {
            total_requests: g.requests,
            source_ip: source_ips(g),
            user_agent: user_agents(g),
            path: path.to_string(),
            device: device_counts(&g.devices),
            server: server_counts(&g.servers),
        })
        .collect();
    request_details.sort_by(|a, b| {
        b.total_requests
            .cmp(&a.total_requests)
            .then_with(|| a.path.cmp(&b.path))
    });

    ApiMetrics {
        company: "ping identity",
        name: "api_metrics",
        description: "This report contains metrics for request/response traffic for the specified API",
        earlier_date: ase_date(window.from, tz),
        later_date: ase_date(window.to, tz),
        api_name: api_name.to_string(),
        req_resp_summary: Summary {
            api_url: api_url.to_string(),
            total_requests: snap.requests,
            success: snap.success,
            sessions: snap.distinct_sessions() as u64,
            no_sessions: snap.no_session,
            most_popular_method: methods.first().map(|(m, _)| m.clone()).unwrap_or_default(),
            most_popular_device: devices
                .first()
                .map(|d| d.device.clone())
                .unwrap_or_default(),
            most_popular_ips: ips
                .iter()
                .take(TOP_IPS)
                .map(|(ip, _)| ip.0.to_string())
                .collect(),
            servers: server_counts(&snap.servers),
        },
        req_resp_details: Details {
            api_url: api_url.to_string(),
            session_details,
            no_session: NoSession { request_details },
        },
    }
}

/// IPs order numerically (v4 before v6), which reads better than text order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct IpKey(IpAddr);

fn method_label(m: &Option<Method>) -> String {
    m.as_ref()
        .map_or_else(|| OTHER.to_string(), |m| m.as_str().to_string())
}

/// Sorts `(value, count)` pairs: count descending, then value ascending.
fn ranked<K: Ord + Clone + Hash + Eq>(items: impl Iterator<Item = (K, u64)>) -> Vec<(K, u64)> {
    let mut merged: HashMap<K, u64> = HashMap::default();
    for (k, n) in items {
        *merged.entry(k).or_default() += n;
    }
    let mut v: Vec<(K, u64)> = merged.into_iter().filter(|(_, n)| *n > 0).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

fn ranked_arc(map: &HashMap<Arc<str>, u64>) -> impl Iterator<Item = (String, u64)> {
    ranked(map.iter().map(|(k, n)| (k.clone(), *n)))
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
}

fn server_counts(map: &HashMap<Arc<str>, u64>) -> Vec<ServerCount> {
    ranked_arc(map)
        .map(|(server, count)| ServerCount { server, count })
        .collect()
}

fn device_counts(devices: &Classes<Os>) -> Vec<DeviceCount> {
    ranked(devices.iter().map(|(os, n)| (os.as_str(), n)))
        .into_iter()
        .map(|(d, count)| DeviceCount {
            device: d.to_string(),
            count,
        })
        .collect()
}

fn source_ips(g: &Group) -> Vec<SourceIp> {
    let mut v: Vec<(Option<IpAddr>, u64, Vec<String>)> = g
        .ips
        .iter()
        .map(|(ip, used)| {
            let mut methods: Vec<String> = used.methods.iter().map(method_label).collect();
            methods.sort();
            (*ip, used.count, methods)
        })
        .collect();
    // `None` ((other)) sorts after every address at equal count.
    v.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then_with(|| a.0.is_none().cmp(&b.0.is_none()))
            .then_with(|| a.0.cmp(&b.0))
    });
    v.into_iter()
        .map(|(ip, count, method)| SourceIp {
            ip: ip.map_or_else(|| OTHER.to_string(), |ip| ip.to_string()),
            count,
            method,
        })
        .collect()
}
