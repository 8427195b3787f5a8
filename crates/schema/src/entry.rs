//! The fields of a stream entry.
//!
//! Besides the MessagePack `payload`, an entry carries plain fields a person can read with
//! `redis-cli XREAD`, as in the post: `type`, `<aggregate>_id` (`user_id`, `group_id`),
//! `version`, `event_id`, `occurred_at`, `actor` (who caused it; empty or absent: nobody
//! recorded). The id field's name says the aggregate type.
//!
//! Two savings keep an event's two copies (its own stream and a category stream) small:
//! - `causation_id` is stored empty when it equals `correlation_id` (a command sent without
//!   `X-Correlation-Id` is both), and read back as the correlation id;
//! - an aggregate stream's entries leave out the id and `version`: its key names the stream
//!   and the entry id (`<version>-0`) is the version ([`from_stream_fields`]).

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::{AggregateType, EntityId, EventEnvelope, StoredEvent, StreamId};

pub const TYPE: &str = "type";
/// How errors name the `<aggregate>_id` field.
pub const STREAM_ID: &str = "<aggregate>_id";
pub const VERSION: &str = "version";
pub const EVENT_ID: &str = "event_id";
pub const OCCURRED_AT: &str = "occurred_at";
pub const SCHEMA_VERSION: &str = "schema_version";
pub const CORRELATION_ID: &str = "correlation_id";
pub const CAUSATION_ID: &str = "causation_id";
pub const ACTOR: &str = "actor";
pub const PAYLOAD: &str = "payload";

/// One stream entry as field/value pairs, in order.
pub type Fields = Vec<(String, Vec<u8>)>;

/// Why stream-entry fields do not make a [`StoredEvent`] (a foreign or corrupt entry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry has no {0:?} field")]
    MissingField(&'static str),
    #[error("entry field {field:?} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

/// `occurred_at` as stored: RFC 3339, microseconds, `Z`.
pub fn format_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `causation_id` as stored: empty when it repeats `correlation_id`.
pub fn stored_causation(envelope: &EventEnvelope) -> &str {
    stored_causation_of(&envelope.correlation_id, &envelope.causation_id)
}

pub fn stored_causation_of<'a>(correlation_id: &str, causation_id: &'a str) -> &'a str {
    if causation_id == correlation_id {
        ""
    } else {
        causation_id
    }
}

/// The name of the field that holds a stream's id in a category entry: `user_id`, `group_id`.
pub fn id_field(aggregate: &AggregateType) -> String {
    format!("{aggregate}_id")
}

/// The aggregate type a field name is the id field of, if it is one.
fn aggregate_of_id_field(name: &str) -> Option<AggregateType> {
    if matches!(name, EVENT_ID | CORRELATION_ID | CAUSATION_ID) {
        return None;
    }
    AggregateType::parse(name.strip_suffix("_id")?).ok()
}

/// A category-stream entry's fields: every field, so the entry reads on its own.
pub fn to_fields(event: &StoredEvent) -> Fields {
    let e = &event.envelope;
    let text = |name: &str, value: String| (name.to_owned(), value.into_bytes());
    vec![
        text(TYPE, e.event_type.clone()),
        text(&id_field(&e.stream.aggregate), e.stream.id.to_string()),
        text(VERSION, e.version.to_string()),
        text(EVENT_ID, e.event_id.to_string()),
        text(OCCURRED_AT, format_time(e.occurred_at)),
        text(SCHEMA_VERSION, e.schema_version.to_string()),
        text(CORRELATION_ID, e.correlation_id.clone()),
        text(CAUSATION_ID, stored_causation(e).to_owned()),
        text(ACTOR, e.actor.clone().unwrap_or_default()),
        (PAYLOAD.to_owned(), event.payload.clone()),
    ]
}

/// A category-stream entry (or any entry that names its stream and version).
pub fn from_fields(fields: &[(String, Vec<u8>)]) -> Result<StoredEvent, EntryError> {
    parse(fields, None)
}

/// An entry of `stream` with entry id `<version>-0`. The id field and `version`, when present
/// (entries written before they were left out), must agree with the key and the entry id.
pub fn from_stream_fields(
    stream: &StreamId,
    version: u64,
    fields: &[(String, Vec<u8>)],
) -> Result<StoredEvent, EntryError> {
    parse(fields, Some((stream, version)))
}

