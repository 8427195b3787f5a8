//! Tallies: counts keyed by anything (an object, a name), fed by many streams, each event
//! counted once. Each count carries the version of the event it comes from and each stream's
//! position (the version of its last event counted) is kept, so a redelivered event, a
//! claimed one, or two consumers never count twice. The top keys are found in work bounded
//! by the number asked for, however many keys have been counted.

use async_trait::async_trait;
use esr_schema::StreamId;

use crate::{Fence, Result};

/// One conditioned change of [`Tallies::apply_tallies`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TallyWrite {
    pub source: StreamId,
    /// The source stream's stored position this change replaces (0: never counted).
    pub expected: u64,
    /// The position after this change: the version of the last event it counts.
    pub version: u64,
    /// What the events after `expected` up to `version` add, in version order.
    pub counts: Vec<TallyCount>,
}

/// What one event adds to one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TallyCount {
    /// The version of the event counted.
    pub version: u64,
    pub key: String,
    pub amount: i64,
}

#[async_trait]
pub trait Tallies: Send + Sync {
    /// How far tally `name` has counted each stream (0: not at all), in order.
    async fn tally_positions(&self, name: &str, sources: &[StreamId]) -> Result<Vec<u64>>;

    /// Each change's position moved only if its stream's position is the expected one;
    /// otherwise its outcome is `Conflict` with the stored position. Whatever the outcome, an
    /// event counted before is never counted again, and a conflicting change may count the
    /// events of its own that were not counted yet (a later change's position then covers
    /// them). One outcome per change, in order; the outer error is for the store failing as a
    /// whole.
    ///
    /// With a [`Fence`], a change is refused (`Fenced`) unless the fence holds its source
    /// stream's partition; a count into another partition is refused once that partition has
    /// seen a newer token of the source's partition.
    async fn apply_tallies(
        &self,
        name: &str,
        writes: Vec<TallyWrite>,
        fence: &Fence,
    ) -> Result<Vec<Result<()>>>;

    /// The count of `key` (0 when never counted).
    async fn tally_count(&self, name: &str, key: &str) -> Result<i64>;

    /// Up to `limit` keys with a count above 0: highest count first, then key ascending. Its
    /// work grows with `limit` (and the partitions), not with the keys counted.
    async fn tally_top(&self, name: &str, limit: usize) -> Result<Vec<(String, i64)>>;
}
