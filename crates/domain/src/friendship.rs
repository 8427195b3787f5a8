//! Friendship is mutual: when A adds (or removes) B, B gets (or loses) A too.
//!
//! The policy is a pure function from A's event, and A's state now, to B's command. It mirrors
//! A's *current* friendship with B rather than the event alone, so events handled out of order
//! (two projector processes sharing the group) still leave both sides agreeing with A's latest
//! choice. The command sets B's side to a state (adding a friend B lists already, or removing
//! one B does not list, changes nothing), so a redelivered event never doubles anything; it is
//! marked `reciprocal`, so B's mirror event causes nothing further.

use esr_schema::{EventEnvelope, UserEvent, UserId};

use crate::{User, UserCommand};

/// A command the policy wants run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCommand {
    pub target: UserId,
    pub command: UserCommand,
    /// The event that caused the command, for the new event's causation id.
    pub causation_id: String,
}

/// The user whose friendship changed, when `event` is a change the policy mirrors.
pub fn friend_changed(event: &UserEvent) -> Option<&UserId> {
    match event {
        UserEvent::FriendAdded(e) if !e.reciprocal => Some(&e.friend_id),
        UserEvent::FriendRemoved(e) if !e.reciprocal => Some(&e.friend_id),
        _ => None,
    }
}

/// The commands one event causes, given the initiator's state now (`initiator_now`, folded
/// from at least every event up to this one).
pub fn react(
    envelope: &EventEnvelope,
    event: &UserEvent,
    initiator_now: &User,
) -> Vec<PolicyCommand> {
    let Some(friend) = friend_changed(event) else {
        return vec![];
    };
    let initiator = envelope.stream.id.clone();
    let command = if initiator_now.friends.contains(friend) {
        UserCommand::AddFriend {
            friend_id: initiator,
            reciprocal: true,
        }
    } else {
        UserCommand::RemoveFriend {
            friend_id: initiator,
            reciprocal: true,
        }
    };
    vec![PolicyCommand {
        target: friend.clone(),
        command,
        causation_id: envelope.event_id.to_string(),
    }]
}

/// When the friend refused the mirror because their friends list is full
/// ([`UserRejection::TooManyFriends`](crate::UserRejection::TooManyFriends)), the initiator's side is
/// withdrawn, so both sides agree again (neither lists the other). `None` for any other
/// refusal or command.
pub fn withdraw_when_full(
    refused: &PolicyCommand,
    rejection: &crate::UserRejection,
) -> Option<PolicyCommand> {
    let (crate::UserRejection::TooManyFriends(_), UserCommand::AddFriend { friend_id, .. }) =
        (rejection, &refused.command)
    else {
        return None;
    };
    Some(PolicyCommand {
        target: friend_id.clone(),
        command: UserCommand::RemoveFriend {
            friend_id: refused.target.clone(),
            reciprocal: true,
        },
        causation_id: refused.causation_id.clone(),
    })
}
