//! The `User` aggregate: one consistency boundary per user id.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use esr_kernel::{Actor, Aggregate, Context, RejectionKind};
use esr_schema::{
    ActedOn, Action, EntityId, FriendAdded, FriendRemoved, PersonalInfoChanged, Registered,
    StreamId, UserEvent, UserId,
};
use serde::{Deserialize, Serialize};

use crate::personal::PersonalInfo;

/// What the command side knows about a user: just enough to check every invariant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The version of the last event folded in; 0 for a user with no events.
    pub version: u64,
    pub registered: bool,
    pub name: String,
    pub surname: String,
    pub birth_date: Option<NaiveDate>,
    pub friends: BTreeSet<UserId>,
}

/// What a client (or a policy) asks of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum UserCommand {
    Register {
        name: String,
        surname: String,
        birth_date: Option<NaiveDate>,
    },
    ChangePersonalInfo {
        name: Option<String>,
        surname: Option<String>,
        birth_date: Option<NaiveDate>,
    },
    Act {
        action: Action,
        object: String,
        text: Option<String>,
    },
    AddFriend {
        friend_id: UserId,
        /// Issued by the friendship policy to mirror the friend's own `friend_added`.
        reciprocal: bool,
    },
    RemoveFriend {
        friend_id: UserId,
        reciprocal: bool,
    },
}

/// Why a command was refused. Nothing is written for a refused command.
///
/// Kinds ([`RejectionKind`]): [`UserRejection::NotRegistered`] is not found,
/// [`UserRejection::InvalidField`] invalid, every other variant (a domain rule) a conflict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserRejection {
    #[error("user is not registered")]
    NotRegistered,
    #[error("user is already registered")]
    AlreadyRegistered,
    #[error("a user cannot befriend themselves")]
    FriendWithSelf,
    #[error("user {0} is not registered")]
    FriendNotRegistered(UserId),
    #[error("user {0} is already a friend")]
    AlreadyFriends(UserId),
    #[error("user {0} is not a friend")]
    NotFriends(UserId),
    #[error("user {0} has {MAX_FRIENDS} friends, the most a user may have")]
    TooManyFriends(UserId),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{0}")]
    Forbidden(String),
}

impl esr_kernel::Rejection for UserRejection {
    fn kind(&self) -> RejectionKind {
        match self {
            UserRejection::NotRegistered => RejectionKind::NotFound,
            UserRejection::InvalidField { .. } => RejectionKind::Invalid,
            UserRejection::Forbidden(_) => RejectionKind::Forbidden,
            _ => RejectionKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            UserRejection::NotRegistered => "unknown_user",
            UserRejection::AlreadyRegistered => "already_registered",
            UserRejection::FriendWithSelf => "friend_with_self",
            UserRejection::FriendNotRegistered(_) => "friend_not_registered",
            UserRejection::AlreadyFriends(_) => "already_friends",
            UserRejection::NotFriends(_) => "not_friends",
            UserRejection::TooManyFriends(_) => "too_many_friends",
            UserRejection::InvalidField { .. } => "invalid_field",
            UserRejection::Forbidden(_) => "forbidden",
        }
    }
}

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_OBJECT_CHARS: usize = 200;
pub const MAX_TEXT_CHARS: usize = 2000;
/// The most friends a user has. The user's state (in the command side's cache and snapshot)
/// and profile are written whole on every event of that user, so they must stay small; and
/// anyone may befriend anyone, so without it a crowd could grow one user without end.
pub const MAX_FRIENDS: usize = 1000;
/// Nobody alive was born before this.
pub const EARLIEST_BIRTH_DATE: (i32, u32, u32) = (1900, 1, 1);

impl User {
    fn personal_info(&mut self) -> PersonalInfo<'_> {
        PersonalInfo {
            name: &mut self.name,
            surname: &mut self.surname,
            birth_date: &mut self.birth_date,
        }
    }
}

impl Aggregate for User {
    type Event = UserEvent;
    type Command = UserCommand;
    type Rejection = UserRejection;

    fn version(&self) -> u64 {
        self.version
    }

    /// Befriending needs to know whether the friend is registered.
    fn context_streams(_id: &EntityId, command: &UserCommand) -> Vec<StreamId> {
        match command {
            UserCommand::AddFriend { friend_id, .. } => {
                vec![StreamId::of::<UserEvent>(friend_id.clone())]
            }
            _ => vec![],
        }
    }

    fn evolve(&mut self, event: &UserEvent) {
        self.version += 1;
        match event {
            UserEvent::Registered(e) => {
                self.registered = true;
                self.personal_info().register(e);
            }
            UserEvent::PersonalInfoChanged(e) => self.personal_info().change(e),
            UserEvent::ActedOn(_) => {}
            UserEvent::FriendAdded(e) => {
                self.friends.insert(e.friend_id.clone());
            }
            UserEvent::FriendRemoved(e) => {
                self.friends.remove(&e.friend_id);
            }
        }
    }

