//! Replaying a [`Model`] through a running enforcer, inline (requests through the proxy, to
//! the sample backend) or sideband (the two calls a gateway makes, with the status and size
//! the sample backend gives), `speed` times faster than real time.
//!
//! Time compression is honest only with the detection windows compressed alike: the
//! config the run uses divides `ioa_window`, `ioa_block_ttl` and `decoy_memory` by the same
//! factor (see `super::prepare`), so every window holds the same requests as it would in
//! real time and every threshold (a count per window) means the same.
//!
//! Each client sends its own requests in order, as a real client does; clients run side by
//! side. What each request got is kept for scoring ([`super::score`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::model::{Event, Model};
use super::shop;

/// How the traffic reaches enforcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Through the proxy on this data port.
    Inline,
    /// As a gateway's `/ase/request` and `/ase/response` calls to this data port.
    Sideband,
}

/// What one request got.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    /// Unix milliseconds when it was sent.
    pub sent_ms: i64,
    /// enforcer answered instead of the backend (a block, a decoy, 429), or in sideband
    /// said block.
    pub blocked: bool,
    /// It got no answer at all (a transport error).
    pub failed: bool,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(http)
}

/// Sends every event of `model` to `data` at `speed` times real time; one outcome per
/// event, in the model's order.
pub async fn run(model: &Model, mode: Mode, data: SocketAddr, speed: f64) -> Vec<Outcome> {
    let start = Instant::now();
    let start_ms = jiff::Timestamp::now().as_millisecond();
    let http = client();
    let mut per_client: HashMap<u32, Vec<(usize, Event)>> = HashMap::new();
    for (i, e) in model.events.iter().enumerate() {
        per_client.entry(e.client).or_default().push((i, e.clone()));
    }
    let mut tasks = Vec::with_capacity(per_client.len());
    for (_, events) in per_client {
        let http = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(events.len());
            for (i, e) in events {
                let due = start + Duration::from_secs_f64(e.at_ms as f64 / 1_000.0 / speed);
                tokio::time::sleep_until(due.into()).await;
                let sent_ms = start_ms + start.elapsed().as_millis() as i64;
                let (blocked, failed) = match mode {
                    Mode::Inline => inline(&http, data, &e).await,
                    Mode::Sideband => sideband(&http, data, &e, i).await,
                };
                out.push((
                    i,
                    Outcome {
                        sent_ms,
                        blocked,
                        failed,
                    },
                ));
            }
            out
        }));
    }
    let mut outcomes = vec![Outcome::default(); model.events.len()];
    for t in tasks {
        if let Ok(done) = t.await {
            for (i, o) in done {
                outcomes[i] = o;
            }
        }
    }
    outcomes
}

/// One request through the proxy: (blocked, failed).
async fn inline(http: &HttpClient, data: SocketAddr, e: &Event) -> (bool, bool) {
    let mut req = Request::builder()
        .method(e.method.clone())
        .uri(format!("http://{data}{}", e.target))
        .header("x-forwarded-for", e.ip.to_string())
        .header("host", "shop.example");
    for (k, v) in &e.headers {
        req = req.header(*k, v);
    }
    let Ok(req) = req.body(Full::new(Bytes::from(e.body.clone()))) else {
        return (false, true);
    };
    match http.request(req).await {
        Ok(resp) => {
            let backend = resp.headers().contains_key(shop::MARK);
            let _ = resp.into_body().collect().await;
            (!backend, false)
        }
        Err(_) => (false, true),
    }
}

/// One request as a gateway reports it: the request call, and when allowed the response
/// call with what the backend answers. (blocked, failed).
async fn sideband(http: &HttpClient, data: SocketAddr, e: &Event, i: usize) -> (bool, bool) {
    let mut headers = vec![json!({ "host": "shop.example" })];
    headers.extend(e.headers.iter().map(|(k, v)| json!({ *k: v })));
    if !e.body.is_empty() {
        headers.push(json!({ "content-length": e.body.len().to_string() }));
    }
    let call = json!({
        "source_ip": e.ip.to_string(), "source_port": 40_000 + (i % 20_000), "method": e.method.as_str(),
        "url": e.target, "http_version": "1.1", "headers": headers,
    });
    let id = format!("replay-{i}");
    let decided = post(http, data, "/ase/request", &id, call).await;
    let Some(status) = decided else {
        return (false, true);
    };
    if status != 200 {
        return (status == 403, false);
    }
    let (code, body) = shop::answer(&e.method, &e.target, e.body.as_bytes());
    let response = json!({
        "response_code": code.as_u16(), "response_status": code.canonical_reason().unwrap_or(""),
        "http_version": "1.1",
        "headers": [ { "content-type": "application/json" }, { "content-length": body.len().to_string() } ],
    });
    let logged = post(http, data, "/ase/response", &id, response).await;
    (false, logged.is_none())
}

async fn post(
    http: &HttpClient,
    data: SocketAddr,
    path: &str,
    id: &str,
    body: Value,
) -> Option<u16> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{data}{path}"))
        .header("content-type", "application/json")
        .header("x-correlationid", id)
        .body(Full::new(Bytes::from(body.to_string())))
        .ok()?;
    let resp = http.request(req).await.ok()?;
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    Some(status)
}

/// One IoA as the management API lists it.
#[derive(Debug, Clone)]
pub struct Detected {
    pub client_type: String,
    pub client_id: String,
    pub name: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// Every IoA the instance with management port `management` keeps (`GET /v4/abs/attack`).
pub async fn detected(
    management: SocketAddr,
    access_key: &str,
    secret_key: &str,
) -> Result<Vec<Detected>, String> {
    let http = client();
    let req = Request::builder()
        .uri(format!("http://{management}/v4/abs/attack"))
        .header("x-ase-access-key", access_key)
        .header("x-ase-secret-key", secret_key)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = http.request(req).await.map_err(|e| e.to_string())?;
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    let text = |a: &Value, k: &str| a[k].as_str().unwrap_or_default().to_string();
    Ok(v["attacks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|a| Detected {
            client_type: text(a, "client_type"),
            client_id: text(a, "client_id"),
            name: text(a, "name"),
            at_ms: text(a, "detected_at")
                .parse::<jiff::Timestamp>()
                .map_or(0, |t| t.as_millisecond()),
        })
        .collect())
}
