//! enforcer: an API Security Enforcer, wire-compatible with PingIntelligence ASE.
//!
//! # Layout
//! The modules follow a request's path through the process:
//!
//! * [`config`]: `ase.conf` and `api/*.json` (ASE's formats) → a validated [`config::Config`].
//! * [`app`]: the shared state built once from the config ([`app::App`]).
//! * [`tls`]: rustls configs (one crypto provider, ring, named explicitly).
//! * [`memory`]: the memory budget, divided among everything kept per client-chosen value.
//! * [`limits`]: file descriptors, backend connections and requests in flight per client,
//!   bounded so that no client can exhaust the process.
//! * [`server`]: listeners, the worker model, connection life and graceful shutdown.
//! * [`proxy`]: inline mode, the reverse proxy: handler → forward → respond.
//! * [`sideband`]: sideband mode, ASE's decision service for gateways: wire → handler, and
//!   auth (`/ase/auth`: external authorization for nginx, Caddy, Envoy).
//! * [`pipeline`]: the one model of a request both modes share: [`pipeline::Exchange`]
//!   and the phases `route`, `on_request → Decision`, `on_response`, `on_complete`.
//! * [`enforce`]: decisions: identities, deny/allow lists, API patterns, decoys, flow
//!   control and real-time attack detection.
//! * [`metrics`]: the only writer: per-API time buckets of lock-free counters, and the
//!   read-only snapshots reports are built from.
//! * [`reports`]: pure functions from a snapshot and a query to a report.
//! * [`store`]: persistence beside the request path: the [`store::Store`] trait, the
//!   embedded redb store, and the thread that flushes changed state to it.
//! * [`cluster`]: cluster mode (`redis_url`): the Redis store, shared lists and tokens,
//!   the node registry, cluster-wide reports and spike counters.
//! * [`scim`]: SCIM filter parsing, printing and evaluation (pure; for `userActivities`).
//! * [`admin`]: the management API on its own listener (reports now, operations later),
//!   and the client the CLI uses to reach a running instance.
//!
//! * [`demo`]: `enforcer demo`: a sample backend and generated traffic around the real
//!   server, so the dashboard has something to show.
//!
//! `main.rs` is only the command line.

pub mod admin;
pub mod app;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod enforce;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod reports;
pub mod scim;
pub mod server;
pub mod sideband;
pub mod store;
pub mod tls;
