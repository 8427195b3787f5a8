//! The user's events: the post's three category streams.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{AggregateType, Category, EventPayload, UserId, domain_events};

pub const USER: AggregateType = AggregateType::declare("user");
/// Registration and personal-info changes.
pub const USER_UPDATES: Category = Category::declare("user_updates");
/// Actions on objects: like, dislike, kick, comment, ...
pub const USER_ACTIVITY: Category = Category::declare("user_activity");
/// Friends added and removed.
pub const USER_FRIENDS: Category = Category::declare("user_friends");

domain_events! {
    /// Everything that can happen to a user. Each variant's payload is its own struct, so the
    /// codec can version and upcast each one on its own.
    pub enum UserEvent for USER, categories [USER_UPDATES, USER_ACTIVITY, USER_FRIENDS] {
        Registered(Registered),
        PersonalInfoChanged(PersonalInfoChanged),
        ActedOn(ActedOn),
        FriendAdded(FriendAdded),
        FriendRemoved(FriendRemoved),
    }
}

/// A user joined. Schema version 2; version 1 (the post's shape) spelled `surename` and had no
/// birth date, and is upcast on read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub name: String,
    pub surname: String,
    #[serde(default)]
    pub birth_date: Option<NaiveDate>,
}

impl EventPayload for Registered {
    const TYPE: &'static str = "registered";
    const SCHEMA_VERSION: u16 = 2;
    const CATEGORY: Category = USER_UPDATES;

    fn upcast(
        schema_version: u16,
        payload: &[u8],
    ) -> Option<Result<Self, rmp_serde::decode::Error>> {
        (schema_version == 1)
            .then(|| rmp_serde::from_slice::<RegisteredV1>(payload).map(RegisteredV1::upcast))
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

/// Personal info changed; only the fields that changed are present.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalInfoChanged {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
}

impl EventPayload for PersonalInfoChanged {
    const TYPE: &'static str = "personal_info_changed";
    const CATEGORY: Category = USER_UPDATES;
}

/// The user did something to an object (a page, a post, another user's face...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActedOn {
    pub action: Action,
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl EventPayload for ActedOn {
    const TYPE: &'static str = "acted_on";
    const CATEGORY: Category = USER_ACTIVITY;
}

/// `reciprocal` marks the mirror event the friendship policy writes on the friend's side, so
/// the policy does not react to its own work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendAdded {
    pub friend_id: UserId,
    #[serde(default)]
    pub reciprocal: bool,
}

impl EventPayload for FriendAdded {
    const TYPE: &'static str = "friend_added";
    const CATEGORY: Category = USER_FRIENDS;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRemoved {
    pub friend_id: UserId,
    #[serde(default)]
    pub reciprocal: bool,
}

impl EventPayload for FriendRemoved {
    const TYPE: &'static str = "friend_removed";
    const CATEGORY: Category = USER_FRIENDS;
}

/// What a user can do to an object. Stored by name, so adding an action never shifts another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Like,
    Dislike,
    Kick,
    Comment,
    Share,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Like,
        Action::Dislike,
        Action::Kick,
        Action::Comment,
        Action::Share,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Like => "like",
            Action::Dislike => "dislike",
            Action::Kick => "kick",
            Action::Comment => "comment",
            Action::Share => "share",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;
    use crate::codec::{DecodeError, encode};
    use crate::{DomainEvent, UserId};

    fn decode(
        event_type: &str,
        schema_version: u16,
        payload: &[u8],
    ) -> Result<UserEvent, DecodeError> {
        UserEvent::decode(event_type, schema_version, payload)
    }

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
            assert_eq!(encoded.schema_version, event.schema_version());
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn every_variant_maps_to_a_declared_category_and_a_unique_type() {
        let events = every_event();
        let types: std::collections::BTreeSet<&str> =
            events.iter().map(|e| e.event_type()).collect();
        assert_eq!(
            types.len(),
            UserEvent::TYPES.len(),
            "every variant is in every_event()"
        );
        for event in &events {
            assert!(
                UserEvent::CATEGORIES.contains(&event.category()),
                "{event:?}"
            );
            assert_eq!(encode(event).unwrap().category, event.category());
        }
        let unique: std::collections::BTreeSet<&&str> = UserEvent::TYPES.iter().collect();
        assert_eq!(unique.len(), UserEvent::TYPES.len());
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
        let newer = decode("registered", 3, b"").unwrap_err();
        assert!(
            matches!(newer, DecodeError::NewerSchemaVersion { known: 2, .. }),
            "{newer:?}"
        );
        assert!(newer.is_from_a_newer_build());
        assert!(
            decode("teleported", 1, b"")
                .unwrap_err()
                .is_from_a_newer_build()
        );
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
