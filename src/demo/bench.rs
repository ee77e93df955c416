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

/// The share of a run's length the replay may fall behind and still count: beyond it the
/// windows held fewer requests than the model put in them, and the score would measure the
/// machine's load, not detection.
const FAITHFUL: f64 = 0.1;

/// Replays `plan` through `bin` running on a copy of `config` in `mode` and scores it: at
/// `speed` times real time or, when the machine is too busy for the replay to keep that pace
/// (it fell behind by more than a tenth of the run), again at half the speed, down to 5×.
/// A score is only ever taken from a run that kept its schedule, or the slowest tried.
pub fn run(bin: &Path, config: &Path, mode: Mode, plan: Plan, speed: f64) -> Result<Score, String> {
    let mut speed = speed;
    loop {
        let (score, behind) = run_once(bin, config, mode, plan, speed)?;
        let length = Duration::from_secs(u64::from(plan.minutes) * 60).div_f64(speed);
        if behind.as_secs_f64() <= FAITHFUL * length.as_secs_f64() || speed / 2.0 < 5.0 {
            return Ok(score);
        }
        eprintln!(
            "the replay fell {:.1} s behind its {:.0} s at {speed}x (a busy machine): again at {}x",
            behind.as_secs_f64(),
            length.as_secs_f64(),
            speed / 2.0
        );
        speed /= 2.0;
    }
}

/// One run: `plan` replayed through `bin` running on a copy of `config` in `mode`, `speed`
/// times faster than real time; the score, and how far the replay fell behind.
fn run_once(
    bin: &Path,
    config: &Path,
    mode: Mode,
    plan: Plan,
    speed: f64,
) -> Result<(Score, Duration), String> {
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
        let run = rt.block_on(replay::run(&m, mode, instance.http, speed));
        for e in &run.errors {
            eprintln!("a request got no answer: {e}");
        }
        let (outcomes, behind) = (run.outcomes, run.behind);
        let ioas = rt.block_on(replay::detected(
            instance.management,
            &settings.management_access_key,
            settings.management_secret_key.expose(),
        ))?;
        Ok((score::score(&m, mode, speed, &outcomes, &ioas), behind))
    })();
    let _ = std::fs::remove_dir_all(&work);
    rt.shutdown_background();
    result
}
