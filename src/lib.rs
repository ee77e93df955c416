//! enforcer: an API Security Enforcer, wire-compatible with PingIntelligence ASE.
//!
//! # Layout
//! The modules follow a request's path through the process, top to bottom; imports only
//! point down (docs/architecture.md; `tests/it/architecture.rs` fails on a circle):
//!
//! * [`config`]: `ase.conf` and `api/*.json` (ASE's formats) → a validated [`config::Config`].
//! * [`app`]: [`app::App`] owns the components side by side (API table, enforcer, metrics,
//!   sideband state, sessions, persister, cluster), built once from the config.
//! * [`start`]: the start-up order of `enforcer run`, `check` and `demo`: load and
//!   validate the config, build the app, attach the store, start the cluster thread, serve,
//!   shut down.
//! * [`server`]: listeners, the worker model, connection life and graceful shutdown.
//! * [`proxy`]: inline mode, the reverse proxy: handler → forward (over the worker's
//!   backend connections, `proxy::pool`) → respond.
//! * [`sideband`]: sideband mode, ASE's decision service for gateways: wire → handler, and
//!   auth (`/ase/auth`: external authorization for nginx, Caddy, Envoy).
//! * [`pipeline`]: the stateless sequencer both modes drive: `route`, `on_request →
//!   Decision`, `on_response`, `on_complete`, over borrowed components.
//! * [`enforce`]: decisions: identities, deny/allow lists, API patterns, decoys, flow
//!   control and real-time attack detection. Writes nothing into metrics.
//! * [`metrics`]: the one sink ([`metrics::Metrics::record`]): per-API time buckets of
//!   lock-free counters, client and user activity, Prometheus, the IoA log; and the
//!   read-only snapshots reports are built from.
//! * [`reports`]: pure functions from a snapshot and a query to a report.
//! * [`persist`]: the persister thread, above the app it reads: diffs the components and
//!   commits the difference through the store; the restore at start-up.
//! * [`store`]: persistence beside the request path: the [`store::Store`] trait, the
//!   embedded redb store, and the persister handle the app keeps.
//! * [`cluster`]: cluster mode (`redis_url`): the Redis store, shared lists and tokens,
//!   the node registry and its thread, cluster-wide reports and spike counters.
//! * [`admin`]: the management API on its own listener, the dashboard, and the client the
//!   CLI uses to reach a running instance; both sides share the bodies of `admin::wire`.
//! * [`demo`]: `enforcer demo`: a sample backend and the labelled traffic model around the
//!   real server.
//!
//! At the bottom, importing nothing above them:
//!
//! * [`vocab`]: the shared words: [`vocab::Exchange`], [`vocab::ClientKind`] and
//!   [`vocab::ClientId`], [`vocab::Reason`], [`vocab::Verdict`], [`vocab::Ioa`], [`vocab::Mode`],
//!   and [`vocab::Headers`], a request's header fields as the pipeline reads them.
//! * [`backend`]: one backend server, its health and connection quota.
//! * [`memory`]: the memory budget, divided among everything kept per client-chosen value.
//! * [`limits`]: file descriptors, backend connections and requests in flight per client.
//! * [`tls`]: rustls configs (one crypto provider, ring, named explicitly).
//! * [`scim`]: SCIM filter parsing, printing and evaluation (pure; for `userActivities`).
//! * [`shutdown`]: the shutdown signal every listener waits on.
//! * [`sharded`]: per-worker shards for state every worker writes on the request path.
//!
//! `main.rs` is only the command line: it parses the arguments and calls [`start`] or
//! [`admin::client`].

pub mod admin;
pub mod app;
pub mod backend;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod enforce;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod persist;
pub mod pipeline;
pub mod proxy;
pub mod reports;
pub mod scim;
pub mod server;
pub mod sharded;
pub mod shutdown;
pub mod sideband;
pub mod start;
pub mod store;
pub mod tls;
pub mod vocab;
