//! Aggregate snapshots: a shortcut for loading, never the truth. The newest one wins.

use async_trait::async_trait;
use esr_schema::StreamId;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The version of the last event folded into `state`.
    pub version: u64,
    pub state: Vec<u8>,
}

#[async_trait]
pub trait SnapshotStore: Send + Sync {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>>;

    /// Store `snapshot` unless one at the same or a newer version is stored; true if written.
    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<bool>;
}
