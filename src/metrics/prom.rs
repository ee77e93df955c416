//! Prometheus: every metric name enforcer exports, in this one file.
//!
//! Per-request metrics are counters and histograms whose handles each API resolves once
//! ([`ApiProm`]), so recording a request never hashes label values. State that already
//! lives elsewhere (server health, list sizes, flow-control and detection counts, sideband
//! correlation, dropped detail) is read when Prometheus scrapes ([`State`]), so it is
//! never counted twice. Labels stay low-cardinality: API, method, status class, mode,
//! decision and reason, IoA type, list and identifier type. Per-client data is never a
//! label; it belongs in the JSON reports.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `enforcer_requests_total` | counter | `api`, `method`, `status_class`, `mode` |
//! | `enforcer_decisions_total` | counter | `api`, `decision` (allow, block, would_block), `reason` |
//! | `enforcer_request_duration_seconds` | histogram | `api`, `mode` |
//! | `enforcer_upstream_duration_seconds` | histogram | `api` (inline: time to the backend's response head) |
//! | `enforcer_sideband_decision_duration_seconds` | histogram | `api` |
//! | `enforcer_request_body_bytes_total` | counter | `api` |
//! | `enforcer_response_body_bytes_total` | counter | `api` |
//! | `enforcer_connections_active` | gauge | |
//! | `enforcer_upstream_up` | gauge | `api`, `server` |
//! | `enforcer_list_entries` | gauge | `list` (deny, allow), `type` (ip, cookie, token, api_key, username) |
//! | `enforcer_flow_control_rejections_total` | counter | `api`, `kind` |
//! | `enforcer_flow_control_queued_total` | counter | `api` |
//! | `enforcer_ioa_detections_total` | counter | `ioa`, `type_id` |
//! | `enforcer_user_sign_ons_total` | counter | `result` (success, failure): requests to an API's `login_url` (`userActivities`) |
//! | `enforcer_password_resets_total` | counter | requests to an API's `password_reset_url` answered as a reset |
//! | `enforcer_detection_baseline_clients` | gauge | `api`: established IPs the relative detectors compare with |
//! | `enforcer_detection_baseline_requests` | gauge | `api`: median requests per `ioa_window` of those IPs |
//! | `enforcer_detection_baseline_bytes` | gauge | `api`: median response bytes per `ioa_window` of those IPs |
//! | `enforcer_memory_bytes`, `enforcer_memory_limit_bytes` | gauge | `part` (records, activity, detection, pending, lists, flow): bytes kept per client-chosen value, and the part's limit (see `memory`) |
//! | `enforcer_memory_overflow_total` | counter | `part`: values not kept because the part or a cap was full |
//! | `enforcer_upstream_in_flight` / `enforcer_upstream_max_in_flight` | gauge | requests in flight to backends, and their bound |
//! | `enforcer_saturated_total` | counter | `limit`: `upstream` (503, no backend slot), `client_in_flight` (429) |
//! | `enforcer_sideband_pending` | gauge | |
//! | `enforcer_sideband_correlations_total` | counter | `outcome`: how response calls found their request (`by_id`, `by_cookie`, `by_connection`), and what happened otherwise (`uncorrelated`: a response call that matched nothing; `expired`, `evicted`: requests recorded without a response; `replaced`: an id reused for another request; `retried`: a gateway's retry, recorded once; `unanswered`: a request without an id whose connection moved on before its response call) |
//! | `enforcer_management_refused_total` | counter | `reason`: `host` (421, DNS rebinding), `credentials` (401), `locked_out` (429 after repeated failures) |
//! | `enforcer_sideband_unknown_source_ip_total` | counter | request calls whose `source_ip` was no address (decided with the client unknown) |
//! | `enforcer_record_details_dropped_total` | counter | `api`, `dimension` |
//! | `enforcer_records_expired_total` | counter | `api` |
//! | `enforcer_store_healthy` | gauge | (absent with `store=none`) 1 while commits succeed |
//! | `enforcer_store_flushes_total` | counter | commits that wrote something |
//! | `enforcer_store_flush_errors_total` | counter | commits that failed (state stays in memory, retried) |
//! | `enforcer_store_restoring` | gauge | 1 while the stored records are loaded back after a start (the ports are already served) |
//! | `enforcer_cluster_redis_up` | gauge | (cluster mode only) 1 while the node reaches Redis |
//! | `enforcer_cluster_redis_errors_total` | counter | (cluster mode only) failed exchanges with Redis |
//! | `enforcer_cluster_spike_local_decisions_total` | counter | (cluster mode only) spike checks Redis did not answer within `cluster_request_budget`, decided by the node's own limiter |
//! | `enforcer_build_info` | gauge | `version`, `mode` |

