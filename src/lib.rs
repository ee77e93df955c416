//! enforcer: an API Security Enforcer, wire-compatible with PingIntelligence ASE.
//!
//! # Layout
//! The modules follow a request's path through the process:
//!
//! * [`config`]: `ase.conf` and `api/*.json` (ASE's formats) → a validated [`config::Config`].
//! * [`app`]: the shared state built once from the config ([`app::App`]).
//! * [`tls`]: rustls configs (one crypto provider, ring, named explicitly).
//! * [`server`]: listeners, the worker model, connection life and graceful shutdown.
//! * [`proxy`]: inline mode, the reverse proxy: handler → forward → respond.
//! * [`pipeline`]: the one model of a request both modes share: [`pipeline::Exchange`]
//!   and the phases `route`, `on_request → Decision`, `on_response`, `on_complete`.
//!
//! `main.rs` is only the command line.

pub mod app;
pub mod config;
pub mod pipeline;
pub mod proxy;
pub mod server;
pub mod tls;
