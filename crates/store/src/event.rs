//! Appending to and reading an aggregate's stream, the source of truth.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use esr_schema::{Category, StoredEvent, StreamId};
use uuid::Uuid;

use crate::Result;

/// What the writer believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must have no events yet.
    NoStream,
    /// The stream's last event must have exactly this version (0 is the same as `NoStream`).
    Exactly(u64),
}

impl ExpectedVersion {
    pub fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exactly(v) => v == actual,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exactly(v) => write!(f, "version {v}"),
        }
    }
}

/// An event to append; the store assigns its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u16,
    /// The category stream the event is published to, as its type declares.
    pub category: Category,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    pub causation_id: String,
    /// Who caused it ([`esr_schema::EventEnvelope::actor`]); `None`: nobody recorded.
    pub actor: Option<String>,
    pub payload: Vec<u8>,
}

/// Makes a retried append return the first result instead of appending again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// Unique per stream; chosen by the client or derived from a causing event.
    pub key: String,
    /// How long the record is kept.
    pub ttl: Duration,
    /// What the request asked, so that the key reused for another request is refused
    /// ([`StoreError::KeyReused`](crate::StoreError::KeyReused)). Empty: not compared.
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub idempotency: Option<Idempotency>,
}

/// The result of an append (or of the first append, for a repeated idempotency key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The stream's version after the append.
    pub version: u64,
    /// True when the idempotency key had been used: nothing was appended this time.
    pub duplicate: bool,
}

/// An aggregate's stream: one consistency boundary.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use esr_store::{AppendRequest, EventStore, ExpectedVersion, MemoryStore, NewEvent};
/// use esr_schema::{EntityId, StreamId, user};
///
/// let store = MemoryStore::new();
/// let user = StreamId::new(user::USER, EntityId::parse("1")?);
/// let event = NewEvent {
///     event_id: uuid::Uuid::now_v7(),
///     event_type: "acted_on".into(),
///     schema_version: 1,
///     category: user::USER_ACTIVITY,
///     occurred_at: chrono::Utc::now(),
///     correlation_id: "req-1".into(),
///     causation_id: "cmd-1".into(),
///     actor: Some("user:1".into()),
///     payload: vec![0x80],
/// };
/// let request = AppendRequest {
///     stream: user.clone(),
///     expected: ExpectedVersion::NoStream,
///     events: vec![event.clone()],
///     idempotency: None,
/// };
/// assert_eq!(store.append(request.clone()).await?.version, 1);
/// // The same call delivered again is recognised by its events' ids: applied once.
/// assert!(store.append(request.clone()).await?.duplicate);
/// // Another event with the same expectation is a conflict: the stream is at version 1 now.
/// let another = NewEvent { event_id: uuid::Uuid::now_v7(), ..event };
/// assert!(store.append(AppendRequest { events: vec![another], ..request }).await.is_err());
/// assert_eq!(store.read_stream(&user, 1, 10).await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Append atomically: all events or none, only if `expected` admits the current version,
    /// and to the category stream of each event in the same step.
    ///
    /// A request with an expected version whose first event is already stored right after
    /// that version is the same call delivered twice (a client library resends after a
    /// dropped connection): it is answered as a duplicate with the version it produced. An
    /// [`ExpectedVersion::Any`] request has no such check: give it an idempotency key if it
    /// may be sent twice.
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome>;

    /// Many appends (usually to many streams) in as few round trips as the store can manage.
    /// Each request succeeds or fails on its own, exactly as [`EventStore::append`] would;
    /// the outer error means the batch could not be attempted at all.
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendOutcome>>> {
        let mut outcomes = Vec::with_capacity(requests.len());
        for request in requests {
            outcomes.push(self.append(request).await);
        }
        Ok(outcomes)
    }

    /// Up to `limit` events of the stream from `from_version` (1-based, inclusive), in order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>>;

    /// The stream's current version (0 for a stream with no events).
    async fn stream_version(&self, stream: &StreamId) -> Result<u64>;

    /// The outcome recorded under an idempotency key, if it has not expired; `KeyReused` when
    /// it was recorded for a request with another fingerprint (both non-empty).
    async fn idempotent_outcome(
        &self,
        stream: &StreamId,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<AppendOutcome>>;
}
