//! The built-in web dashboard at `/dashboard/` on the management port: static assets
//! compiled into the binary (`assets/dashboard/`), a login form, and browser sessions.
//!
//! The pages read the same JSON reports as every other client of the management API (no
//! second data path). A browser authenticates once with the management credentials
//! (access key as the user name, secret key as the password); the answer is a random
//! session id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` with
//! `management_tls`). API calls carrying that cookie are accepted only with the
//! `X-Enforcer-Dashboard: 1` header, which a cross-site form cannot add: together with
//! SameSite that keeps other sites from acting through a logged-in browser.
//!
//! Sessions live in memory ([`super::sessions`]).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderName, HeaderValue, LOCATION, SET_COOKIE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use super::{Body, body, error, json, not_allowed};
use crate::app::App;

/// Where the dashboard is served.
pub const PREFIX: &str = "/dashboard";
/// The session cookie.
const COOKIE_NAME: &str = "enforcer_session";
/// The header every cookie-authenticated API call must carry.
pub const CSRF_HEADER: &str = "x-enforcer-dashboard";

/// The embedded assets: path under `/dashboard/`, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../assets/dashboard/index.html"),
    ),
    (
        "login.html",
        "text/html; charset=utf-8",
        include_bytes!("../../assets/dashboard/login.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/dashboard/app.css"),
    ),
];

/// The session id in the request's cookies.
fn session_id(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE_NAME)?.strip_prefix('='))
}

/// The user of the browser session that sent this API call, if it has one and the call
/// carries the dashboard header.
pub fn api_user(app: &App, headers: &http::HeaderMap) -> Option<String> {
    if headers.get(CSRF_HEADER).map(HeaderValue::as_bytes) != Some(b"1") {
        return None;
    }
    app.sessions.user(session_id(headers)?)
}

/// Serves everything under [`PREFIX`].
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no page {path}"),
        );
    };
    let user = session_id(req.headers()).and_then(|id| app.sessions.user(id));
    match (req.method().clone(), rest) {
        (Method::GET, "") => redirect("/dashboard/"),
        (Method::GET, "/" | "/index.html") if user.is_none() => redirect("/dashboard/login.html"),
        (Method::GET, "/login.html") if user.is_some() => redirect("/dashboard/"),
        (Method::GET, "/") => asset("index.html"),
        (Method::POST, "/login") => login(&app, req).await,
        (_, "/login") => not_allowed("POST"),
        (Method::POST, "/logout") => logout(&app, req.headers()),
        (_, "/logout") => not_allowed("POST"),
        (Method::GET, "/api/session") => match api_user(&app, req.headers()) {
            Some(user) => session_info(&app, &user),
            None => error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no dashboard session: log in at /dashboard/login.html".into(),
            ),
        },
        (Method::GET, name) => asset(name.trim_start_matches('/')),
        _ => not_allowed("GET"),
    }
}

fn asset(name: &str) -> Response<Body> {
    let Some((_, kind, bytes)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no page /dashboard/{name}"),
        );
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(bytes)));
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    secure_headers(h);
    resp
}

/// Every dashboard answer: nothing from elsewhere may load, nothing may frame it.
fn secure_headers(h: &mut http::HeaderMap) {
    h.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; connect-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        HeaderName::from_static("referrer-policy"),
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn redirect(to: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    resp.headers_mut()
        .insert(LOCATION, HeaderValue::from_static(to));
    secure_headers(resp.headers_mut());
    resp
}

/// `POST /dashboard/login` with a form (`username`, `password`): the management access
/// key and secret key, checked like the API's headers.
async fn login(app: &App, req: Request<Incoming>) -> Response<Body> {
    let source = req.extensions().get::<super::Caller>().map(|c| c.peer.ip());
    let form = match body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let (mut user, mut password) = (String::new(), String::new());
    for (k, v) in form_urlencoded::parse(&form) {
        match &*k {
            "username" => user = v.into_owned(),
            "password" => password = v.into_owned(),
            _ => {}
        }
    }
    if !app.credentials.verify(user.as_bytes(), password.as_bytes()) {
        tracing::debug!(user = %user.escape_debug(), "dashboard login refused");
        if let Some(ip) = source {
            app.guard.failed(
                ip,
                jiff::Timestamp::now().as_millisecond(),
                "dashboard login",
            );
        }
        return redirect("/dashboard/login.html?failed=1");
    }
    if let Some(ip) = source {
        app.guard.succeeded(ip);
    }
    let Some(id) = app.sessions.start(&user) else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_randomness",
            "cannot create a session id".into(),
        );
    };
    tracing::info!(user = %user.escape_debug(), "dashboard login");
    let secure = if app.settings.management_tls {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{COOKIE_NAME}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        super::sessions::LIFETIME.as_secs()
    );
    let mut resp = redirect("/dashboard/");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(SET_COOKIE, v);
    }
    resp
}

fn logout(app: &App, headers: &http::HeaderMap) -> Response<Body> {
    if let Some(id) = session_id(headers) {
        app.sessions.end(id);
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("enforcer_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

fn session_info(app: &App, user: &str) -> Response<Body> {
    let s = &app.settings;
    json(
        StatusCode::OK,
        &serde_json::json!({
            "username": user,
            "environment_id": s.environment_id,
            "mode": s.mode.as_str(),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = http::HeaderMap::new();
        h.append(COOKIE, "a=1; enforcer_session=abc; b=2".parse().unwrap());
        assert_eq!(session_id(&h), Some("abc"));
        let mut h = http::HeaderMap::new();
        h.append(COOKIE, "enforcer_sessionx=1".parse().unwrap());
        assert_eq!(session_id(&h), None);
    }
}
