//! The profile read model: what `GET /users/{id}` serves, folded from a user's events.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use esr_kernel::View;
use esr_kernel::fields::{self, FieldError};
use esr_schema::{Action, EntityId, EventEnvelope, UserEvent, UserId};
use serde::{Deserialize, Serialize};

use crate::personal::PersonalInfo;

/// A user's profile as the query side shows it: its JSON answer, its stored form
/// (`fields::to_fields`) and its OpenAPI schema all come from this type. Every field reads as
/// its default when a model stored by an older build lacks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Profile {
    #[schema(value_type = String)]
    pub user_id: UserId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub surname: String,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<NaiveDate>,
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub friends: BTreeSet<UserId>,
    /// The objects liked most recently and not disliked since, newest first, at most
    /// [`Profile::MAX_LIKED`]: the read model is rewritten on every event, so it stays small.
    #[serde(default)]
    pub liked: Vec<String>,
    #[serde(default)]
    pub activity_count: u64,
    pub last_activity: Option<LastActivity>,
    /// The version of the last event applied.
    #[serde(default)]
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LastActivity {
    #[schema(value_type = String, example = "like")]
    pub action: Action,
    pub object: String,
    pub at: DateTime<Utc>,
}

impl Profile {
    /// The most liked objects a profile lists; an older like falls off the list.
    pub const MAX_LIKED: usize = 100;

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
            liked: Vec::new(),
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
                        self.liked.retain(|o| *o != e.object);
                        self.liked.insert(0, e.object.clone());
                        self.liked.truncate(Self::MAX_LIKED);
                    }
                    Action::Dislike => {
                        self.liked.retain(|o| *o != e.object);
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
}

impl View for Profile {
    type Event = UserEvent;
    const NAME: &'static str = "profile";

    /// The group's name from before views were generic: deployments keep their position.
    fn group() -> &'static str {
        "profile_projection"
    }

    fn empty(id: &EntityId) -> Self {
        Profile::empty(id.clone())
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn apply(&mut self, envelope: &EventEnvelope, event: &UserEvent) {
        Profile::apply(self, envelope, event);
    }

    /// Flat Redis-Hash-style fields, each readable with `HGETALL`, derived from the type.
    fn to_fields(&self) -> BTreeMap<String, String> {
        fields::to_fields(self)
    }

    fn from_fields(id: &EntityId, stored: &BTreeMap<String, String>) -> Result<Self, FieldError> {
        fields::from_fields_with(stored, "user_id", id.as_str())
    }
}
