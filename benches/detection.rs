//! Detection benchmark: the labelled traffic model (`enforcer::demo::model`) replayed
//! through the real binary, inline and then sideband, at the shipped config's default
//! detection settings, time compressed. Prints, per population and overall: attackers
//! caught, requests until caught, benign clients flagged and blocked, benign requests
//! blocked. Run: `cargo bench --bench detection` (`DETECTION_MINUTES`, `DETECTION_SPEED`,
//! `DETECTION_SEED` override 30 minutes, 20x, seed 1).

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::path::Path;

use enforcer::demo::bench;
use enforcer::demo::model::{Plan, Schedule};
use enforcer::demo::replay::Mode;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes its own flags; `--list` and friends need nothing from us.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_enforcer"));
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let plan = Plan {
        seed: env("DETECTION_SEED", 1),
        minutes: env("DETECTION_MINUTES", 30),
        schedule: Schedule::Spread,
        round: 0,
    };
    let speed: f64 = env("DETECTION_SPEED", 20.0);
    for mode in [Mode::Inline, Mode::Sideband] {
        let score = bench::run(bin, &config, mode, plan, speed).unwrap();
        println!("{score}");
    }
}
