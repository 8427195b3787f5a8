//! The profile read model: what `GET /users/{id}` serves, folded from a user's events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use esr_schema::{Action, EventEnvelope, UserEvent, UserId};
use serde::{Deserialize, Serialize};

use crate::personal::PersonalInfo;

/// A user's profile as the query side shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: UserId,
    pub name: String,
    pub surname: String,
    pub birth_date: Option<NaiveDate>,
    pub friends: BTreeSet<UserId>,
    pub liked: BTreeSet<String>,
    pub activity_count: u64,
    pub last_activity: Option<LastActivity>,
    /// The version of the last event applied.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastActivity {
    pub action: Action,
    pub object: String,
    pub at: DateTime<Utc>,
}

/// Why stored read-model fields do not make a profile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("profile field {field:?} is invalid: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl Profile {
    fn personal_info(&mut self) -> PersonalInfo<'_> {
        PersonalInfo {
            name: &mut self.name,
            surname: &mut self.surname,
            birth_date: &mut self.birth_date,
        }
    }

    pub fn empty(user_id: UserId) -> Self {
        Self {
            user_id,
            name: String::new(),
            surname: String::new(),
            birth_date: None,
            friends: BTreeSet::new(),
            liked: BTreeSet::new(),
            activity_count: 0,
            last_activity: None,
            version: 0,
        }
    }

    /// Apply one event. The caller decides whether the event is the next one (version checks
    /// live with the storage); this fold only records the version it was given.
    pub fn apply(&mut self, envelope: &EventEnvelope, event: &UserEvent) {
        self.version = envelope.version;
        match event {
            UserEvent::Registered(e) => {
                self.personal_info().register(e);
            }
            UserEvent::PersonalInfoChanged(e) => self.personal_info().change(e),
            UserEvent::ActedOn(e) => {
                self.activity_count += 1;
                match e.action {
                    Action::Like => {
                        self.liked.insert(e.object.clone());
                    }
                    Action::Dislike => {
                        self.liked.remove(&e.object);
                    }
                    Action::Kick | Action::Comment | Action::Share => {}
                }
                self.last_activity = Some(LastActivity {
                    action: e.action,
                    object: e.object.clone(),
                    at: envelope.occurred_at,
                });
            }
            UserEvent::FriendAdded(e) => {
                self.friends.insert(e.friend_id.clone());
            }
            UserEvent::FriendRemoved(e) => {
                self.friends.remove(&e.friend_id);
            }
        }
    }

    /// The read model as flat Redis-Hash-style fields, each readable with `HGETALL`.
    pub fn to_fields(&self) -> BTreeMap<String, String> {
        let json = |v: &dyn erased::Json| v.to_json();
        BTreeMap::from([
            ("user_id".into(), self.user_id.to_string()),
            ("name".into(), self.name.clone()),
            ("surname".into(), self.surname.clone()),
            (
                "birth_date".into(),
                self.birth_date.map(|d| d.to_string()).unwrap_or_default(),
            ),
            ("friends".into(), json(&self.friends)),
            ("liked".into(), json(&self.liked)),
            ("activity_count".into(), self.activity_count.to_string()),
            ("last_activity".into(), json(&self.last_activity)),
            ("version".into(), self.version.to_string()),
        ])
    }

    pub fn from_fields(fields: &BTreeMap<String, String>) -> Result<Self, FieldError> {
        fn get<'a>(
            fields: &'a BTreeMap<String, String>,
            field: &'static str,
        ) -> Result<&'a str, FieldError> {
            fields.get(field).map(String::as_str).ok_or(FieldError {
                field,
                reason: "missing".into(),
            })
        }
        fn parse<T: std::str::FromStr>(field: &'static str, raw: &str) -> Result<T, FieldError>
        where
            T::Err: std::fmt::Display,
        {
            raw.parse().map_err(|e: T::Err| FieldError {
                field,
                reason: e.to_string(),
            })
        }
        fn json<T: serde::de::DeserializeOwned>(
            field: &'static str,
            raw: &str,
        ) -> Result<T, FieldError> {
            serde_json::from_str(raw).map_err(|e| FieldError {
                field,
                reason: e.to_string(),
            })
        }
        let birth_date = match get(fields, "birth_date")? {
            "" => None,
            raw => Some(parse("birth_date", raw)?),
        };
        Ok(Self {
            user_id: parse("user_id", get(fields, "user_id")?)?,
            name: get(fields, "name")?.to_owned(),
            surname: get(fields, "surname")?.to_owned(),
            birth_date,
            friends: json("friends", get(fields, "friends")?)?,
            liked: json("liked", get(fields, "liked")?)?,
            activity_count: parse("activity_count", get(fields, "activity_count")?)?,
            last_activity: json("last_activity", get(fields, "last_activity")?)?,
            version: parse("version", get(fields, "version")?)?,
        })
    }
}

mod erased {
    /// JSON text for the list-valued fields; serializing these plain types cannot fail.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}
