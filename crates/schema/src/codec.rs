//! MessagePack payloads in the named (map) form: a field added later is simply absent in older
//! payloads, and decoding never depends on field order.
//!
//! Each event type has a current schema version. Older versions are upcast here, on read, so
//! the rest of the code only ever sees current types.

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::{
    ActedOn, Category, FriendAdded, FriendRemoved, PersonalInfoChanged, Registered, UserEvent,
};

/// Why a payload could not become a [`UserEvent`].
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

/// An encoded payload with what is needed to decode it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    pub event_type: &'static str,
    pub schema_version: u16,
    pub payload: Vec<u8>,
}

/// The schema version [`encode`] writes for each type.
pub fn current_schema_version(event_type: &str) -> Option<u16> {
    match event_type {
        "registered" => Some(2),
        "personal_info_changed" | "acted_on" | "friend_added" | "friend_removed" => Some(1),
        _ => None,
    }
}

/// The category stream an event type is published to, known without decoding the payload.
pub fn category_of_type(event_type: &str) -> Option<Category> {
    match event_type {
        "registered" | "personal_info_changed" => Some(Category::UserUpdates),
        "acted_on" => Some(Category::UserActivity),
        "friend_added" | "friend_removed" => Some(Category::UserFriends),
        _ => None,
    }
}

pub fn encode(event: &UserEvent) -> Result<EncodedEvent, EncodeError> {
    let event_type = event.event_type();
    let payload = match event {
        UserEvent::Registered(p) => named(p),
        UserEvent::PersonalInfoChanged(p) => named(p),
        UserEvent::ActedOn(p) => named(p),
        UserEvent::FriendAdded(p) => named(p),
        UserEvent::FriendRemoved(p) => named(p),
    }
    .map_err(|source| EncodeError { event_type, source })?;
    Ok(EncodedEvent {
        event_type,
        // Every type `UserEvent::event_type` names has a current version.
        schema_version: current_schema_version(event_type).unwrap_or(1),
        payload,
    })
}

fn named<T: Serialize>(payload: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec_named(payload)
}

pub fn decode(
    event_type: &str,
    schema_version: u16,
    payload: &[u8],
) -> Result<UserEvent, DecodeError> {
    let unsupported = || DecodeError::UnsupportedSchemaVersion {
        event_type: event_type.to_owned(),
        schema_version,
    };
    let Some(current) = current_schema_version(event_type) else {
        return Err(DecodeError::UnknownType(event_type.to_owned()));
    };
    if schema_version == 0 || schema_version > current {
        return Err(unsupported());
    }
    let p = Payload {
        event_type,
        schema_version,
        bytes: payload,
    };
    Ok(match (event_type, schema_version) {
        ("registered", 1) => UserEvent::Registered(p.decode::<RegisteredV1>()?.upcast()),
        ("registered", _) => UserEvent::Registered(p.decode::<Registered>()?),
        ("personal_info_changed", _) => {
            UserEvent::PersonalInfoChanged(p.decode::<PersonalInfoChanged>()?)
        }
        ("acted_on", _) => UserEvent::ActedOn(p.decode::<ActedOn>()?),
        ("friend_added", _) => UserEvent::FriendAdded(p.decode::<FriendAdded>()?),
        ("friend_removed", _) => UserEvent::FriendRemoved(p.decode::<FriendRemoved>()?),
        _ => return Err(DecodeError::UnknownType(event_type.to_owned())),
    })
}

struct Payload<'a> {
    event_type: &'a str,
    schema_version: u16,
    bytes: &'a [u8],
}

impl Payload<'_> {
    fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        rmp_serde::from_slice(self.bytes).map_err(|source| DecodeError::Payload {
            event_type: self.event_type.to_owned(),
            schema_version: self.schema_version,
            source,
        })
    }
}

/// `registered` as the post wrote it: `surename`, and no birth date.
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisteredV1 {
    pub name: String,
    pub surename: String,
}

