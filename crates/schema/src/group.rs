//! The group's events: users join groups of a fixed capacity.

use serde::{Deserialize, Serialize};

use crate::{AggregateType, Category, EventPayload, UserId, domain_events};

pub const GROUP: AggregateType = AggregateType::declare("group");
/// Groups created, members joining and leaving.
pub const GROUP_MEMBERSHIP: Category = Category::declare("group_membership");

domain_events! {
    /// Everything that can happen to a group.
    pub enum GroupEvent for GROUP, categories [GROUP_MEMBERSHIP] {
        GroupCreated(GroupCreated),
        MemberJoined(MemberJoined),
        MemberLeft(MemberLeft),
        GroupFilled(GroupFilled),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCreated {
    pub name: String,
    pub capacity: u32,
    /// The user who created it and may add or remove others; absent in groups created before
    /// owners were recorded, or by an actor that is not a user (only admins manage those).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
}

impl EventPayload for GroupCreated {
    const TYPE: &'static str = "group_created";
    const CATEGORY: Category = GROUP_MEMBERSHIP;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberJoined {
    pub user_id: UserId,
}

impl EventPayload for MemberJoined {
    const TYPE: &'static str = "member_joined";
    const CATEGORY: Category = GROUP_MEMBERSHIP;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLeft {
    pub user_id: UserId,
}

impl EventPayload for MemberLeft {
    const TYPE: &'static str = "member_left";
    const CATEGORY: Category = GROUP_MEMBERSHIP;
}

/// The last free place was taken: the group holds `capacity` members now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFilled {
    pub capacity: u32,
}

impl EventPayload for GroupFilled {
    const TYPE: &'static str = "group_filled";
    const CATEGORY: Category = GROUP_MEMBERSHIP;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DomainEvent;
    use crate::codec::encode;

    fn every_event() -> Vec<GroupEvent> {
        let user = UserId::parse("1").unwrap();
        vec![
            GroupCreated {
                name: "Looney".into(),
                capacity: 3,
                owner: Some(user.clone()),
            }
            .into(),
            MemberJoined {
                user_id: user.clone(),
            }
            .into(),
            MemberLeft { user_id: user }.into(),
            GroupFilled { capacity: 3 }.into(),
        ]
    }

    #[test]
    fn every_variant_round_trips_to_a_declared_category() {
        let events = every_event();
        assert_eq!(events.len(), GroupEvent::TYPES.len());
        for event in events {
            let encoded = encode(&event).unwrap();
            assert!(GroupEvent::CATEGORIES.contains(&encoded.category));
            let decoded =
                GroupEvent::decode(encoded.event_type, encoded.schema_version, &encoded.payload)
                    .unwrap();
            assert_eq!(decoded, event);
        }
    }
}
