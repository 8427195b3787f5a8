//! The kernel: what a team implements to add an aggregate or a read model, with no storage or
//! service code. Everything here is pure and synchronous; the runtimes in `esr-app` run it.
//!
//! - [`Aggregate`]: a consistency boundary. `decide` turns a command (and the outside facts in
//!   a [`Context`]) into events or a [`Rejection`]; `evolve` folds events into state.
//! - [`View`]: a read model kept per stream, folded from that stream's events, stored as a
//!   flat field map ([`fields`]).
//! - [`Tally`]: counts over many streams keyed by anything (likes per object), each event
//!   counted once.
//!
//! The events themselves, their names, versions and categories, are declared in `esr-schema`
//! ([`esr_schema::domain_events!`]).

mod aggregate;
pub mod fields;
mod tally;
mod view;

pub use aggregate::{Aggregate, Context, Rejection, RejectionKind};
pub use fields::FieldError;
pub use tally::Tally;
pub use view::View;
