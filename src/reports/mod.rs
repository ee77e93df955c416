//! Reports: pure functions from a metrics [`Snapshot`](crate::metrics::Snapshot) and a
//! query to a serde structure. No tokio, no hyper: the management API runs them (off the
//! async threads) and serialises the result.
//!
//! * [`window`]: report date ranges, parsed and printed the way ASE does.
//! * [`api_metrics`]: the `api_metrics` report (`GET /v4/abs/metrics`).
//! * [`activity`]: client activity, API activity and attack management (`/v5/ase/...`).
//! * [`user_activities`]: PingOne's `userActivities` (sign-ons, resets, active users),
//!   and the compile step from a SCIM filter to its query.

pub mod activity;
pub mod api_metrics;
pub mod user_activities;
pub mod window;

pub use window::{Window, WindowError};
