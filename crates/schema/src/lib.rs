//! The event schema: names, ids, each aggregate's events, how they are wrapped and how they
//! travel.
//!
//! - [`AggregateType`], [`Category`]: open, checked names; [`EntityId`] and [`StreamId`]:
//!   ids that can never reach into a Redis key's hash tag.
//! - [`EventPayload`], [`DomainEvent`], [`domain_events!`]: one table per aggregate's events
//!   (type names, schema versions, categories, upcasting).
//! - [`user`] and [`group`]: the two aggregates' events.
//! - [`codec`]: MessagePack in the named (map) form, with upcasting of older schema versions.
//! - [`EventEnvelope`] and [`StoredEvent`]: the metadata every stored event carries.
//! - [`entry`]: the plain stream-entry fields (`type`, `user_id`, `version`, ...) that let a
//!   person read a stream with `redis-cli XREAD`.
//!
//! Nothing here does I/O.

pub mod codec;
mod domain_event;
pub mod entry;
mod envelope;
pub mod group;
mod ids;
mod names;
pub mod user;

pub use codec::DecodeError;
pub use domain_event::{DomainEvent, EventPayload};
pub use entry::EntryError;
pub use envelope::{EventEnvelope, StoredEvent};
pub use group::{GroupCreated, GroupEvent, MemberJoined, MemberLeft};
pub use ids::{EntityId, GroupId, ID_PATTERN, InvalidId, StreamId, UserId};
pub use names::{AggregateType, Category, InvalidName};
pub use user::{
    ActedOn, Action, FriendAdded, FriendRemoved, PersonalInfoChanged, Registered, UserEvent,
};
