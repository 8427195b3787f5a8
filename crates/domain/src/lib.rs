//! The domain, pure and synchronous: no I/O, no async, no clock.
//!
//! - [`user`]: the `User` aggregate. `decide` turns a command into events or a rejection;
//!   `evolve` folds events into state. The command side runs these.
//! - [`profile`]: the profile read model and its fold. The projector side runs it.
//! - [`friendship`]: the policy that makes friendship mutual, as a function from an event to
//!   the commands it causes.
//!
//! Adding an event: add it to `esr_schema::UserEvent` (and the codec), then handle it in
//! `User::evolve` and `Profile::apply`; the compiler lists every match to update.

pub mod friendship;
mod personal;
pub mod profile;
pub mod user;

pub use profile::Profile;
pub use user::{Command, Context, Rejection, User};