fn utf8<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, EntryError> {
    std::str::from_utf8(bytes).map_err(|_| EntryError::InvalidField {
        field,
        reason: "not UTF-8".into(),
    })
}

fn parse(
    fields: &[(String, Vec<u8>)],
    known: Option<(&StreamId, u64)>,
) -> Result<StoredEvent, EntryError> {
    let raw = |name: &'static str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
            .ok_or(EntryError::MissingField(name))
    };
    let text = |name: &'static str| raw(name).and_then(|bytes| utf8(name, bytes));
    let invalid = |field: &'static str| {
        move |e: &dyn std::fmt::Display| EntryError::InvalidField {
            field,
            reason: e.to_string(),
        }
    };
    let event_type = text(TYPE)?.to_owned();
    let named_stream = fields
        .iter()
        .find_map(|(k, v)| Some((aggregate_of_id_field(k)?, v)));
    let stream = match (named_stream, known) {
        (None, Some((stream, _))) => stream.clone(),
        (None, None) => return Err(EntryError::MissingField(STREAM_ID)),
        (Some((aggregate, id)), _) => {
            let id = EntityId::parse(utf8(STREAM_ID, id)?).map_err(|e| invalid(STREAM_ID)(&e))?;
            StreamId::new(aggregate, id)
        }
    };
    let version = match (raw(VERSION), known) {
        (Err(_), Some((_, version))) => version,
        _ => text(VERSION)?.parse().map_err(|e| invalid(VERSION)(&e))?,
    };
    if let Some((known_stream, known_version)) = known
        && (known_stream != &stream || known_version != version)
    {
        return Err(EntryError::InvalidField {
            field: if known_stream != &stream {
                STREAM_ID
            } else {
                VERSION
            },
            reason: format!(
                "entry says {stream} version {version}, its stream and id say {known_stream} version {known_version}"
            ),
        });
    }
    // In field order, so the first bad field is the one reported.
    let event_id = Uuid::parse_str(text(EVENT_ID)?).map_err(|e| invalid(EVENT_ID)(&e))?;
    let occurred_at = DateTime::parse_from_rfc3339(text(OCCURRED_AT)?)
        .map_err(|e| invalid(OCCURRED_AT)(&e))?
        .with_timezone(&Utc);
    let schema_version = text(SCHEMA_VERSION)?
        .parse()
        .map_err(|e| invalid(SCHEMA_VERSION)(&e))?;
    let correlation_id = text(CORRELATION_ID)?.to_owned();
    let causation_id = match text(CAUSATION_ID)? {
        "" => correlation_id.clone(),
        other => other.to_owned(),
    };
    // Absent (stored before actors were recorded) or empty: nobody recorded.
    let actor = match raw(ACTOR) {
        Ok(bytes) if !bytes.is_empty() => Some(utf8(ACTOR, bytes)?.to_owned()),
        _ => None,
    };
    let envelope = EventEnvelope {
        event_type,
        stream,
        version,
        event_id,
        occurred_at,
        schema_version,
        correlation_id,
        causation_id,
        actor,
    };
    if envelope.version == 0 {
        return Err(EntryError::InvalidField {
            field: VERSION,
            reason: "versions start at 1".into(),
        });
    }
    Ok(StoredEvent {
        envelope,
        payload: raw(PAYLOAD)?.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredEvent {
        StoredEvent {
            envelope: EventEnvelope {
                event_id: Uuid::now_v7(),
                stream: StreamId::new(crate::user::USER, EntityId::parse("1").unwrap()),
                version: 3,
                event_type: "acted_on".into(),
                schema_version: 1,
                occurred_at: DateTime::parse_from_rfc3339("2019-12-29T20:12:37.114Z")
                    .unwrap()
                    .with_timezone(&Utc),
                correlation_id: "req-1".into(),
                causation_id: "cmd-1".into(),
                actor: Some("user:1".into()),
            },
            payload: vec![0x80],
        }
    }

    #[test]
    fn the_actor_is_a_plain_field_and_an_entry_stored_before_actors_reads_with_none() {
        let event = sample();
        let fields = to_fields(&event);
        assert_eq!(get(&fields, ACTOR), Some(&b"user:1"[..]));
        let older: Fields = fields.into_iter().filter(|(k, _)| k != ACTOR).collect();
        let read = from_fields(&older).unwrap();
        assert_eq!(read.envelope.actor, None);
        assert_eq!(read.envelope.event_id, event.envelope.event_id);
    }

    #[test]
    fn fields_round_trip() {
        let event = sample();
        assert_eq!(from_fields(&to_fields(&event)), Ok(event));
    }

    fn get<'a>(fields: &'a Fields, name: &str) -> Option<&'a [u8]> {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn causation_equal_to_correlation_is_stored_empty_and_read_back() {
        let mut event = sample();
        event.envelope.causation_id = event.envelope.correlation_id.clone();
        let fields = to_fields(&event);
        assert_eq!(get(&fields, CAUSATION_ID), Some(&b""[..]));
        assert_eq!(from_fields(&fields), Ok(event.clone()));

        // A different causation is kept as it is.
        let distinct = sample();
        let fields = to_fields(&distinct);
        assert_eq!(get(&fields, CAUSATION_ID), Some(&b"cmd-1"[..]));
    }

    #[test]
    fn stream_entries_take_stream_and_version_from_key_and_id() {
        let event = sample();
        let user = event.envelope.stream.clone();
        let slim: Fields = to_fields(&event)
            .into_iter()
            .filter(|(k, _)| k != "user_id" && k != VERSION)
            .collect();
        assert_eq!(from_fields(&slim), Err(EntryError::MissingField(STREAM_ID)));
        assert_eq!(from_stream_fields(&user, 3, &slim), Ok(event.clone()));

        // An older entry that still names them must agree with its stream and id.
        let full = to_fields(&event);
        assert_eq!(from_stream_fields(&user, 3, &full), Ok(event));
        assert!(matches!(
            from_stream_fields(&user, 4, &full),
            Err(EntryError::InvalidField { field: VERSION, .. })
        ));
        let other = StreamId::new(crate::user::USER, EntityId::parse("2").unwrap());
        assert!(matches!(
            from_stream_fields(&other, 3, &full),
            Err(EntryError::InvalidField {
                field: STREAM_ID,
                ..
            })
        ));
    }

    #[test]
    fn plain_fields_are_readable_text() {
        let fields = to_fields(&sample());
        let get = |k: &str| {
            fields
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get(TYPE).as_deref(), Some("acted_on"));
        assert_eq!(get("user_id").as_deref(), Some("1"));
        assert_eq!(get(VERSION).as_deref(), Some("3"));
    }

    #[test]
    fn the_id_field_names_the_aggregate() {
        let mut event = sample();
        event.envelope.stream = StreamId::new(crate::group::GROUP, EntityId::parse("g1").unwrap());
        let fields = to_fields(&event);
        assert_eq!(get(&fields, "group_id"), Some(&b"g1"[..]));
        assert_eq!(get(&fields, "user_id"), None);
        assert_eq!(from_fields(&fields), Ok(event));
    }

    #[test]
    fn foreign_entries_are_typed_errors() {
        let posts_entry: Fields = vec![
            ("user_id".into(), b"1".to_vec()),
            ("command".into(), b"register".to_vec()),
        ];
        assert_eq!(
            from_fields(&posts_entry),
            Err(EntryError::MissingField(TYPE))
        );

        let mut bad_version = to_fields(&sample());
        bad_version[2].1 = b"three".to_vec();
        assert!(matches!(
            from_fields(&bad_version),
            Err(EntryError::InvalidField { field: VERSION, .. })
        ));

        // The post-style entry of the end-to-end test: bad event id, no correlation id either.
        let mut bad_id = to_fields(&sample());
        bad_id[3].1 = b"not-a-uuid".to_vec();
        bad_id.retain(|(k, _)| k != CORRELATION_ID);
        assert!(matches!(
            from_fields(&bad_id),
            Err(EntryError::InvalidField {
                field: EVENT_ID,
                ..
            })
        ));

        let mut bad_user = to_fields(&sample());
        bad_user[1].1 = b"a{b}".to_vec();
        assert!(matches!(
            from_fields(&bad_user),
            Err(EntryError::InvalidField {
                field: STREAM_ID,
                ..
            })
        ));
    }
}
