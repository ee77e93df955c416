//! `enforcer demo`: the product on its shipped config with something to look at, and the
//! labelled traffic that the detection benchmark measures with.
//!
//! [`prepare`] copies the config directory into a scratch directory and adjusts the copy
//! (every API's servers point at the sample backend [`shop`], `X-Forwarded-For` is trusted
//! so the generated clients can come from many addresses, usernames come from an `x-user`
//! header, a decoy API `/admin` and a mobile API `/app` are added, nothing is persisted,
//! the data ports listen on loopback). `enforcer demo` runs inline mode on it as `enforcer
//! run` would, and [`traffic`] sends the labelled traffic of [`model`] through the real
//! listeners and pipeline (nothing is injected into the metrics behind the proxy's back):
//! shoppers, mobile apps, a partner, an office NAT, crawlers, and every kind of attacker,
//! round after round. [`bench`] replays the same model time-compressed through a spawned
//! binary, inline or sideband, and [`score`] says what was caught and who was wrongly
//! flagged or blocked.

pub mod bench;
pub mod model;
pub mod replay;
pub mod score;
pub mod shop;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::app::App;

/// Why the demo could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an API definition: {reason}")]
    Api { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A new directory under the system temp dir with an unpredictable name, created here
/// (never an existing one another user could have prepared).
pub fn scratch_dir() -> std::io::Result<PathBuf> {
    let mut raw = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| std::io::Error::other("no randomness"))?;
    let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("enforcer-demo-{name}"));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// How the demo's copy of the config is set up.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Time compression: the detection windows, block lifetimes and decoy memory are
    /// divided by it (1: real time, as configured).
    pub speed: f64,
    /// Sideband instead of inline (the benchmark measures both).
    pub sideband: bool,
    /// Listen on free ports (tests and benchmarks run beside other instances).
    pub free_ports: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            speed: 1.0,
            sideband: false,
            free_ports: false,
        }
    }
}

