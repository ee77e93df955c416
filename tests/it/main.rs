//! The integration test binary: every test spawns the real `enforcer` binary on free
//! loopback ports with a temp config directory (see `support`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic: that is how they fail

mod activity;
mod architecture;
mod bypass;
mod cluster;
mod concurrency;
mod dashboard;
mod detection;
mod e2e;
mod enforce;
mod faults;
mod gateways;
mod hostile;
mod inline;
mod integrations;
mod operations;
mod persistence;
mod reports;
mod sideband;
mod support;
mod user_activities;
