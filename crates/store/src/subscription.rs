//! Consumer groups: continuous, at-least-once consumption of the category streams, shared by
//! any number of consumers, surviving their crashes.

use std::time::Duration;

use async_trait::async_trait;
use esr_schema::entry::{self, Fields};
use esr_schema::{Category, EntryError, StoredEvent};

use crate::{EntryId, Result};

/// Names one entry of one stream, for acks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryRef {
    pub stream: String,
    pub id: EntryId,
}

/// An entry handed to a consumer. It stays pending for the group until acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub entry: EntryRef,
    /// The partition of the category stream it came from.
    pub partition: u32,
    /// How many times the entry has been handed out, this time included.
    pub deliveries: u64,
    pub fields: Fields,
}

impl Delivery {
    /// The event, or why the entry is not one (a poison entry for the dead-letter stream).
    pub fn event(&self) -> std::result::Result<StoredEvent, EntryError> {
        entry::from_fields(&self.fields)
    }
}

/// An entry a group gave up on, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub group: String,
    pub entry: EntryRef,
    pub deliveries: u64,
    pub reason: String,
    pub fields: Fields,
}

/// How far behind a group is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Entries not yet delivered to the group.
    pub lag: u64,
    /// Entries delivered but not yet acked.
    pub pending: u64,
    /// `lag` is a lower bound: the store could count only this many (Redis after a restart
    /// from its append-only file knows no count until the group has caught up once).
    pub lag_is_lower_bound: bool,
}

#[async_trait]
pub trait Subscriptions: Send + Sync {
    /// Create the group on each category's streams, at the start so it sees all history.
    /// A group that exists already is fine.
    async fn create_group(&self, group: &str, categories: &[Category]) -> Result<()>;

    /// How many partitions the category streams are split into (1: not split).
    fn partition_count(&self) -> u32 {
        1
    }

    /// Up to `count` entries never delivered to the group, waiting up to `block` for one.
    async fn read_new(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>> {
        let all: Vec<u32> = (0..self.partition_count()).collect();
        self.read_new_in(group, consumer, categories, &all, count, block)
            .await
    }

    /// [`Subscriptions::read_new`] on the streams of `partitions` only (those a consumer holds
    /// leases on). Entries that blocked reads of earlier calls brought back may come from
    /// other partitions: a caller that no longer holds theirs leaves them pending.
    async fn read_new_in(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        partitions: &[u32],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Take over up to `count` entries pending longer than `min_idle` (their consumer is
    /// presumably dead). Entries deleted from the stream leave the pending list instead.
    async fn claim_idle(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>> {
        let all: Vec<u32> = (0..self.partition_count()).collect();
        self.claim_idle_in(group, consumer, categories, &all, min_idle, count)
            .await
    }

    /// [`Subscriptions::claim_idle`] on the streams of `partitions` only.
    async fn claim_idle_in(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        partitions: &[u32],
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>>;

    /// Up to `count` entries pending under `consumer` itself (delivered to it, never acked),
    /// oldest first: a consumer restarted under its stable name resumes them at once instead of
    /// waiting for the idle time after which others would claim them.
    async fn read_own_pending(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        count: usize,
    ) -> Result<Vec<Delivery>>;

    /// Remove the group's consumers (other than `keep`) idle at least `idle` with nothing
    /// pending: consumers of processes long gone. Returns how many were removed.
    async fn prune_consumers(
        &self,
        group: &str,
        categories: &[Category],
        idle: Duration,
        keep: &str,
    ) -> Result<u64>;

    /// The group's consumers on the categories' streams, with what each holds pending.
    async fn consumers(&self, group: &str, categories: &[Category]) -> Result<Vec<(String, u64)>>;

    /// Remove from the categories' streams the entries every consumer group on them has been
    /// handed and has acked (never one a group has not read yet or still holds pending; never
    /// a stream no group reads; never an aggregate's own stream). Returns how many went.
    async fn trim_consumed(&self, categories: &[Category]) -> Result<u64>;

    /// Mark entries done for the group.
    async fn ack(&self, group: &str, entries: &[EntryRef]) -> Result<()>;

    /// Record a poison entry in the dead-letter stream with the reason, then ack it.
    async fn dead_letter(&self, group: &str, delivery: &Delivery, reason: &str) -> Result<()>;

    /// The dead-letter stream's entries, oldest first.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>>;

    /// How many entries the dead-letter stream holds. By default it reads them all; a store
    /// that can count without reading overrides it.
    async fn dead_letter_count(&self) -> Result<u64> {
        Ok(self.dead_letters(usize::MAX).await?.len() as u64)
    }

    async fn group_stats(&self, group: &str, categories: &[Category]) -> Result<GroupStats>;

    /// Whether the group exists on every stream of the categories (readiness). By default
    /// from `group_stats`, which refuses a missing group as invalid.
    async fn group_present(&self, group: &str, categories: &[Category]) -> Result<bool> {
        match self.group_stats(group, categories).await {
            Ok(_) => Ok(true),
            Err(crate::StoreError::Invalid(_)) => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// The group's stats for each partition, in partition order (what `group_stats` sums).
    /// By default the whole as one partition.
    async fn partition_stats(
        &self,
        group: &str,
        categories: &[Category],
    ) -> Result<Vec<GroupStats>> {
        Ok(vec![self.group_stats(group, categories).await?])
    }
}
