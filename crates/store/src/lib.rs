//! The storage port: what the application needs from an event store, as small traits.
//!
//! | trait | what for |
//! |---|---|
//! | [`event::EventStore`] | append with an expected version, read a stream's events |
//! | [`category::CategoryLog`] | read the category streams from a position or a time |
//! | [`subscription::Subscriptions`] | consumer groups: read, ack, claim, dead-letter |
//! | [`snapshot::SnapshotStore`] | aggregate snapshots, newest wins |
//! | [`read_model::ReadModels`] | read models written only over the version they expect |
//! | [`tally::Tallies`] | counts over many streams, each stream's events counted once |
//! | [`lease::Leases`] | partitions divided between a group's instances, writes fenced |
//!
//! [`Store`] is all of them at once, implemented for every type that implements each.
//! Adapters: [`memory::MemoryStore`] here, the Redis Streams adapter in its own crate. Both
//! pass the suite in [`contract`] (feature `contract`).

pub mod category;
#[cfg(feature = "contract")]
pub mod contract;
mod error;
pub mod event;
pub mod lease;
pub mod memory;
pub mod read_model;
pub mod snapshot;
pub mod subscription;
pub mod tally;

pub use category::{CategoryEntry, CategoryLog, EntryId};
pub use error::StoreError;
pub use event::{AppendOutcome, AppendRequest, EventStore, ExpectedVersion, Idempotency, NewEvent};
pub use lease::{Fence, HeldLeases, LeaseHolder, Leases};
pub use memory::MemoryStore;
pub use read_model::{Checkpoint, ReadModel, ReadModelWrite, ReadModels, generation_name};
pub use snapshot::{Snapshot, SnapshotStore};
pub use subscription::{DeadLetter, Delivery, EntryRef, GroupStats, Subscriptions};
pub use tally::{Tallies, TallyCount, TallyWrite};

/// Every storage capability at once; what services hold as `Arc<dyn Store>`.
pub trait Store:
    EventStore + CategoryLog + Subscriptions + SnapshotStore + ReadModels + Tallies + Leases
{
}

impl<T: EventStore + CategoryLog + Subscriptions + SnapshotStore + ReadModels + Tallies + Leases>
    Store for T
{
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