/// Writes the demo's copy of `config` into `work` (`work/config`), with every API sent to
/// `backend`. Returns the copy's directory.
pub fn prepare(
    config: &Path,
    work: &Path,
    backend: SocketAddr,
    options: Options,
) -> Result<PathBuf, DemoError> {
    let out = work.join("config");
    let api_out = out.join("api");
    std::fs::create_dir_all(&api_out).map_err(io(&api_out))?;
    let base = std::fs::canonicalize(config).map_err(io(config))?;

    // ase.conf: relative paths were relative to the original; the demo changes a few keys.
    let conf_path = config.join("ase.conf");
    let conf = std::fs::read_to_string(&conf_path).map_err(io(&conf_path))?;
    let mut overrides = vec![
        (
            "mode",
            if options.sideband {
                "sideband"
            } else {
                "inline"
            }
            .to_string(),
        ),
        // A demo is for this machine: its data ports listen on loopback only.
        ("bind_address", "127.0.0.1".to_string()),
        ("enable_xff", "true".to_string()),
        ("store", "none".to_string()),
        // The demo's made-up attackers must never reach a real cluster.
        ("redis_url", String::new()),
        ("data_dir", work.join("data").display().to_string()),
    ];
    if options.sideband {
        // Gateways keep their connections to enforcer open.
        overrides.push(("enable_sideband_keepalive", "true".into()));
    }
    if options.free_ports {
        for key in ["http_ws_port", "https_wss_port", "management_port"] {
            overrides.push((key, "0".into()));
        }
    }
    if options.speed > 1.0 {
        let secs = |real: f64| format!("{}ms", ((real / options.speed) * 1_000.0).round() as u64);
        let defaults = crate::config::conf::IoaThresholds::default();
        overrides.push((
            "ioa_window",
            secs(defaults.window.as_secs_f64().max(10.0 * options.speed)),
        ));
        overrides.push(("ioa_block_ttl", secs(3_600.0)));
        overrides.push(("decoy_memory", secs(86_400.0)));
    }
    let mut lines = Vec::new();
    for line in conf.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match key {
            Some(k) if overrides.iter().any(|(o, _)| *o == k) => continue,
            Some(k) if k.ends_with("_path") => {
                let value = line.split_once('=').map_or("", |(_, v)| v.trim());
                if value.is_empty() || Path::new(value).is_absolute() {
                    lines.push(line.to_string());
                } else {
                    lines.push(format!("{k}={}", base.join(value).display()));
                }
            }
            _ => lines.push(line.to_string()),
        }
    }
    lines.push("; enforcer demo".into());
    lines.extend(overrides.iter().map(|(k, v)| format!("{k}={v}")));
    let conf_out = out.join("ase.conf");
    std::fs::write(&conf_out, lines.join("\n") + "\n").map_err(io(&conf_out))?;

    let server = json!([{ "host": "127.0.0.1", "port": backend.port() }]);
    let api_dir = config.join("api");
    let mut entries: Vec<_> = std::fs::read_dir(&api_dir)
        .map_err(io(&api_dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut v: Value = serde_json::from_str(&text).map_err(|e| DemoError::Api {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let Some(m) = v.get_mut("api_metadata").and_then(Value::as_object_mut) else {
            return Err(DemoError::Api {
                path,
                reason: "no api_metadata object".into(),
            });
        };
        m.insert("servers".into(), server.clone());
        m.insert("health_check".into(), json!(false));
        m.insert("server_ssl".into(), json!(false));
        let no_jwt = m
            .get("jwt")
            .and_then(|j| j.get("location"))
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if no_jwt {
            m.insert("username_header".into(), json!("x-user"));
        }
        if let Some(url) = m.get("url").and_then(Value::as_str).map(str::to_string) {
            m.entry("password_reset_url")
                .or_insert_with(|| json!(format!("{}/password-reset", url.trim_end_matches('/'))));
        }
        let file = api_out.join(path.file_name().unwrap_or_default());
        std::fs::write(&file, v.to_string()).map_err(io(&file))?;
    }
    let decoy = json!({"api_metadata": {
        "protocol": "http", "url": "/admin", "hostname": "*",
        "servers": server,
        "decoy_config": {"decoy_enabled": true, "response_code": 200, "response_def": "OK",
                         "response_message": "{\"status\":\"ok\"}", "decoy_subpaths": []}
    }});
    let file = api_out.join("demo-decoy.json");
    std::fs::write(&file, decoy.to_string()).map_err(io(&file))?;
    // The mobile API of the traffic model: a token on every call, GET and POST only.
    let app = json!({"api_metadata": {
        "protocol": "http", "url": "/app", "hostname": "*",
        "oauth2_access_token": true, "is_token_mandatory": true, "enable_blocking": true,
        "username_header": "x-user",
        "api_pattern_enforcement": {"methods_allowed": ["GET", "POST"]},
        "servers": server, "health_check": false
    }});
    let file = api_out.join("demo-app.json");
    std::fs::write(&file, app.to_string()).map_err(io(&file))?;
    Ok(out)
}

/// How long one round of demo traffic lasts; the next round brings fresh attackers.
pub const ROUND_MINUTES: u32 = 15;

/// Sends the demo's traffic through the proxy at `app`'s data port until the process
/// ends: rounds of the labelled model, attacks early in each round, `speed` times faster
/// than real time (the config was prepared for that speed).
pub async fn traffic(app: Arc<App>, speed: f64) {
    let proxy = loop {
        match app.addresses.get() {
            Some(a) => break SocketAddr::new([127, 0, 0, 1].into(), a.http.port()),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    for round in 0.. {
        let m = model::generate(model::Plan {
            seed: DEMO_SEED,
            minutes: ROUND_MINUTES,
            schedule: model::Schedule::Early,
            round,
        });
        let _ = replay::run(&m, replay::Mode::Inline, proxy, speed).await;
    }
}

/// The demo's seed: the same traffic every time.
pub const DEMO_SEED: u64 = 0x005e_ed0f_de70;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_points_every_api_at_the_backend_and_keeps_paths_working() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let backend: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        let out = prepare(&shipped, dir.path(), backend, Options::default()).unwrap();
        let config = crate::config::Config::load(&out).unwrap();
        assert!(config.settings.enable_xff);
        assert!(config.settings.bind_address.is_loopback());
        assert!(config.settings.management_bind_address.is_loopback());
        assert!(
            config
                .apis
                .iter()
                .any(|a| a.decoy.enabled && a.url == "/admin")
        );
        for api in &config.apis {
            assert!(
                api.servers.iter().all(|s| s.port == 4567),
                "{}: {:?}",
                api.id,
                api.servers
            );
        }
        let shop = config.apis.iter().find(|a| a.id == "shop").unwrap();
        assert_eq!(
            shop.password_reset_url.as_deref(),
            Some("/shop/password-reset")
        );
        assert!(shop.username_header.is_some());
        assert!(
            config
                .apis
                .iter()
                .any(|a| a.url == "/app" && a.is_token_mandatory)
        );
        // The TLS files resolve from the copy.
        App::new(config).unwrap();

        // Compressed time: the windows and lifetimes shrink alike.
        let fast = tempfile::tempdir().unwrap();
        let options = Options {
            speed: 30.0,
            sideband: true,
            free_ports: true,
        };
        let out = prepare(&shipped, fast.path(), backend, options).unwrap();
        let s = crate::config::Config::load(&out).unwrap().settings;
        assert_eq!(s.ioa.window, Duration::from_secs(20));
        assert_eq!(s.ioa_block_ttl, Duration::from_secs(120));
        assert_eq!(s.mode, crate::config::Mode::Sideband);
        assert_eq!(s.http_ws_port, 0);
    }
}
