use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{DecodeError, DomainEvent, StreamId};

/// The metadata every stored event carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEnvelope {
    /// UUID v7: unique, and sortable by creation time.
    pub event_id: Uuid,
    /// The aggregate instance the event happened to.
    pub stream: StreamId,
    /// 1 for the stream's first event, then 2, 3, ... with no gap.
    pub version: u64,
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    /// Ties together everything one request set off.
    pub correlation_id: String,
    /// The command or event that led directly to this one.
    pub causation_id: String,
    /// Who caused it, as recorded (`user:<subject>`, `system:<cause>`, `anonymous`); `None`
    /// for events stored before actors were recorded.
    pub actor: Option<String>,
}

/// An event as it is stored: envelope plus the encoded payload, decoded on demand so a reader
/// can still see (and dead-letter) an event whose payload it cannot decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub envelope: EventEnvelope,
    pub payload: Vec<u8>,
}

impl StoredEvent {
    /// Decode the payload as one of `E`'s events, upcasting older schema versions.
    pub fn decode<E: DomainEvent>(&self) -> Result<E, DecodeError> {
        let found = &self.envelope.stream.aggregate;
        if *found != E::AGGREGATE {
            return Err(DecodeError::OtherAggregate {
                expected: E::AGGREGATE.to_string(),
                found: found.to_string(),
            });
        }
        E::decode(
            &self.envelope.event_type,
            self.envelope.schema_version,
            &self.payload,
        )
    }
}