    fn decide(
        &self,
        id: &EntityId,
        command: &UserCommand,
        context: &Context,
    ) -> Result<Vec<UserEvent>, UserRejection> {
        authorize(id, command, &context.actor)?;
        if !self.registered && !matches!(command, UserCommand::Register { .. }) {
            return Err(UserRejection::NotRegistered);
        }
        match command {
            UserCommand::Register {
                name,
                surname,
                birth_date,
            } => {
                if self.registered {
                    return Err(UserRejection::AlreadyRegistered);
                }
                Ok(vec![UserEvent::Registered(Registered {
                    name: valid_name("name", name)?,
                    surname: valid_name("surname", surname)?,
                    birth_date: birth_date
                        .map(|d| valid_birth_date(d, context.today))
                        .transpose()?,
                })])
            }
            UserCommand::ChangePersonalInfo {
                name,
                surname,
                birth_date,
            } => {
                if name.is_none() && surname.is_none() && birth_date.is_none() {
                    return Err(UserRejection::InvalidField {
                        field: "body",
                        reason: "give at least one of name, surname, birth_date".into(),
                    });
                }
                let name = name.as_deref().map(|n| valid_name("name", n)).transpose()?;
                let surname = surname
                    .as_deref()
                    .map(|s| valid_name("surname", s))
                    .transpose()?;
                let birth_date = birth_date
                    .map(|d| valid_birth_date(d, context.today))
                    .transpose()?;
                // Only what differs is recorded; asking for the current values changes nothing.
                let change = PersonalInfoChanged {
                    name: name.filter(|n| *n != self.name),
                    surname: surname.filter(|s| *s != self.surname),
                    birth_date: birth_date.filter(|d| Some(*d) != self.birth_date),
                };
                if change == PersonalInfoChanged::default() {
                    Ok(vec![])
                } else {
                    Ok(vec![UserEvent::PersonalInfoChanged(change)])
                }
            }
            UserCommand::Act {
                action,
                object,
                text,
            } => {
                let object = valid_text("object", object, MAX_OBJECT_CHARS)?;
                let text = match (action, text) {
                    (Action::Comment, Some(text)) => {
                        Some(valid_text("text", text, MAX_TEXT_CHARS)?)
                    }
                    (Action::Comment, None) => {
                        return Err(UserRejection::InvalidField {
                            field: "text",
                            reason: "a comment needs a text".into(),
                        });
                    }
                    (_, Some(_)) => {
                        return Err(UserRejection::InvalidField {
                            field: "text",
                            reason: "only a comment has a text".into(),
                        });
                    }
                    (_, None) => None,
                };
                Ok(vec![UserEvent::ActedOn(ActedOn {
                    action: *action,
                    object,
                    text,
                })])
            }
            UserCommand::AddFriend {
                friend_id,
                reciprocal,
            } => {
                if friend_id == id {
                    return Err(UserRejection::FriendWithSelf);
                }
                // A user's stream starts with its registration.
                if !context.exists(&StreamId::of::<UserEvent>(friend_id.clone())) {
                    return Err(UserRejection::FriendNotRegistered(friend_id.clone()));
                }
                if self.friends.contains(friend_id) {
                    // The policy mirroring a friendship that already holds is a no-op, not an error.
                    return if *reciprocal {
                        Ok(vec![])
                    } else {
                        Err(UserRejection::AlreadyFriends(friend_id.clone()))
                    };
                }
                // The mirror side too: the policy then withdraws the initiator's side.
                if self.friends.len() >= MAX_FRIENDS {
                    return Err(UserRejection::TooManyFriends(id.clone()));
                }
                Ok(vec![UserEvent::FriendAdded(FriendAdded {
                    friend_id: friend_id.clone(),
                    reciprocal: *reciprocal,
                })])
            }
            UserCommand::RemoveFriend {
                friend_id,
                reciprocal,
            } => {
                if !self.friends.contains(friend_id) {
                    return if *reciprocal {
                        Ok(vec![])
                    } else {
                        Err(UserRejection::NotFriends(friend_id.clone()))
                    };
                }
                Ok(vec![UserEvent::FriendRemoved(FriendRemoved {
                    friend_id: friend_id.clone(),
                    reciprocal: *reciprocal,
                })])
            }
        }
    }
}

/// A user's event history (who did what, when, with whom) is read by that user or an admin;
/// profiles, groups and rankings are for any authenticated caller.
pub fn may_read_history(actor: &Actor, user: &UserId) -> bool {
    actor.may_act_for(user)
}

/// A user acts on their own stream only (registers with their own id, changes their own info,
/// activity and friendships); an admin acts on anyone's. The friend's side of a friendship
/// (`reciprocal`) is written by the friendship policy, acting as the system, or by an admin.
/// Judged before anything else, so a refusal says nothing about the stream.
fn authorize(id: &EntityId, command: &UserCommand, actor: &Actor) -> Result<(), UserRejection> {
    let reciprocal = matches!(
        command,
        UserCommand::AddFriend {
            reciprocal: true,
            ..
        } | UserCommand::RemoveFriend {
            reciprocal: true,
            ..
        }
    );
    if reciprocal && !actor.is_admin() {
        return Err(UserRejection::Forbidden(format!(
            "{actor} may not write the mirror side of a friendship: the friendship policy does"
        )));
    }
    if !actor.may_act_for(id) {
        return Err(UserRejection::Forbidden(format!(
            "{actor} may act only as themself, not as user {id}"
        )));
    }
    Ok(())
}

fn valid_name(field: &'static str, raw: &str) -> Result<String, UserRejection> {
    valid_text(field, raw, MAX_NAME_CHARS)
}

fn valid_text(field: &'static str, raw: &str, max_chars: usize) -> Result<String, UserRejection> {
    esr_kernel::validate::bounded_text(raw, max_chars)
        .map_err(|reason| UserRejection::InvalidField { field, reason })
}

fn valid_birth_date(date: NaiveDate, today: NaiveDate) -> Result<NaiveDate, UserRejection> {
    let (y, m, d) = EARLIEST_BIRTH_DATE;
    let earliest = NaiveDate::from_ymd_opt(y, m, d).unwrap_or(NaiveDate::MIN);
    if date < earliest || date > today {
        return Err(UserRejection::InvalidField {
            field: "birth_date",
            reason: format!("must be between {earliest} and today"),
        });
    }
    Ok(date)
}
