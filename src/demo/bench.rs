//! The detection benchmark's harness: the labelled model replayed through a spawned
//! `enforcer` binary (inline or sideband) on a copy of a config directory, scored.
//!
//! `cargo bench --bench detection` prints its tables; the integration test
//! `detection::labelled_traffic_meets_the_targets` holds the targets. Both use this, so
//! what the test checks is what the benchmark reports.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::model::{self, Plan};
use super::replay::{self, Mode};
use super::score::{self, Score};
use super::{Options, prepare, scratch_dir, shop};

/// A spawned instance, killed when dropped.
struct Instance {
    child: Child,
    http: SocketAddr,
    management: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `bin run --config dir` and waits for its ready line.
fn spawn(bin: &Path, dir: &Path) -> Result<Instance, String> {
    let mut child = Command::new(bin)
        .args(["run", "--config"])
        .arg(dir)
        .env("ENFORCER_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if line.starts_with("enforcer ready:") {
                let _ = tx.send(line);
            }
        }
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        return Err("enforcer did not become ready".into());
    };
    let field = |name: &str| -> Result<SocketAddr, String> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name}= in {line:?}"))
    };
    Ok(Instance {
        http: field("http")?,
        management: field("management")?,
        child,
    })
}

/// Replays `plan` through `bin` running on a copy of `config` in `mode`, `speed` times
/// faster than real time, and scores it.
pub fn run(bin: &Path, config: &Path, mode: Mode, plan: Plan, speed: f64) -> Result<Score, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let backend = shop::start(&rt).map_err(|e| e.to_string())?;
    let work = scratch_dir().map_err(|e| e.to_string())?;
    let result = (|| {
        let options = Options {
            speed,
            sideband: mode == Mode::Sideband,
            free_ports: true,
        };
        let dir = prepare(config, &work, backend, options).map_err(|e| e.to_string())?;
        let settings = crate::config::Config::load(&dir)
            .map_err(|e| e.to_string())?
            .settings;
        let instance = spawn(bin, &dir)?;
        let m = model::generate(plan);
        let outcomes = rt.block_on(replay::run(&m, mode, instance.http, speed));
        let ioas = rt.block_on(replay::detected(
            instance.management,
            &settings.management_access_key,
            settings.management_secret_key.expose(),
        ))?;
        Ok(score::score(&m, mode, speed, &outcomes, &ioas))
    })();
    let _ = std::fs::remove_dir_all(&work);
    rt.shutdown_background();
    result
}