impl RegisteredV1 {
    fn upcast(self) -> Registered {
        Registered {
            name: self.name,
            surname: self.surename,
            birth_date: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::{Action, UserId};

    fn every_event() -> Vec<UserEvent> {
        let friend = UserId::parse("2").unwrap();
        vec![
            UserEvent::Registered(Registered {
                name: "Duffy".into(),
                surname: "Duck".into(),
                birth_date: NaiveDate::from_ymd_opt(1937, 4, 17),
            }),
            UserEvent::Registered(Registered {
                name: "Bugs".into(),
                surname: "Bunny".into(),
                birth_date: None,
            }),
            UserEvent::PersonalInfoChanged(PersonalInfoChanged {
                name: Some("Daffy".into()),
                ..Default::default()
            }),
            UserEvent::ActedOn(ActedOn {
                action: Action::Kick,
                object: "Bugs".into(),
                text: None,
            }),
            UserEvent::ActedOn(ActedOn {
                action: Action::Comment,
                object: "post-7".into(),
                text: Some("What's up, doc?".into()),
            }),
            UserEvent::FriendAdded(FriendAdded {
                friend_id: friend.clone(),
                reciprocal: false,
            }),
            UserEvent::FriendRemoved(FriendRemoved {
                friend_id: friend,
                reciprocal: true,
            }),
        ]
    }

    #[test]
    fn every_event_round_trips() {
        for event in every_event() {
            let encoded = encode(&event).unwrap();
            let decoded =
                decode(encoded.event_type, encoded.schema_version, &encoded.payload).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn the_type_table_agrees_with_each_events_category() {
        for event in every_event() {
            assert_eq!(category_of_type(event.event_type()), Some(event.category()));
        }
    }

    #[test]
    fn payloads_are_maps_keyed_by_field_name() {
        let encoded = encode(&every_event()[0]).unwrap();
        // A named payload contains its field names; a positional one would not.
        let bytes = &encoded.payload;
        for field in ["name", "surname", "birth_date"] {
            assert!(
                bytes.windows(field.len()).any(|w| w == field.as_bytes()),
                "field {field} missing from {bytes:?}"
            );
        }
    }

    #[test]
    fn a_v1_registered_from_the_posts_era_is_upcast() {
        let old = rmp_serde::to_vec_named(&RegisteredV1 {
            name: "Duffy".into(),
            surename: "Duck".into(),
        })
        .unwrap();
        let decoded = decode("registered", 1, &old).unwrap();
        assert_eq!(
            decoded,
            UserEvent::Registered(Registered {
                name: "Duffy".into(),
                surname: "Duck".into(),
                birth_date: None,
            })
        );
    }

    #[test]
    fn a_v2_registered_written_before_birth_date_existed_still_decodes() {
        #[derive(Serialize)]
        struct WithoutBirthDate {
            name: &'static str,
            surname: &'static str,
        }
        let old = rmp_serde::to_vec_named(&WithoutBirthDate {
            name: "Bugs",
            surname: "Bunny",
        })
        .unwrap();
        let UserEvent::Registered(decoded) = decode("registered", 2, &old).unwrap() else {
            panic!("wrong variant");
        };
        assert_eq!(decoded.birth_date, None);
        assert_eq!(decoded.surname, "Bunny");
    }

    #[test]
    fn a_payload_with_an_unknown_extra_field_still_decodes() {
        #[derive(Serialize)]
        struct FromTheFuture {
            friend_id: &'static str,
            since: u32,
        }
        let newer = rmp_serde::to_vec_named(&FromTheFuture {
            friend_id: "2",
            since: 2020,
        })
        .unwrap();
        assert!(matches!(
            decode("friend_added", 1, &newer),
            Ok(UserEvent::FriendAdded(_))
        ));
    }

    #[test]
    fn garbage_bytes_are_a_typed_error() {
        for garbage in [
            &b""[..],
            b"\xff\xff\xff",
            b"not msgpack at all",
            &[0x81, 0xa4],
        ] {
            assert!(matches!(
                decode("registered", 2, garbage),
                Err(DecodeError::Payload { .. })
            ));
        }
    }

    #[test]
    fn a_bad_user_id_inside_a_payload_is_a_typed_error() {
        let bad = rmp_serde::to_vec_named(&FriendAdded {
            friend_id: UserId::parse("ok").unwrap(),
            reciprocal: false,
        })
        .unwrap();
        let tampered: Vec<u8> = bad
            .iter()
            .map(|&b| if b == b'o' { b'{' } else { b })
            .collect();
        assert!(matches!(
            decode("friend_added", 1, &tampered),
            Err(DecodeError::Payload { .. })
        ));
    }

    #[test]
    fn unknown_types_and_versions_are_typed_errors() {
        assert!(matches!(
            decode("teleported", 1, b""),
            Err(DecodeError::UnknownType(_))
        ));
        assert!(matches!(
            decode("registered", 3, b""),
            Err(DecodeError::UnsupportedSchemaVersion { .. })
        ));
        assert!(matches!(
            decode("friend_added", 0, b""),
            Err(DecodeError::UnsupportedSchemaVersion { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            for event_type in ["registered", "personal_info_changed", "acted_on", "friend_added", "friend_removed"] {
                let _ = decode(event_type, 1, &bytes);
            }
        }
    }
}
