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
    #[error(
        "event type {event_type:?} v{schema_version} is newer than this build, which knows v{known}"
    )]
    NewerSchemaVersion {
        event_type: String,
        schema_version: u16,
        known: u16,
    },
    #[error("an event of a {found} stream, not of a {expected} stream")]
    OtherAggregate { expected: String, found: String },
}

impl DecodeError {
    /// A type or schema version this build does not know yet: written by a newer build (a
    /// rolling upgrade), to be handled by one that knows it, not poison.
    pub fn is_from_a_newer_build(&self) -> bool {
        matches!(
            self,
            DecodeError::UnknownType(_) | DecodeError::NewerSchemaVersion { .. }
        )
    }
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
    if schema_version > P::SCHEMA_VERSION {
        return Err(DecodeError::NewerSchemaVersion {
            event_type: P::TYPE.to_owned(),
            schema_version,
            known: P::SCHEMA_VERSION,
        });
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

/// A payload of a type this build does not know, as JSON: the named form keeps every field's
/// name, so an operator reads it without the type (binary fields show as arrays of bytes).
pub fn decode_untyped(bytes: &[u8]) -> Result<serde_json::Value, DecodeError> {
    rmp_serde::from_slice(bytes).map_err(|source| DecodeError::Payload {
        event_type: "(undeclared)".to_owned(),
        schema_version: 0,
        source,
    })
}
