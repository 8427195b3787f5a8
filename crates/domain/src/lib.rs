//! The domain, pure and synchronous: no I/O, no async, no clock.
//!
//! - [`user`]: the `User` aggregate ([`esr_kernel::Aggregate`]). The command side runs it.
//! - [`profile`]: the profile read model ([`esr_kernel::View`]). The projector side runs it.
//! - [`friendship`]: the policy that makes friendship mutual, as a function from an event to
//!   the commands it causes.
//! - [`group`]: the `Group` aggregate and its view.
//! - [`most_liked`]: likes per object, a tally over every user's activity.
//!
//! Adding an event: add its payload to `esr_schema::user` (or `group`) and its variant to the
//! `domain_events!` list there, then handle it in `evolve` and each view's `apply`; the
//! compiler lists every match to update.

pub mod friendship;
pub mod group;
pub mod most_liked;
mod personal;
pub mod profile;
pub mod user;

pub use group::{Group, GroupCommand, GroupRejection, GroupView};
pub use most_liked::MostLiked;
pub use profile::Profile;
pub use user::{User, UserCommand, UserRejection, may_read_history};
