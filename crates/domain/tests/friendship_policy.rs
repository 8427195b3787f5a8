//! Given an event, then the commands the friendship policy issues.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use esr_domain::User;
use esr_domain::friendship::react;
use esr_kernel::Aggregate;
use esr_schema::{
    ActedOn, Action, DomainEvent, EventEnvelope, FriendAdded, FriendRemoved, StreamId, UserEvent,
    UserId,
};
use uuid::Uuid;

fn id(raw: &str) -> UserId {
    UserId::parse(raw).unwrap()
}

fn envelope_of_user_1(event: &UserEvent) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
        stream: StreamId::of::<UserEvent>(id("1")),
        version: 4,
        event_type: event.event_type().into(),
        schema_version: 1,
        occurred_at: DateTime::<Utc>::UNIX_EPOCH,
        correlation_id: "req".into(),
        causation_id: "cmd".into(),
        actor: None,
    }
}

/// User 1 as it is after `history`.
fn user_1_after(history: &[UserEvent]) -> User {
    User::from_history(history)
}

/// React with user 1's state being the event just applied, the usual case.
fn react_to(event: UserEvent) -> Vec<esr_domain::friendship::PolicyCommand> {
    let now = user_1_after(std::slice::from_ref(&event));
    react(&envelope_of_user_1(&event), &event, &now)
}

#[test]
fn a_friend_added_makes_the_friend_add_back() {
    insta::assert_debug_snapshot!(react_to(UserEvent::FriendAdded(FriendAdded {
        friend_id: id("2"),
        reciprocal: false
    })));
}

#[test]
fn a_friend_removed_makes_the_friend_remove_back() {
    insta::assert_debug_snapshot!(react_to(UserEvent::FriendRemoved(FriendRemoved {
        friend_id: id("2"),
        reciprocal: false
    })));
}

#[test]
fn a_mirror_event_causes_nothing() {
    assert_eq!(
        react_to(UserEvent::FriendAdded(FriendAdded {
            friend_id: id("2"),
            reciprocal: true
        })),
        vec![]
    );
    assert_eq!(
        react_to(UserEvent::FriendRemoved(FriendRemoved {
            friend_id: id("2"),
            reciprocal: true
        })),
        vec![]
    );
}

#[test]
fn other_events_cause_nothing() {
    assert_eq!(
        react_to(UserEvent::ActedOn(ActedOn {
            action: Action::Kick,
            object: "Bugs".into(),
            text: None
        })),
        vec![]
    );
}

#[test]
fn a_redelivered_event_gives_the_same_command() {
    let event = UserEvent::FriendAdded(FriendAdded {
        friend_id: id("2"),
        reciprocal: false,
    });
    assert_eq!(react_to(event.clone()), react_to(event));
}

#[test]
fn a_friend_added_handled_after_the_friend_was_removed_again_mirrors_the_removal() {
    let added = UserEvent::FriendAdded(FriendAdded {
        friend_id: id("2"),
        reciprocal: false,
    });
    let removed = UserEvent::FriendRemoved(FriendRemoved {
        friend_id: id("2"),
        reciprocal: false,
    });
    // The add is handled late: user 1 has already removed 2 again.
    let now = user_1_after(&[added.clone(), removed]);
    insta::assert_debug_snapshot!(react(&envelope_of_user_1(&added), &added, &now));
}

#[test]
fn a_mirror_refused_for_a_full_list_withdraws_the_initiators_side() {
    use esr_domain::friendship::withdraw_when_full;
    use esr_domain::{UserCommand, UserRejection};
    let mirror = react_to(UserEvent::FriendAdded(FriendAdded {
        friend_id: id("2"),
        reciprocal: false,
    }))
    .remove(0);
    let withdrawal = withdraw_when_full(&mirror, &UserRejection::TooManyFriends(id("2"))).unwrap();
    assert_eq!(withdrawal.target, id("1"));
    assert_eq!(
        withdrawal.command,
        UserCommand::RemoveFriend {
            friend_id: id("2"),
            reciprocal: true
        }
    );
    assert_eq!(withdrawal.causation_id, mirror.causation_id);
    // Any other refusal is an answer, not a reason to undo anything.
    assert_eq!(
        withdraw_when_full(&mirror, &UserRejection::FriendNotRegistered(id("2"))),
        None
    );
}
