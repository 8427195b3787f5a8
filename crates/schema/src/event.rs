use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::{Category, UserId};

/// Everything that can happen to a user. Each variant's payload is its own struct, so the
/// codec can version and upcast each one on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserEvent {
    Registered(Registered),
    PersonalInfoChanged(PersonalInfoChanged),
    ActedOn(ActedOn),
    FriendAdded(FriendAdded),
    FriendRemoved(FriendRemoved),
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

/// The user did something to an object (a page, a post, another user's face...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActedOn {
    pub action: Action,
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `reciprocal` marks the mirror event the friendship policy writes on the friend's side, so
/// the policy does not react to its own work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendAdded {
    pub friend_id: UserId,
    #[serde(default)]
    pub reciprocal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FriendRemoved {
    pub friend_id: UserId,
    #[serde(default)]
    pub reciprocal: bool,
}

/// What a user can do to an object. Stored by name, so adding an action never shifts another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

impl UserEvent {
    /// The type name stored beside the payload; the codec dispatches on it.
    pub fn event_type(&self) -> &'static str {
        match self {
            UserEvent::Registered(_) => "registered",
            UserEvent::PersonalInfoChanged(_) => "personal_info_changed",
            UserEvent::ActedOn(_) => "acted_on",
            UserEvent::FriendAdded(_) => "friend_added",
            UserEvent::FriendRemoved(_) => "friend_removed",
        }
    }

    /// The category stream this event is published to.
    pub fn category(&self) -> Category {
        match self {
            UserEvent::Registered(_) | UserEvent::PersonalInfoChanged(_) => Category::UserUpdates,
            UserEvent::ActedOn(_) => Category::UserActivity,
            UserEvent::FriendAdded(_) | UserEvent::FriendRemoved(_) => Category::UserFriends,
        }
    }
}
