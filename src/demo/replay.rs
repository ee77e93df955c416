//! Replaying a [`Model`] through a running enforcer, inline (requests through the proxy, to
//! the sample backend) or sideband (the two calls a gateway makes, with the status and size
//! the sample backend gives), `speed` times faster than real time.
//!
//! Time compression is honest only with the detection windows compressed alike: the
//! config the run uses divides `ioa_window`, `ioa_block_ttl` and `decoy_memory` by the same
//! factor (see `super::prepare`), so every window holds the same requests as it would in
//! real time and every threshold (a count per window) means the same.
//!
//! Each client sends its requests at their times, with at most a few in flight at once
//! (as a client with a small connection pool does); clients run side by side. What each
//! request got is kept for scoring ([`super::score`]).
//!
//! A replay that falls behind (a busy machine) does not catch up in a burst, which would
//! make a steady client look like a flood: once any request is more than [`BEHIND`] late,
//! the whole schedule is shifted back by the delay, so every client slows alike and the
//! rates within a window stay those of the model.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
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

/// Requests one client may have in flight at once: a fast client does not wait for each
/// answer before it sends the next (at a compressed speed, one that did could not keep its
/// rate on a busy machine), while a slow one's requests still go one after the other.
const PER_CLIENT: usize = 8;

/// How late a request may be sent before the whole schedule is shifted back.
const BEHIND: Duration = Duration::from_millis(200);

/// What a run got: one outcome per event, in the model's order, and what the first few
/// requests that got no answer failed with.
#[derive(Debug, Default)]
pub struct Run {
    pub outcomes: Vec<Outcome>,
    pub errors: Vec<String>,
    /// How far the schedule was shifted back because the replay fell behind.
    pub behind: Duration,
}

/// Sends every event of `model` to `data` at `speed` times real time.
pub async fn run(model: &Model, mode: Mode, data: SocketAddr, speed: f64) -> Run {
    let start = Instant::now();
    let start_ms = jiff::Timestamp::now().as_millisecond();
    let http = client();
    let shared = Arc::new(Mutex::new(Run {
        outcomes: vec![Outcome::default(); model.events.len()],
        errors: Vec::new(),
        behind: Duration::ZERO,
    }));
    let mut per_client: HashMap<u32, Vec<(usize, Event)>> = HashMap::new();
    for (i, e) in model.events.iter().enumerate() {
        per_client.entry(e.client).or_default().push((i, e.clone()));
    }
    // Microseconds the schedule has been shifted back (see the module doc).
    let shift = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(per_client.len());
    for (_, events) in per_client {
        let (http, shared, shift) = (http.clone(), shared.clone(), shift.clone());
        tasks.push(tokio::spawn(async move {
            let slots = Arc::new(tokio::sync::Semaphore::new(PER_CLIENT));
            let mut sent = Vec::with_capacity(events.len());
            for (i, e) in events {
                let planned = Duration::from_secs_f64(e.at_ms as f64 / 1_000.0 / speed);
                let due = |shift: &std::sync::atomic::AtomicU64| {
                    start + planned + Duration::from_micros(shift.load(Relaxed))
                };
                tokio::time::sleep_until(due(&shift).into()).await;
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                if Instant::now().saturating_duration_since(due(&shift)) > BEHIND {
                    // Now becomes this request's time, for everyone's later requests too
                    // (a maximum, so clients late together shift it once).
                    let behind = start.elapsed().saturating_sub(planned);
                    shift.fetch_max(behind.as_micros() as u64, Relaxed);
                }
                let (http, shared) = (http.clone(), shared.clone());
                sent.push(tokio::spawn(async move {
                    let sent_ms = start_ms + start.elapsed().as_millis() as i64;
                    let got = match mode {
                        Mode::Inline => inline(&http, data, &e).await,
                        Mode::Sideband => sideband(&http, data, &e, i).await,
                    };
                    drop(slot);
                    let mut run = shared.lock().unwrap_or_else(|p| p.into_inner());
                    let outcome = match got {
                        Ok(blocked) => Outcome {
                            sent_ms,
                            blocked,
                            failed: false,
                        },
                        Err(why) => {
                            if run.errors.len() < 5 {
                                run.errors.push(why);
                            }
                            Outcome {
                                sent_ms,
                                blocked: false,
                                failed: true,
                            }
                        }
                    };
                    run.outcomes[i] = outcome;
                }));
            }
            for t in sent {
                let _ = t.await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut run = shared.lock().unwrap_or_else(|p| p.into_inner());
    run.behind = Duration::from_micros(shift.load(Relaxed));
    std::mem::take(&mut *run)
}

/// One request through the proxy: whether enforcer answered it itself.
async fn inline(http: &HttpClient, data: SocketAddr, e: &Event) -> Result<bool, String> {
    let mut req = Request::builder()
        .method(e.method.clone())
        .uri(format!("http://{data}{}", e.target))
        .header("x-forwarded-for", e.ip.to_string())
        .header("host", "shop.example");
    for (k, v) in &e.headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(e.body.clone())))
        .map_err(|err| err.to_string())?;
    let resp = http.request(req).await.map_err(|err| format!("{err:?}"))?;
    let backend = resp.headers().contains_key(shop::MARK);
    resp.into_body()
        .collect()
        .await
        .map_err(|err| format!("body: {err:?}"))?;
    Ok(!backend)
}

/// One request as a gateway reports it: the request call, and when allowed the response
/// call with what the backend answers. Whether enforcer said block.
async fn sideband(
    http: &HttpClient,
    data: SocketAddr,
    e: &Event,
    i: usize,
) -> Result<bool, String> {
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
    let status = post(http, data, "/ase/request", &id, call).await?;
    if status != 200 {
        return Ok(status == 403);
    }
    let (code, body) = shop::answer(&e.method, &e.target, e.body.as_bytes());
    let response = json!({
        "response_code": code.as_u16(), "response_status": code.canonical_reason().unwrap_or(""),
        "http_version": "1.1",
        "headers": [ { "content-type": "application/json" }, { "content-length": body.len().to_string() } ],
    });
    post(http, data, "/ase/response", &id, response).await?;
    Ok(false)
}

async fn post(
    http: &HttpClient,
    data: SocketAddr,
    path: &str,
    id: &str,
    body: Value,
) -> Result<u16, String> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{data}{path}"))
        .header("content-type", "application/json")
        .header("x-correlationid", id)
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let resp = http
        .request(req)
        .await
        .map_err(|e| format!("{path}: {e:?}"))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("{path} body: {e:?}"))?;
    Ok(status)
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
