//! The dashboard end to end, in a real headless Chromium driven over WebDriver (Debian's
//! `chromium` and `chromium-driver`, installed by `scripts/test`), against `enforcer demo`
//! on the shipped config: log in, open every page, switch periods and sample sizes,
//! follow deny list → client activity → Back (and Close), attack management → client
//! activity → Close, attack management → a client's IoAs → client activity → Close → Close,
//! remove a deny-list entry, mark an attacker reviewed, count the user activity page's
//! buckets, log out. Each step saves a screenshot in `target/e2e-screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::demo::{Killed, grouped, start_demo};
use crate::support::{admin_client, eventually};

/// chromedriver on a free port and a headless Chromium session through it.
async fn browser() -> (Killed, Client) {
    let port = crate::support::free_port();
    let driver = Killed(
        grouped(&mut Command::new("chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; scripts/test installs it)"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let status = format!("{url}/status");
    assert!(
        eventually(Duration::from_secs(20), || async {
            reqwest::get(&status).await.is_ok()
        })
        .await,
        "chromedriver did not start"
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu",
                     "--disable-background-networking", "--disable-dev-shm-usage",
                     "--window-size=1440,1000"]
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

struct Shots(PathBuf, u32);

impl Shots {
    fn new() -> Shots {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-screenshots");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shots(dir, 0)
    }

    async fn take(&mut self, c: &Client, name: &str) {
        self.1 += 1;
        let png = c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.0.join(format!("{:02}-{name}.png", self.1)), png).unwrap();
    }
}

/// Waits until `page` has rendered its data.
async fn ready(c: &Client, page: &str) {
    let sel = format!("body[data-ready='1'] [data-page='{page}']");
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&sel))
        .await
        .unwrap_or_else(|e| panic!("page {page} never became ready: {e}"));
    let banner = retrying(c, "#error", |e| async move {
        Ok(if e.is_displayed().await? {
            e.text().await?
        } else {
            String::new()
        })
    })
    .await;
    assert!(banner.trim().is_empty(), "{page}: error banner: {banner}");
}

/// Finds `sel` and runs `act` on it, again if the page re-rendered the element in between
/// (the pages refresh themselves every few seconds, so an element can go stale).
async fn retrying<T, F, Fut>(c: &Client, sel: &str, act: F) -> T
where
    F: Fn(fantoccini::elements::Element) -> Fut,
    Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
{
    let mut last = String::new();
    for _ in 0..20 {
        let found = c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(sel))
            .await;
        match found {
            Ok(e) => match act(e).await {
                Ok(v) => return v,
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sel}: {last}");
}

async fn click(c: &Client, sel: &str) {
    retrying(c, sel, |e| async move { e.click().await }).await
}

/// Fills and submits the login form.
async fn log_in(c: &Client, user: &str, password: &str) {
    for (sel, value) in [("#username", user), ("#password", password)] {
        retrying(c, sel, |e| async move { e.send_keys(value).await }).await;
    }
    click(c, "#login").await;
}

async fn text(c: &Client, sel: &str) -> String {
    retrying(c, sel, |e| async move { e.text().await }).await
}

/// The texts of every element matching `sel`, read again if the page re-rendered them.
async fn texts(c: &Client, sel: &str) -> Vec<String> {
    for _ in 0..20 {
        let mut out = Vec::new();
        let mut stale = false;
        for e in c.find_all(Locator::Css(sel)).await.unwrap() {
            match e.text().await {
                Ok(t) => out.push(t.trim().to_string()),
                Err(_) => stale = true,
            }
        }
        if !stale {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{sel}: the elements kept going stale");
}

async fn api(mgmt: SocketAddr, method: Method, path: &str, body: Option<Value>) -> Value {
    let mut req = admin_client().request(method, format!("http://{mgmt}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn deny_listed_ips(mgmt: SocketAddr) -> Vec<String> {
    api(mgmt, Method::GET, "/v4/ase/blacklist", None).await["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() {
    let (_demo, mgmt, _dir) = start_demo(&[]);
    // The demo's first wave of attackers comes within seconds.
    let (login_attacker, prober) = ("198.51.100.7", "198.51.100.9");
    assert!(
        eventually(Duration::from_secs(60), || async {
            let ips = deny_listed_ips(mgmt).await;
            ips.iter().any(|i| i == login_attacker) && ips.iter().any(|i| i == prober)
        })
        .await,
        "the demo's attackers were never deny-listed"
    );
    let (_driver, c) = browser().await;
    let mut shots = Shots::new();
    let base = format!("http://{mgmt}/dashboard/");

    // Not logged in: the login form. A wrong password says so.
    c.goto(&base).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#username"))
        .await
        .unwrap();
    log_in(&c, "admin", "wrong").await;
    // The form comes back with ?failed=1 and says why.
    let failed = eventually(Duration::from_secs(10), || async {
        c.current_url()
            .await
            .is_ok_and(|u| u.query() == Some("failed=1"))
    })
    .await;
    assert!(failed, "a wrong password did not come back to the form");
    assert!(text(&c, "#login-error").await.contains("Wrong"));
    shots.take(&c, "login-failed").await;
    log_in(&c, "admin", "admin").await;

    // Overview: totals and charts from the reports.
    ready(&c, "overview").await;
    let requests = text(&c, "[data-stat='requests']").await;
    assert!(
        requests.chars().any(|ch| ch.is_ascii_digit() && ch != '0'),
        "requests: {requests}"
    );
    assert!(
        !c.find_all(Locator::Css("path.series"))
            .await
            .unwrap()
            .is_empty()
    );
    // A young instance: the chart is the last hour per minute, not a 24-hour flat line.
    let notes = texts(&c, ".panel-head .muted").await;
    assert!(
        notes.iter().any(|n| n == "last hour, per minute"),
        "overview panels: {notes:?}"
    );
    shots.take(&c, "overview").await;

    // APIs, then one API with each period.
    click(&c, "#nav-apis").await;
    ready(&c, "apis").await;
    shots.take(&c, "apis").await;
    click(&c, "tr[data-api='shop'] a").await;
    ready(&c, "api").await;
    for period in ["week", "day"] {
        click(&c, &format!("[data-period='{period}']")).await;
        ready(&c, "api").await;
    }
    shots.take(&c, "api-shop").await;

    // Attack management: every attacker of the demo is listed (the first ones come within
    // seconds; wait for four through the API, then look at the page).
    assert!(
        eventually(Duration::from_secs(60), || async {
            api(mgmt, Method::GET, "/v5/ase/attacks", None).await["count"]
                .as_u64()
                .is_some_and(|n| n >= 4)
        })
        .await,
        "fewer than four attackers were ever listed"
    );
    click(&c, "#nav-attacks").await;
    ready(&c, "attacks").await;
    let rows = c.find_all(Locator::Css("tr.attack-row")).await.unwrap();
    assert!(rows.len() >= 4, "{} attack rows", rows.len());
    shots.take(&c, "attacks").await;
    // Row menu → Client activity → Close returns to the list.
    let row = format!("tr.attack-row[data-client-type='ip'][data-client-id='{prober}']");
    click(&c, &format!("{row} [data-test='menu']")).await;
    click(&c, ".menu:not([hidden]) [data-action='activity']").await;
    ready(&c, "client").await;
    shots.take(&c, "client-from-attacks").await;
    click(&c, "#close").await;
    ready(&c, "attacks").await;
    // A click on the row opens the client's IoAs screen: its IoAs by type and over time
    // under a summary line, whose menu has Client activity; Close there comes back to the
    // IoAs screen, and Close on the IoAs screen to the list.
    click(&c, &format!("{row} td.id-cell")).await;
    ready(&c, "ioas").await;
    let count = text(&c, "#ioa-count").await;
    assert!(
        count.chars().any(|ch| ch.is_ascii_digit() && ch != '0'),
        "IoAs: {count}"
    );
    let types = texts(&c, "[data-pane='ioa-types'] .bar-row").await;
    assert!(!types.is_empty(), "no IoA types on the IoAs screen");
    assert!(
        c.find(Locator::Css("[data-page='ioas'] svg.chart"))
            .await
            .is_ok(),
        "no IoAs-over-time chart"
    );
    shots.take(&c, "ioas").await;
    click(&c, "#ioa-summary [data-test='menu']").await;
    click(&c, ".menu:not([hidden]) [data-action='activity']").await;
    ready(&c, "client").await;
    assert!(c.find(Locator::Css("#crumb-ioas")).await.is_ok());
    shots.take(&c, "client-from-ioas").await;
    click(&c, "#close").await;
    ready(&c, "ioas").await;
    let url = c.current_url().await.unwrap();
    assert!(
        url.fragment().is_some_and(|f| f.starts_with("/ioas/ip/")),
        "Close went to {url}"
    );
    click(&c, "#close").await;
    ready(&c, "attacks").await;
    // Mark reviewed, from the row's menu.
    click(&c, &format!("{row} [data-test='menu']")).await;
    click(&c, ".menu:not([hidden]) [data-action='review']").await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let v = api(mgmt, Method::GET, "/v5/ase/attacks?reviewed=true", None).await;
            v["attacks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["client_id"] == prober)
        })
        .await,
        "the prober was never marked reviewed"
    );

    // Deny list → client activity (the eight panes, each period) → Back.
    click(&c, "#nav-lists").await;
    ready(&c, "lists").await;
    shots.take(&c, "blocklist").await;
    click(&c, &format!("tr[data-id='{login_attacker}'] a.client-link")).await;
    ready(&c, "client").await;
    let titles = texts(&c, "[data-pane] h3").await;
    for pane in [
        "IoAs",
        "Error Codes",
        "Methods",
        "APIs",
        "User",
        "Device Types",
        "Endpoints",
        "IP Address",
    ] {
        assert!(
            titles.iter().any(|t| t.starts_with(pane)),
            "pane {pane} in {titles:?}"
        );
    }
    let accessed = text(&c, "#apis-accessed").await;
    assert!(accessed.contains('1'), "APIs accessed: {accessed}");
    let ioas = texts(&c, "[data-pane='ioas'] .bar-row").await.join(" ");
    assert!(ioas.contains("login_attack"), "IoAs pane: {ioas}");
    for period in ["day", "week", "month", "6months"] {
        click(&c, &format!("[data-period='{period}']")).await;
        ready(&c, "client").await;
        let active = retrying(&c, &format!("[data-period='{period}']"), |e| async move {
            e.attr("class").await
        })
        .await
        .unwrap_or_default();
        assert!(
            active.contains("active"),
            "{period} is not the active period"
        );
        if period == "week" {
            shots.take(&c, "client-activity-week").await;
        }
    }
    assert!(c.find(Locator::Css("#crumb-blocklist")).await.is_ok());
    click(&c, "#back").await;
    ready(&c, "lists").await;
    // Close, too, returns to the Blocklist.
    click(&c, &format!("tr[data-id='{login_attacker}'] a.client-link")).await;
    ready(&c, "client").await;
    click(&c, "#close").await;
    ready(&c, "lists").await;

    // Remove the prober from the deny list.
    click(
        &c,
        &format!("button[data-test='remove'][data-id='{prober}']"),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            !deny_listed_ips(mgmt).await.iter().any(|i| i == prober)
        })
        .await,
        "the entry is still on the deny list"
    );
    ready(&c, "lists").await;
    let gone = c
        .find_all(Locator::Css(&format!("tr[data-id='{prober}']")))
        .await
        .unwrap();
    assert!(gone.is_empty(), "the removed entry is still shown");
    shots.take(&c, "blocklist-after-remove").await;

    // User activities with each sample size.
    click(&c, "#nav-users").await;
    ready(&c, "users").await;
    for sample in ["HOUR", "DAY", "WEEK"] {
        click(&c, &format!("[data-sample='{sample}']")).await;
        ready(&c, "users").await;
        if sample == "HOUR" {
            shots.take(&c, "users-hour").await;
        }
    }
    let failures = text(&c, "[data-stat='sign-on-failures']").await;
    assert!(
        failures.chars().any(|ch| ch.is_ascii_digit() && ch != '0'),
        "failures: {failures}"
    );
    // "7 days" is seven days (and 24 hours, one week); "Last day" by hour is 24 hours.
    for (range, sample, buckets) in [
        ("week", "DAY", "7"),
        ("week", "HOUR", "168"),
        ("week", "WEEK", "1"),
        ("day", "HOUR", "24"),
    ] {
        click(&c, &format!("[data-range='{range}']")).await;
        ready(&c, "users").await;
        click(&c, &format!("[data-sample='{sample}']")).await;
        ready(&c, "users").await;
        let shown = retrying(&c, "[data-page='users'] [data-buckets]", |e| async move {
            e.attr("data-buckets").await
        })
        .await
        .unwrap_or_default();
        assert_eq!(shown, buckets, "{range} by {sample}");
        if (range, sample) == ("week", "DAY") {
            let note = texts(&c, "[data-page='users'] .panel-head .muted")
                .await
                .join(" ");
            assert!(note.contains("7 days"), "{note}");
        }
    }

    // Logout: back to the form, and the session is gone.
    click(&c, "#nav-logout").await;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#login"))
        .await
        .unwrap();
    shots.take(&c, "logged-out").await;
    c.goto(&base).await.unwrap();
    c.wait().for_element(Locator::Css("#login")).await.unwrap();
    c.close().await.unwrap();
}