use std::sync::OnceLock;

use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::vocab::{Exchange, Reason, Verdict};

const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];
const DECISIONS: [&str; 3] = ["allow", "block", "would_block"];
/// The `reason` label's values: `none` (allowed), then every [`Reason`] in its order.
const REASONS: [&str; Reason::ALL.len() + 1] = {
    let mut names = ["none"; Reason::ALL.len() + 1];
    let mut i = 0;
    while i < Reason::ALL.len() {
        names[i + 1] = Reason::ALL[i].as_str();
        i += 1;
    }
    names
};

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const DECISION_BUCKETS: [f64; 11] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// The registry and the metric vectors per-request metrics come from.
pub struct Prom {
    registry: Registry,
    mode: &'static str,
    requests: IntCounterVec,
    decisions: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    sideband_decision: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    pub connections_active: IntGauge,
}

impl std::fmt::Debug for Prom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prom").field("mode", &self.mode).finish()
    }
}

impl Prom {
    pub fn new(mode: &'static str) -> Result<Prom, prometheus::Error> {
        let registry = Registry::new();
        let counter =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let histogram = |name: &str,
                         help: &str,
                         labels: &[&str],
                         buckets: &[f64]|
         -> Result<HistogramVec, prometheus::Error> {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok(h)
        };
        let prom = Prom {
            mode,
            requests: counter(
                "enforcer_requests_total",
                "Requests completed, by API, method, status class of the answer and mode.",
                &["api", "method", "status_class", "mode"],
            )?,
            decisions: counter(
                "enforcer_decisions_total",
                "Enforcement decisions, by API, decision and reason.",
                &["api", "decision", "reason"],
            )?,
            request_duration: histogram(
                "enforcer_request_duration_seconds",
                "Time from the request's arrival to the end of the exchange.",
                &["api", "mode"],
                &LATENCY_BUCKETS,
            )?,
            upstream_duration: histogram(
                "enforcer_upstream_duration_seconds",
                "Inline: time from forwarding a request to the backend's response head.",
                &["api"],
                &LATENCY_BUCKETS,
            )?,
            sideband_decision: histogram(
                "enforcer_sideband_decision_duration_seconds",
                "Sideband: time to decode and decide one /ase/request call.",
                &["api"],
                &DECISION_BUCKETS,
            )?,
            request_bytes: counter(
                "enforcer_request_body_bytes_total",
                "Request body bytes received from clients.",
                &["api"],
            )?,
            response_bytes: counter(
                "enforcer_response_body_bytes_total",
                "Response body bytes sent to clients.",
                &["api"],
            )?,
            connections_active: {
                let g = IntGauge::new(
                    "enforcer_connections_active",
                    "Client connections open now.",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            registry,
        };
        Ok(prom)
    }

    /// Handles for one API, resolved once.
    pub fn api(&self, id: &str) -> ApiProm {
        ApiProm {
            id: id.to_string(),
            requests: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            decisions: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            request_duration: self.request_duration.with_label_values(&[id, self.mode]),
            upstream_duration: OnceLock::new(),
            sideband_decision: OnceLock::new(),
            request_bytes: self.request_bytes.with_label_values(&[id]),
            response_bytes: self.response_bytes.with_label_values(&[id]),
            vectors: Vectors {
                requests: self.requests.clone(),
                decisions: self.decisions.clone(),
                upstream_duration: self.upstream_duration.clone(),
                sideband_decision: self.sideband_decision.clone(),
                mode: self.mode,
            },
        }
    }

    /// The text exposition: the registry's metrics, then the scrape-time `state` ones.
    pub fn render(&self, state: &State) -> Result<String, prometheus::Error> {
        let mut families = self.registry.gather();
        families.extend(state.families(self.mode));
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

struct Vectors {
    requests: IntCounterVec,
    decisions: IntCounterVec,
    upstream_duration: HistogramVec,
    sideband_decision: HistogramVec,
    mode: &'static str,
}

/// One API's cached metric handles.
pub struct ApiProm {
    id: String,
    requests: [[OnceLock<IntCounter>; STATUS_CLASSES.len()]; METHODS.len()],
    decisions: [[OnceLock<IntCounter>; REASONS.len()]; DECISIONS.len()],
    request_duration: Histogram,
    upstream_duration: OnceLock<Histogram>,
    sideband_decision: OnceLock<Histogram>,
    request_bytes: IntCounter,
    response_bytes: IntCounter,
    vectors: Vectors,
}

impl std::fmt::Debug for ApiProm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiProm").field("api", &self.id).finish()
    }
}

impl ApiProm {
    /// Counts a finished exchange.
    pub fn observe<A>(&self, ex: &Exchange<A>) {
        let method = METHODS
            .iter()
            .position(|m| *m == ex.method.as_str())
            .unwrap_or(METHODS.len() - 1);
        let class = ex.status.map_or(STATUS_CLASSES.len() - 1, |s| {
            usize::from(s.as_u16() / 100).clamp(1, 5) - 1
        });
        self.requests[method][class]
            .get_or_init(|| {
                self.vectors.requests.with_label_values(&[
                    &self.id,
                    METHODS[method],
                    STATUS_CLASSES[class],
                    self.vectors.mode,
                ])
            })
            .inc();
        let (decision, reason) = match ex.verdict {
            Verdict::Allowed => (0, 0),
            Verdict::Blocked(r) => (1, r.index() + 1),
            Verdict::WouldBlock(r) => (2, r.index() + 1),
        };
        self.decisions[decision][reason]
            .get_or_init(|| {
                self.vectors.decisions.with_label_values(&[
                    &self.id,
                    DECISIONS[decision],
                    REASONS[reason],
                ])
            })
            .inc();
        if let Some(latency) = ex.latency {
            self.request_duration.observe(latency.as_secs_f64());
        }
        if let Some(upstream) = ex.upstream_latency {
            self.upstream_duration
                .get_or_init(|| {
                    self.vectors
                        .upstream_duration
                        .with_label_values(&[&self.id])
                })
                .observe(upstream.as_secs_f64());
        }
        if let Some(decided) = ex.decision_latency {
            self.sideband_decision
                .get_or_init(|| {
                    self.vectors
                        .sideband_decision
                        .with_label_values(&[&self.id])
                })
                .observe(decided.as_secs_f64());
        }
        self.request_bytes.inc_by(ex.request_bytes);
        self.response_bytes.inc_by(ex.response_bytes);
    }
}

/// Values read from the running state when Prometheus scrapes.
#[derive(Debug, Default)]
pub struct State {
    /// `(api, server, up)`.
    pub upstream_up: Vec<(String, String, bool)>,
    /// `(list, identifier type, entries)`.
    pub list_entries: Vec<(&'static str, &'static str, usize)>,
    /// `(api, kind, count)`.
    pub flow_rejections: Vec<(String, &'static str, u64)>,
    /// `(api, count)`.
    pub flow_queued: Vec<(String, u64)>,
    /// `(api, established IPs, median requests per window, median bytes per window)`.
    pub detection_baseline: Vec<(String, u64, f64, f64)>,
    /// Parts of the memory budget: `(part, bytes used, limit, overflows)`.
    pub memory: Vec<(&'static str, u64, u64, u64)>,
    /// Backend requests in flight, and the most there may be.
    pub upstream_in_flight: (usize, usize),
    /// Requests refused for want of a backend slot, and for too many in flight per client.
    pub saturated: (u64, u64),
    /// Management calls refused: wrong `Host` (421), failed credentials (401), while locked
    /// out (429).
    pub management_refused: (u64, u64, u64),
    /// `(ioa, type_id, count)`.
    pub ioas: Vec<(&'static str, u16, u64)>,
    pub sideband_pending: usize,
    /// Since start: (sign-on successes, failures, password resets).
    pub user_events: (u64, u64, u64),
    /// `(outcome, count)`.
    pub correlations: Vec<(&'static str, u64)>,
    /// Sideband request calls decided with the client address unknown.
    pub sideband_unknown_source_ip: u64,
    /// `(api, dimension, count)`.
    pub dropped: Vec<(String, &'static str, u64)>,
    /// `(api, count)`.
    pub expired: Vec<(String, u64)>,
    /// `(healthy, flushes, errors, restoring)` when a store is attached.
    pub store: Option<(bool, u64, u64, bool)>,
    /// Cluster mode: `(connected to Redis, errors talking to it, spike counts decided
    /// locally because Redis did not answer in time)`.
    pub cluster: Option<(bool, u64, u64)>,
}

impl State {
    fn families(&self, mode: &str) -> Vec<MetricFamily> {
        let mut out = Vec::new();
        let gauge = |v: f64| {
            let mut g = Gauge::default();
            g.set_value(v);
            g
        };
        let counter = |v: u64| {
            let mut c = Counter::default();
            c.set_value(v as f64);
            c
        };
        out.push(family(
            "enforcer_upstream_up",
            "Inline backend servers: 1 in rotation, 0 taken out by health checks.",
            MetricType::GAUGE,
            self.upstream_up
                .iter()
                .map(|(api, server, up)| {
                    gauge_metric(
                        &[("api", api), ("server", server)],
                        gauge(f64::from(u8::from(*up))),
                    )
                })
                .collect(),
        ));
        out.push(family(
            "enforcer_list_entries",
            "Entries on the deny and allow lists, by identifier type.",
            MetricType::GAUGE,
            self.list_entries
                .iter()
                .map(|(list, kind, n)| {
                    gauge_metric(&[("list", list), ("type", kind)], gauge(*n as f64))
                })
                .collect(),
        ));
        out.push(family(
            "enforcer_flow_control_rejections_total",
            "Requests rejected by flow control, by API and limit.",
            MetricType::COUNTER,
            self.flow_rejections
                .iter()
                .map(|(api, kind, n)| counter_metric(&[("api", api), ("kind", kind)], counter(*n)))
                .collect(),
        ));
        out.push(family(
            "enforcer_flow_control_queued_total",
            "Requests that waited for a server's connection-quota slot.",
            MetricType::COUNTER,
            self.flow_queued
                .iter()
                .map(|(api, n)| counter_metric(&[("api", api)], counter(*n)))
                .collect(),
        ));
        out.push(family(
            "enforcer_memory_bytes",
            "Bytes kept per client-chosen value, per part of memory_budget (measured costs per entry).",
            MetricType::GAUGE,
            self.memory
                .iter()
                .map(|(part, used, _, _)| gauge_metric(&[("part", part)], gauge(*used as f64)))
                .collect(),
        ));
        out.push(family(
            "enforcer_memory_limit_bytes",
            "The limit of each part of memory_budget.",
            MetricType::GAUGE,
            self.memory
                .iter()
                .map(|(part, _, limit, _)| gauge_metric(&[("part", part)], gauge(*limit as f64)))
                .collect(),
        ));
        out.push(family(
            "enforcer_memory_overflow_total",
            "Values not kept (or entries evicted) because their part of memory_budget or a cap was full.",
            MetricType::COUNTER,
            self.memory
                .iter()
                .map(|(part, _, _, n)| counter_metric(&[("part", part)], counter(*n)))
                .collect(),
        ));
        out.push(family(
            "enforcer_upstream_in_flight",
            "Requests in flight to backends (each holds a backend connection).",
            MetricType::GAUGE,
            vec![gauge_metric(&[], gauge(self.upstream_in_flight.0 as f64))],
        ));
        out.push(family(
            "enforcer_upstream_max_in_flight",
            "The most requests in flight to backends at once (upstream_max_connections, or what the file-descriptor limit leaves).",
            MetricType::GAUGE,
            vec![gauge_metric(&[], gauge(self.upstream_in_flight.1 as f64))],
        ));
        out.push(family(
            "enforcer_saturated_total",
            "Requests refused to protect the process: no backend slot (503), too many in flight from one client (429).",
            MetricType::COUNTER,
            vec![
                counter_metric(&[("limit", "upstream")], counter(self.saturated.0)),
                counter_metric(&[("limit", "client_in_flight")], counter(self.saturated.1)),
            ],
        ));
        out.push(family(
            "enforcer_management_refused_total",
            "Management calls refused: a Host that is not the port's (421), failed credentials (401), a source locked out after failures (429).",
            MetricType::COUNTER,
            vec![
                counter_metric(&[("reason", "host")], counter(self.management_refused.0)),
                counter_metric(&[("reason", "credentials")], counter(self.management_refused.1)),
                counter_metric(&[("reason", "locked_out")], counter(self.management_refused.2)),
            ],
        ));
        out.push(family(
            "enforcer_detection_baseline_clients",
            "Established IPs (seen for a whole ioa_window) the relative detectors compare with; none below ioa_baseline_clients.",
            MetricType::GAUGE,
            self.detection_baseline
                .iter()
                .map(|(api, n, _, _)| gauge_metric(&[("api", api)], gauge(*n as f64)))
                .collect(),
        ));
        out.push(family(
            "enforcer_detection_baseline_requests",
            "The baseline of extreme_client_activity: median requests per ioa_window of the established IPs.",
            MetricType::GAUGE,
            self.detection_baseline
                .iter()
                .map(|(api, _, r, _)| gauge_metric(&[("api", api)], gauge(*r)))
                .collect(),
        ));
        out.push(family(
            "enforcer_detection_baseline_bytes",
            "The baseline of data_exfiltration: median response bytes per ioa_window of the established IPs.",
            MetricType::GAUGE,
            self.detection_baseline
                .iter()
                .map(|(api, _, _, b)| gauge_metric(&[("api", api)], gauge(*b)))
                .collect(),
        ));
        out.push(family(
            "enforcer_ioa_detections_total",
            "Indicators of attack raised, by IoA and ASE attack type.",
            MetricType::COUNTER,
            self.ioas
                .iter()
                .map(|(ioa, id, n)| {
                    counter_metric(&[("ioa", ioa), ("type_id", &id.to_string())], counter(*n))
                })
                .collect(),
        ));
        if let Some((healthy, flushes, errors, restoring)) = self.store {
            out.push(family(
                "enforcer_store_restoring",
                "1 while the stored records are being loaded back after a start (reports are not complete yet).",
                MetricType::GAUGE,
                vec![gauge_metric(&[], gauge(f64::from(u8::from(restoring))))],
            ));
            out.push(family(
                "enforcer_store_healthy",
                "1 while commits to the store succeed, 0 after a failed one.",
                MetricType::GAUGE,
                vec![gauge_metric(&[], gauge(f64::from(u8::from(healthy))))],
            ));
            out.push(family(
                "enforcer_store_flushes_total",
                "Commits of changed state to the store.",
                MetricType::COUNTER,
                vec![counter_metric(&[], counter(flushes))],
            ));
            out.push(family(
                "enforcer_store_flush_errors_total",
                "Commits to the store that failed (the state stays in memory and is retried).",
                MetricType::COUNTER,
                vec![counter_metric(&[], counter(errors))],
            ));
        }
        if let Some((up, errors, local)) = self.cluster {
            out.push(family(
                "enforcer_cluster_redis_up",
                "Cluster mode: 1 while this node reaches Redis, 0 while it serves on local state.",
                MetricType::GAUGE,
                vec![gauge_metric(&[], gauge(f64::from(u8::from(up))))],
            ));
            out.push(family(
                "enforcer_cluster_redis_errors_total",
                "Cluster mode: failed exchanges with Redis (commits, pulls, heartbeats, counters).",
                MetricType::COUNTER,
                vec![counter_metric(&[], counter(errors))],
            ));
            out.push(family(
                "enforcer_cluster_spike_local_decisions_total",
                "Cluster mode: spike threshold checks Redis did not answer within cluster_request_budget, decided by this node's own limiter (each may let the cluster pass more than the threshold).",
                MetricType::COUNTER,
                vec![counter_metric(&[], counter(local))],
            ));
        }
        let (successes, failures, resets) = self.user_events;
        out.push(family(
            "enforcer_user_sign_ons_total",
            "Requests to an API's login_url answered as a sign-on success or failure.",
            MetricType::COUNTER,
            vec![
                counter_metric(&[("result", "success")], counter(successes)),
                counter_metric(&[("result", "failure")], counter(failures)),
            ],
        ));
        out.push(family(
            "enforcer_password_resets_total",
            "Requests to an API's password_reset_url answered as a password reset.",
            MetricType::COUNTER,
            vec![counter_metric(&[], counter(resets))],
        ));
        out.push(family(
            "enforcer_sideband_pending",
            "Allowed sideband requests waiting for their response call.",
            MetricType::GAUGE,
            vec![gauge_metric(&[], gauge(self.sideband_pending as f64))],
        ));
        out.push(family(
            "enforcer_sideband_correlations_total",
            "Sideband correlation: how response calls found their request, and the other outcomes.",
            MetricType::COUNTER,
            self.correlations
                .iter()
                .map(|(o, n)| counter_metric(&[("outcome", o)], counter(*n)))
                .collect(),
        ));
        out.push(family(
            "enforcer_sideband_unknown_source_ip_total",
            "Sideband request calls whose source_ip was no address, decided with the client unknown.",
            MetricType::COUNTER,
            vec![counter_metric(&[], counter(self.sideband_unknown_source_ip))],
        ));
        out.push(family(
            "enforcer_record_details_dropped_total",
            "Recorded requests whose detail in a dimension was folded into (other) by a cap.",
            MetricType::COUNTER,
            self.dropped
                .iter()
                .map(|(api, dim, n)| {
                    counter_metric(&[("api", api), ("dimension", dim)], counter(*n))
                })
                .collect(),
        ));
        out.push(family(
            "enforcer_records_expired_total",
            "Requests too old for any time bucket when they completed.",
            MetricType::COUNTER,
            self.expired
                .iter()
                .map(|(api, n)| counter_metric(&[("api", api)], counter(*n)))
                .collect(),
        ));
        out.push(family(
            "enforcer_build_info",
            "Always 1; the labels say which enforcer this is.",
            MetricType::GAUGE,
            vec![gauge_metric(
                &[("version", env!("CARGO_PKG_VERSION")), ("mode", mode)],
                gauge(1.0),
            )],
        ));
        out.retain(|f| !f.get_metric().is_empty());
        out
    }
}

/// Label pairs, sorted by name as the registry's own metrics are.
fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(k, _)| *k);
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_string());
            l.set_value((*v).to_string());
            l
        })
        .collect()
}

fn gauge_metric(pairs: &[(&str, &str)], g: Gauge) -> Metric {
    let mut m = Metric::from_gauge(g);
    m.set_label(labels(pairs));
    m
}

fn counter_metric(pairs: &[(&str, &str)], c: Counter) -> Metric {
    let mut m = Metric::from_label(labels(pairs));
    m.set_counter(c);
    m
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}
