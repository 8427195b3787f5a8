//! The application layer: what the services wire up, kept out of the binaries so the
//! all-in-one binary and the separate services share every line.
//!
//! - [`command`]: load a user (snapshot + later events), decide, append with an expected
//!   version; retries, `If-Match`, idempotency.
//! - [`projector`]: the consumer-group runtime and its two handlers, the profile projection
//!   and the friendship policy.
//! - [`query`]: profiles, time travel, event history.
//! - [`http`]: the axum routers and the JSON error contract.
//! - [`sides`]: the command, query and projector sides as runnable units.
//! - [`config`]: flags and environment variables, and opening the configured store.

pub mod command;
pub mod config;
pub mod http;
pub mod projector;
pub mod query;
pub mod sides;

pub use command::{CommandService, CommandSettings};
pub use projector::{ProjectorSettings, Projectors};
pub use query::QueryService;
