//! MessagePack payloads in the named (map) form: a field added later is simply absent in older
//! payloads, and decoding never depends on field order.
//!
//! Each event type has a current schema version ([`EventPayload::SCHEMA_VERSION`]). Older
//! versions are upcast here, on read, so the rest of the code only ever sees current types.

use crate::{Category, DomainEvent, EventPayload};

/// Why a payload could not become an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("event type {event_type:?} has no schema version {schema_version}")]
    UnsupportedSchemaVersion {
        event_type: String,
        schema_version: u16,
    },
    #[error("payload of {event_type:?} v{schema_version} does not decode: {source}")]
    Payload {
        event_type: String,
        schema_version: u16,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error("an event of a {found} stream, not of a {expected} stream")]
    OtherAggregate { expected: String, found: String },
}

/// Why an event could not be encoded. Encoding our own structs cannot fail in practice, but the
/// library says it can, so we say so too rather than panic.
#[derive(Debug, thiserror::Error)]
#[error("payload of {event_type:?} does not encode: {source}")]
pub struct EncodeError {
    pub event_type: &'static str,
    #[source]
    pub source: rmp_serde::encode::Error,
}

/// An encoded payload with what is needed to store and decode it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub event_type: &'static str,
    pub schema_version: u16,
    pub category: Category,
    pub payload: Vec<u8>,
}

pub fn encode<E: DomainEvent>(event: &E) -> Result<EncodedEvent, EncodeError> {
    Ok(EncodedEvent {
        event_type: event.event_type(),
        schema_version: event.schema_version(),
        category: event.category(),
        payload: event.encode_payload()?,
    })
}

/// One payload in the named form (used by [`domain_events!`](crate::domain_events)).
pub fn encode_payload<P: EventPayload>(payload: &P) -> Result<Vec<u8>, EncodeError> {
    rmp_serde::to_vec_named(payload).map_err(|source| EncodeError {
        event_type: P::TYPE,
        source,
    })
}

/// One payload stored at `schema_version`, upcast to the current type when older (used by
/// [`domain_events!`](crate::domain_events)).
pub fn decode_payload<P: EventPayload>(
    schema_version: u16,
    bytes: &[u8],
) -> Result<P, DecodeError> {
    let failed = |source| DecodeError::Payload {
        event_type: P::TYPE.to_owned(),
        schema_version,
        source,
    };
    if schema_version == P::SCHEMA_VERSION {
        return rmp_serde::from_slice(bytes).map_err(failed);
    }
    let upcast = (1..P::SCHEMA_VERSION)
        .contains(&schema_version)
        .then(|| P::upcast(schema_version, bytes))
        .flatten();
    match upcast {
        Some(decoded) => decoded.map_err(failed),
        None => Err(DecodeError::UnsupportedSchemaVersion {
            event_type: P::TYPE.to_owned(),
            schema_version,
        }),
    }
}
