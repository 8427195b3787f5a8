//! The event schema: what happened to a user, how it is wrapped, and how it travels.
//!
//! - [`UserId`]: validated ids that can never reach into a Redis key's hash tag.
//! - [`UserEvent`]: the events of the three category streams ([`Category`]).
//! - [`codec`]: MessagePack in the named (map) form, with upcasting of older schema versions.
//! - [`EventEnvelope`] and [`StoredEvent`]: the metadata every stored event carries.
//! - [`entry`]: the plain stream-entry fields (`type`, `user_id`, `version`, ...) that let a
//!   person read a stream with `redis-cli XREAD`.
//!
//! Nothing here does I/O.

mod category;
pub mod codec;
pub mod entry;
mod envelope;
mod event;
mod ids;

pub use category::Category;
pub use codec::DecodeError;
pub use entry::EntryError;
pub use envelope::{EventEnvelope, StoredEvent};
pub use event::{
    ActedOn, Action, FriendAdded, FriendRemoved, PersonalInfoChanged, Registered, UserEvent,
};
pub use ids::{InvalidUserId, UserId};
