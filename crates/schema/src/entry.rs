//! The fields of a stream entry.
//!
//! Besides the MessagePack `payload`, an entry carries plain fields a person can read with
//! `redis-cli XREAD`, as in the post: `type`, `user_id`, `version`, `event_id`, `occurred_at`.

use chrono::{DateTime, SecondsFormat, Utc};
use uuid::Uuid;

use crate::{EventEnvelope, StoredEvent, UserId};

pub const TYPE: &str = "type";
pub const USER_ID: &str = "user_id";
pub const VERSION: &str = "version";
pub const EVENT_ID: &str = "event_id";
pub const OCCURRED_AT: &str = "occurred_at";
pub const SCHEMA_VERSION: &str = "schema_version";
pub const CORRELATION_ID: &str = "correlation_id";
pub const CAUSATION_ID: &str = "causation_id";
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

pub fn to_fields(event: &StoredEvent) -> Fields {
    let e = &event.envelope;
    let text = |name: &str, value: String| (name.to_owned(), value.into_bytes());
    vec![
        text(TYPE, e.event_type.clone()),
        text(USER_ID, e.user_id.to_string()),
        text(VERSION, e.version.to_string()),
        text(EVENT_ID, e.event_id.to_string()),
        text(OCCURRED_AT, format_time(e.occurred_at)),
        text(SCHEMA_VERSION, e.schema_version.to_string()),
        text(CORRELATION_ID, e.correlation_id.clone()),
        text(CAUSATION_ID, e.causation_id.clone()),
        (PAYLOAD.to_owned(), event.payload.clone()),
    ]
}

pub fn from_fields(fields: &[(String, Vec<u8>)]) -> Result<StoredEvent, EntryError> {
    let raw = |name: &'static str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
            .ok_or(EntryError::MissingField(name))
    };
    let text = |name: &'static str| {
        raw(name).and_then(|bytes| {
            std::str::from_utf8(bytes).map_err(|_| EntryError::InvalidField {
                field: name,
                reason: "not UTF-8".into(),
            })
        })
    };
    let invalid = |field: &'static str| {
        move |e: &dyn std::fmt::Display| EntryError::InvalidField {
            field,
            reason: e.to_string(),
        }
    };
    let envelope = EventEnvelope {
        event_type: text(TYPE)?.to_owned(),
        user_id: UserId::parse(text(USER_ID)?).map_err(|e| invalid(USER_ID)(&e))?,
        version: text(VERSION)?.parse().map_err(|e| invalid(VERSION)(&e))?,
        event_id: Uuid::parse_str(text(EVENT_ID)?).map_err(|e| invalid(EVENT_ID)(&e))?,
        occurred_at: DateTime::parse_from_rfc3339(text(OCCURRED_AT)?)
            .map_err(|e| invalid(OCCURRED_AT)(&e))?
            .with_timezone(&Utc),
        schema_version: text(SCHEMA_VERSION)?
            .parse()
            .map_err(|e| invalid(SCHEMA_VERSION)(&e))?,
        correlation_id: text(CORRELATION_ID)?.to_owned(),
        causation_id: text(CAUSATION_ID)?.to_owned(),
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
                user_id: UserId::parse("1").unwrap(),
                version: 3,
                event_type: "acted_on".into(),
                schema_version: 1,
                occurred_at: DateTime::parse_from_rfc3339("2019-12-29T20:12:37.114Z")
                    .unwrap()
                    .with_timezone(&Utc),
                correlation_id: "req-1".into(),
                causation_id: "cmd-1".into(),
            },
            payload: vec![0x80],
        }
    }

    #[test]
    fn fields_round_trip() {
        let event = sample();
        assert_eq!(from_fields(&to_fields(&event)), Ok(event));
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
        assert_eq!(get(USER_ID).as_deref(), Some("1"));
        assert_eq!(get(VERSION).as_deref(), Some("3"));
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

        let mut bad_user = to_fields(&sample());
        bad_user[1].1 = b"a{b}".to_vec();
        assert!(matches!(
            from_fields(&bad_user),
            Err(EntryError::InvalidField { field: USER_ID, .. })
        ));
    }
}
