//! The demo's sample backend: a small shop and a mobile API, answering the requests of the
//! traffic model ([`super::model`]).
//!
//! [`answer`] is the whole behaviour, as a pure function, so the sideband replay can report
//! the status and size a real backend would have given; [`start`] serves it over HTTP/1.1.
//! Every answer carries [`MARK`], so a client can tell the backend's answers from the ones
//! enforcer gave itself (blocks, decoys), which never carry it.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// The header every backend answer carries.
pub const MARK: &str = "x-demo-backend";

/// The most `download` sends in one answer.
pub const MAX_DOWNLOAD: usize = 16 << 20;

/// What the backend answers: the status and the body.
pub fn answer(method: &Method, path_and_query: &str, body: &[u8]) -> (StatusCode, Bytes) {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    };
    let mut parts = path.trim_start_matches('/').split('/');
    let (api, tail): (&str, Vec<&str>) = (parts.next().unwrap_or(""), parts.collect());
    let json = |status: StatusCode, text: String| (status, Bytes::from(text));
    match (api, method, tail.as_slice()) {
        (_, &Method::GET, ["health"]) => json(StatusCode::OK, r#"{"status":"up"}"#.into()),
        ("app", &Method::GET, ["feed"]) => json(
            StatusCode::OK,
            r#"{"feed":[{"id":1,"title":"new arrivals"},{"id":2,"title":"sale"}]}"#.into(),
        ),
        ("app", &Method::GET, ["profile"]) => {
            json(StatusCode::OK, r#"{"profile":{"tier":"gold"}}"#.into())
        }
        ("app", &Method::POST, ["refresh"]) => json(StatusCode::OK, r#"{"refreshed":true}"#.into()),
        (_, &Method::GET, ["items"] | ["items", ""]) => json(
            StatusCode::OK,
            format!(
                r#"{{"items":[{}]}}"#,
                (1..=20)
                    .map(|i| format!(r#"{{"id":{i},"name":"item {i}"}}"#))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        (_, &Method::GET, ["items", id])
            if id.parse::<u8>().is_ok_and(|i| (1..=20).contains(&i)) =>
        {
            json(StatusCode::OK, format!(r#"{{"id":{id},"price":10}}"#))
        }
        (_, &Method::POST, ["cart"]) => json(StatusCode::CREATED, r#"{"cart":"updated"}"#.into()),
        (_, &Method::GET, ["cart"]) => json(StatusCode::OK, r#"{"cart":[]}"#.into()),
        (_, &Method::POST, ["login"]) => {
            if body.windows(13).any(|w| w == b"password=demo") {
                json(StatusCode::OK, r#"{"login":"ok"}"#.into())
            } else {
                json(StatusCode::UNAUTHORIZED, r#"{"login":"failed"}"#.into())
            }
        }
        (_, &Method::POST, ["password-reset"]) => {
            json(StatusCode::OK, r#"{"reset":"sent"}"#.into())
        }
        (_, &Method::GET, ["flaky"]) if param("fail") == Some("1") => json(
            StatusCode::SERVICE_UNAVAILABLE,
            r#"{"error":"try again"}"#.into(),
        ),
        (_, &Method::GET, ["flaky"]) => json(StatusCode::OK, r#"{"flaky":"ok"}"#.into()),
        (_, &Method::GET, ["download"]) => {
            let n = param("bytes")
                .and_then(|b| b.parse::<usize>().ok())
                .unwrap_or(1024)
                .min(MAX_DOWNLOAD);
            (StatusCode::OK, Bytes::from(vec![b'x'; n]))
        }
        _ => json(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into()),
    }
}

/// Serves [`answer`] on a free loopback port, on `rt`; the port.
pub fn start(rt: &tokio::runtime::Runtime) -> Result<SocketAddr, std::io::Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req| async move { Ok::<_, Infallible>(serve(req).await) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn serve(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let target = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (status, out) = answer(&method, &target, &body);
    let mut resp = Response::new(Full::new(out));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(MARK, HeaderValue::from_static("1"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shop_answers_as_the_model_expects() {
        let get = |p: &str| answer(&Method::GET, p, b"").0.as_u16();
        assert_eq!(get("/shop/items"), 200);
        assert_eq!(get("/shop/items/20"), 200);
        assert_eq!(get("/shop/items/21"), 404);
        assert_eq!(get("/shop/flaky?fail=1"), 503);
        assert_eq!(get("/shop/flaky"), 200);
        assert_eq!(get("/app/feed"), 200);
        assert_eq!(get("/shop/.git"), 404);
        let (s, body) = answer(&Method::GET, "/shop/download?bytes=1000", b"");
        assert_eq!((s.as_u16(), body.len()), (200, 1000));
        let login = |b: &[u8]| answer(&Method::POST, "/shop/login", b).0.as_u16();
        assert_eq!(login(b"user=a&password=demo"), 200);
        assert_eq!(login(b"user=a&password=typo"), 401);
    }
}
