//! The `Group` aggregate: users join groups of a fixed capacity. The proof that a second
//! aggregate needs no storage or runtime code: its events (`esr_schema::group`), this file,
//! and the routes that speak HTTP for it.

use std::collections::{BTreeMap, BTreeSet};

use esr_kernel::fields::{self, FieldError};
use esr_kernel::{Actor, Aggregate, Context, RejectionKind, View};
use esr_schema::group::GroupFilled;
use esr_schema::{
    EntityId, EventEnvelope, GroupCreated, GroupEvent, MemberJoined, MemberLeft, StreamId,
    UserEvent, UserId,
};
use serde::{Deserialize, Serialize};

pub const MAX_CAPACITY: u32 = 10_000;
pub const MAX_GROUP_NAME_CHARS: usize = 100;

/// What the command side knows about a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub version: u64,
    pub created: bool,
    pub capacity: u32,
    pub members: BTreeSet<UserId>,
    /// Who created it (absent in snapshots taken before owners were recorded).
    #[serde(default)]
    pub owner: Option<UserId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum GroupCommand {
    Create { name: String, capacity: u32 },
    AddMember { user_id: UserId },
    RemoveMember { user_id: UserId },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupRejection {
    #[error("group does not exist")]
    UnknownGroup,
    #[error("group already exists")]
    AlreadyExists,
    #[error("user {0} is not registered")]
    UserNotRegistered(UserId),
    #[error("the group is full ({0} members)")]
    GroupFull(u32),
    #[error("user {0} is already a member")]
    AlreadyMember(UserId),
    #[error("user {0} is not a member")]
    NotMember(UserId),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{0}")]
    Forbidden(String),
}

impl esr_kernel::Rejection for GroupRejection {
    fn kind(&self) -> RejectionKind {
        match self {
            GroupRejection::UnknownGroup => RejectionKind::NotFound,
            GroupRejection::InvalidField { .. } => RejectionKind::Invalid,
            GroupRejection::Forbidden(_) => RejectionKind::Forbidden,
            _ => RejectionKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            GroupRejection::UnknownGroup => "unknown_group",
            GroupRejection::AlreadyExists => "already_exists",
            GroupRejection::UserNotRegistered(_) => "user_not_registered",
            GroupRejection::GroupFull(_) => "group_full",
            GroupRejection::AlreadyMember(_) => "already_member",
            GroupRejection::NotMember(_) => "not_member",
            GroupRejection::InvalidField { .. } => "invalid_field",
            GroupRejection::Forbidden(_) => "forbidden",
        }
    }
}

impl Aggregate for Group {
    type Event = GroupEvent;
    type Command = GroupCommand;
    type Rejection = GroupRejection;

    fn version(&self) -> u64 {
        self.version
    }

    /// Joining needs to know whether the user is registered.
    fn context_streams(_id: &EntityId, command: &GroupCommand) -> Vec<StreamId> {
        match command {
            GroupCommand::AddMember { user_id } => {
                vec![StreamId::of::<UserEvent>(user_id.clone())]
            }
            _ => vec![],
        }
    }

    fn decide(
        &self,
        _id: &EntityId,
        command: &GroupCommand,
        context: &Context,
    ) -> Result<Vec<GroupEvent>, GroupRejection> {
        if let GroupCommand::Create { name, capacity } = command {
            if self.created {
                return Err(GroupRejection::AlreadyExists);
            }
            let invalid = |field, reason: String| GroupRejection::InvalidField { field, reason };
            let name = esr_kernel::validate::bounded_text(name, MAX_GROUP_NAME_CHARS)
                .map_err(|reason| invalid("name", reason))?;
            if !(1..=MAX_CAPACITY).contains(capacity) {
                return Err(invalid("capacity", format!("1 to {MAX_CAPACITY}")));
            }
            return Ok(vec![
                GroupCreated {
                    name,
                    capacity: *capacity,
                    // Any user may create a group, and owns it.
                    owner: context.actor.user_id(),
                }
                .into(),
            ]);
        }
        if !self.created {
            return Err(GroupRejection::UnknownGroup);
        }
        self.authorize(command, &context.actor)?;
        match command {
            GroupCommand::Create { .. } => Err(GroupRejection::AlreadyExists),
            GroupCommand::AddMember { user_id } => {
                if self.members.contains(user_id) {
                    return Err(GroupRejection::AlreadyMember(user_id.clone()));
                }
                if !context.exists(&StreamId::of::<UserEvent>(user_id.clone())) {
                    return Err(GroupRejection::UserNotRegistered(user_id.clone()));
                }
                if self.members.len() >= self.capacity as usize {
                    return Err(GroupRejection::GroupFull(self.capacity));
                }
                let mut events = vec![
                    MemberJoined {
                        user_id: user_id.clone(),
                    }
                    .into(),
                ];
                // Taking the last place is a fact of its own, for whoever waits on a full group.
                if self.members.len() + 1 == self.capacity as usize {
                    events.push(
                        GroupFilled {
                            capacity: self.capacity,
                        }
                        .into(),
                    );
                }
                Ok(events)
            }
            GroupCommand::RemoveMember { user_id } => {
                if !self.members.contains(user_id) {
                    return Err(GroupRejection::NotMember(user_id.clone()));
                }
                Ok(vec![
                    MemberLeft {
                        user_id: user_id.clone(),
                    }
                    .into(),
                ])
            }
        }
    }

    fn evolve(&mut self, event: &GroupEvent) {
        self.version += 1;
        if let GroupEvent::GroupCreated(e) = event {
            self.created = true;
            self.capacity = e.capacity;
            self.owner = e.owner.clone();
        }
        change_members(&mut self.members, event);
    }
}

impl Group {
    /// A user joins or leaves themself; the owner or an admin adds or removes anyone.
    fn authorize(&self, command: &GroupCommand, actor: &Actor) -> Result<(), GroupRejection> {
        let (GroupCommand::AddMember { user_id } | GroupCommand::RemoveMember { user_id }) =
            command
        else {
            return Ok(());
        };
        let owner = self.owner.as_ref().is_some_and(|owner| actor.is(owner));
        if actor.is(user_id) || owner || actor.is_admin() {
            return Ok(());
        }
        Err(GroupRejection::Forbidden(format!(
            "{actor} may add or remove only themself: others are managed by the group's owner \
             or an admin"
        )))
    }
}

/// How an event changes the members, as both the aggregate and the view keep them.
fn change_members(members: &mut BTreeSet<UserId>, event: &GroupEvent) {
    match event {
        GroupEvent::MemberJoined(e) => {
            members.insert(e.user_id.clone());
        }
        GroupEvent::MemberLeft(e) => {
            members.remove(&e.user_id);
        }
        // Created: no members yet; filled: the members already say it.
        GroupEvent::GroupCreated(_) | GroupEvent::GroupFilled(_) => {}
    }
}

/// What `GET /groups/{id}` serves: its JSON answer, stored form and OpenAPI schema all come
/// from this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupView {
    #[schema(value_type = String)]
    pub group_id: EntityId,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub capacity: u32,
    /// Sorted, as a set is.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub members: BTreeSet<UserId>,
    #[serde(default)]
    pub member_count: usize,
    #[serde(default)]
    pub version: u64,
}

impl View for GroupView {
    type Event = GroupEvent;
    const NAME: &'static str = "group_view";

    fn empty(id: &EntityId) -> Self {
        Self {
            group_id: id.clone(),
            name: String::new(),
            capacity: 0,
            members: BTreeSet::new(),
            member_count: 0,
            version: 0,
        }
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn apply(&mut self, envelope: &EventEnvelope, event: &GroupEvent) {
        self.version = envelope.version;
        if let GroupEvent::GroupCreated(e) = event {
            self.name.clone_from(&e.name);
            self.capacity = e.capacity;
        }
        change_members(&mut self.members, event);
        self.member_count = self.members.len();
    }

    fn to_fields(&self) -> BTreeMap<String, String> {
        fields::to_fields(self)
    }

    fn from_fields(id: &EntityId, stored: &BTreeMap<String, String>) -> Result<Self, FieldError> {
        // The count is the members': not trusted from storage, no more than the id.
        let mut view: Self = fields::from_fields_with(stored, "group_id", id.as_str())?;
        view.member_count = view.members.len();
        Ok(view)
    }
}
