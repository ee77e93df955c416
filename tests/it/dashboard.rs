//! The web dashboard's server side: login form, session cookie, the CSRF header on API
//! calls, logout, embedded assets with their security headers. (The pages themselves are
//! driven in a real browser by `scripts/e2e`.)

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::support::{Enforcer, Setup};

fn no_redirects() -> reqwest::Client {
    crate::support::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Posts the login form (values without `&`, `=` or `%`).
async fn login(e: &Enforcer, user: &str, password: &str) -> reqwest::Response {
    no_redirects()
        .post(e.admin_url("/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username={}&password={}",
            user.replace(' ', "+"),
            password.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap()
}

/// A call as the dashboard's page makes it: the session cookie and the dashboard header.
async fn as_page(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    cookie: &str,
    body: Option<serde_json::Value>,
) -> reqwest::Response {
    let mut req = c
        .request(method, url)
        .header(COOKIE, cookie)
        .header("x-enforcer-dashboard", "1");
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_session_csrf_and_logout() {
    use reqwest::Method;
    let e = Enforcer::start(&Setup::inline());
    let c = no_redirects();

    // Without a session the app redirects to the login page; the assets load.
    let r = c.get(e.admin_url("/dashboard/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/dashboard/login.html");
    for (asset, kind) in [
        ("login.html", "text/html"),
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
    ] {
        let r = c
            .get(e.admin_url(&format!("/dashboard/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        let h = r.headers();
        assert!(h["content-type"].to_str().unwrap().starts_with(kind));
        assert!(
            h["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("default-src 'self'")
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
    }
    let r = c
        .get(e.admin_url("/dashboard/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Wrong credentials: back to the form with a flag, no cookie.
    let r = login(&e, "admin", "wrong").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/dashboard/login.html?failed=1");
    assert!(r.headers().get(SET_COOKIE).is_none());

    let r = login(&e, "admin", "admin").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/dashboard/");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    assert!(
        cookie.starts_with("enforcer_session=") && cookie.len() == 17 + 64,
        "{cookie}"
    );

    let r = c
        .get(e.admin_url("/dashboard/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("app.js"));

    // API calls: the cookie alone is not enough (a cross-site form could send it).
    let status = e.admin_url("/v4/ase/status");
    let r = c.get(&status).header(COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = as_page(&c, Method::GET, &status, &cookie, None).await;
    assert_eq!(r.status(), 200);
    let r = as_page(
        &c,
        Method::GET,
        &e.admin_url("/dashboard/api/session"),
        &cookie,
        None,
    )
    .await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["username"], "admin");
    assert_eq!(v["mode"], "inline");
    // userActivities accepts the browser session in place of a bearer token.
    let env = v["environment_id"].as_str().unwrap().to_string();
    let r = as_page(
        &c,
        Method::GET,
        &e.admin_url(&format!("/v1/environments/{env}/userActivities")),
        &cookie,
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    // A made-up session is nobody.
    let r = as_page(
        &c,
        Method::GET,
        &status,
        &format!("enforcer_session={}", "0".repeat(64)),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);

    // Logout ends the session.
    let r = as_page(
        &c,
        Method::POST,
        &e.admin_url("/dashboard/logout"),
        &cookie,
        None,
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = as_page(&c, Method::GET, &status, &cookie, None).await;
    assert_eq!(r.status(), 401);

    // Changing the management secret logs every browser out.
    let set = login(&e, "admin", "admin").await.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    let cookie = set.split(';').next().unwrap().to_string();
    let r = as_page(
        &c,
        Method::PUT,
        &e.admin_url("/v5/ase/credentials"),
        &cookie,
        Some(serde_json::json!({"secret_key": "a much better secret"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = c
        .get(e.admin_url("/dashboard/"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        login(&e, "admin", "a much better secret").await.headers()[LOCATION],
        "/dashboard/"
    );
}
