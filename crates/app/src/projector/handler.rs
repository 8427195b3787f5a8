//! What the runtime hands events to.

use async_trait::async_trait;
use esr_schema::{Category, StoredEvent};
use esr_store::{Fence, StoreError};

/// Why a handler could not apply an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later (a version race, a downstream system down): the entry stays
    /// pending, up to the delivery limit.
    #[error("transient: {0}")]
    Transient(String),
    /// The store did not answer or refused the write (memory full, no replica): the entry
    /// stays pending whatever its delivery count, since an outage says nothing about it.
    #[error("store unavailable: {0}")]
    StoreUnavailable(String),
    /// Will never work: the entry goes to the dead-letter stream.
    #[error("{0}")]
    Poison(String),
    /// This instance no longer holds the lease of the entry's partition (its write was
    /// fenced): the entry stays pending, whatever its delivery count, for the holder.
    #[error("partition not held: {0}")]
    NotHeld(String),
    /// A type or schema version this build does not know (a newer build wrote it): the entry
    /// stays pending, whatever its delivery count, for a build that knows it.
    #[error("from a newer build: {0}")]
    FromNewerBuild(String),
}

impl HandlerError {
    /// Why a payload did not decode, as the runtime must treat it.
    pub fn from_decode(error: esr_schema::DecodeError) -> Self {
        if error.is_from_a_newer_build() {
            Self::FromNewerBuild(error.to_string())
        } else {
            Self::Poison(error.to_string())
        }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => Self::StoreUnavailable(e.to_string()),
            StoreError::Fenced { .. } => Self::NotHeld(e.to_string()),
            StoreError::Conflict { .. } => Self::Transient(e.to_string()),
            StoreError::Corrupt { .. } | StoreError::Invalid(_) | StoreError::KeyReused { .. } => {
                Self::Poison(e.to_string())
            }
        }
    }
}

/// One reaction to events: a projection or a policy. Each has its own consumer group.
///
/// The runtime hands over events whose entries parse; decoding the payload is the handler's,
/// since only it knows which aggregate's events it reads. An undecodable payload is
/// [`HandlerError::Poison`].
#[async_trait]
pub trait Handler: Send + Sync {
    /// The consumer group, one per handler.
    fn group(&self) -> &str;
    fn categories(&self) -> &[Category];
    async fn handle(&self, stored: &StoredEvent) -> Result<(), HandlerError>;

    /// A batch, one outcome per event in order. By default one event at a time; a handler
    /// that can coalesce (one write per stream, say) overrides it. `fence` holds the leases of
    /// the partitions the runtime handed the events from: a handler that writes through the
    /// store passes it on, so a write made after the lease ran out is refused.
    async fn handle_batch(
        &self,
        events: &[StoredEvent],
        fence: &Fence,
    ) -> Vec<Result<(), HandlerError>> {
        let _ = fence;
        let mut outcomes = Vec::with_capacity(events.len());
        for stored in events {
            outcomes.push(self.handle(stored).await);
        }
        outcomes
    }
}
