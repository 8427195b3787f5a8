//! The application layer: what the services wire up, kept out of the binaries so the
//! all-in-one binary and the separate services share every line.
//!
//! - [`module`]: a domain registered once ([`Module`]); the sides serve what their modules
//!   declare. [`social`] is the users-and-groups domain as one.
//! - [`auth`]: who is calling (bearer JWTs, or nobody with `AUTH=off`), as an actor.
//! - [`command`]: the command runtime for any aggregate: load (snapshot + later events),
//!   decide, append with an expected version; retries, `If-Match`, idempotency.
//! - [`projector`]: the consumer-group runtime, the per-stream projection runtime for views
//!   and tallies, and the friendship policy.
//! - [`query`]: views, time travel, event history, tallies.
//! - [`http`]: the axum routers and the JSON error contract.
//! - [`service`]: [`Service`], the builder every binary is: a store, modules, settings, and a
//!   side (or all three) to serve.
//! - [`sides`]: the command, query and projector sides as runnable units.
//! - [`metrics`]: the Prometheus series, named in one place.
//! - [`config`]: flags and environment variables, and opening the configured store.

pub mod auth;
pub mod command;
pub mod config;
pub mod http;
pub mod metrics;
pub mod module;
pub mod projector;
pub mod query;
pub mod read_model;
pub mod service;
pub mod sides;
pub mod social;

pub use command::{CommandService, CommandSettings, Commands};
pub use module::{Module, Modules};
pub use projector::{ProjectorSettings, Projectors};
pub use query::QueryService;
pub use service::Service;
/// For [`bounded_text_schema!`] in other crates.
pub use utoipa;

/// An error and its causes, `a: b: c`, for one log line or answer (the projector, HTTP and
/// the binaries' edge all write them).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
