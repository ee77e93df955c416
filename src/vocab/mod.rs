//! The shared vocabulary: the words every layer uses to talk about a request, defined once
//! at the bottom of the crate. It imports nothing of ours, so any module may import it and
//! no import loop can run through it.
//!
//! * [`Mode`]: inline or sideband.
//! * [`exchange`]: [`Exchange`], the facts about one request and its response, the same in
//!   both modes; its [`Verdict`] and [`Upstream`].
//! * [`client`]: [`ClientKind`] and [`ClientId`], the one model of "a client identifier"
//!   (address, OAuth token, session cookie, API key, username), parsed and printed here.
//! * [`reason`]: [`Reason`], why enforcer stopped a request; Prometheus labels, report names
//!   and docs derive from it.
//! * [`ioa`]: [`Ioa`], the indicators of attack real-time detection raises.
//! * [`headers`]: [`Headers`], a request's header fields as the pipeline reads them, from
//!   hyper's map inline or in place from a sideband call's JSON.

pub mod client;
pub mod exchange;
pub mod headers;
pub mod ioa;
pub mod mode;
pub mod reason;

pub use client::{ApiKey, ClientId, ClientKind};
pub use exchange::{Exchange, UNKNOWN_CLIENT, Upstream, Verdict, unix_secs};
pub use headers::Headers;
pub use ioa::{Ioa, IoaRecord};
pub use mode::Mode;
pub use reason::Reason;
