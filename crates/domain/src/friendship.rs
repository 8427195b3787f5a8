//! Friendship is mutual: when A adds (or removes) B, B gets (or loses) A too.
//!
//! The policy is a pure function from A's event to B's command. The command carries an
//! idempotency key derived from A's event id, so a redelivered event never doubles anything,
//! and is marked `reciprocal`, so B's mirror event causes nothing further.

use esr_schema::{EventEnvelope, UserEvent, UserId};

use crate::Command;

/// A command the policy wants run, and how to run it safely more than once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCommand {
    pub target: UserId,
    pub command: Command,
    /// The same for every delivery of the same event.
    pub idempotency_key: String,
    /// The event that caused the command, for the new event's causation id.
    pub causation_id: String,
}

/// The commands one event causes.
pub fn react(envelope: &EventEnvelope, event: &UserEvent) -> Vec<PolicyCommand> {
    let command = match event {
        UserEvent::FriendAdded(e) if !e.reciprocal => Command::AddFriend {
            friend_id: envelope.user_id.clone(),
            // A registered user did this; it is what made the event possible.
            friend_registered: true,
            reciprocal: true,
        },
        UserEvent::FriendRemoved(e) if !e.reciprocal => Command::RemoveFriend {
            friend_id: envelope.user_id.clone(),
            reciprocal: true,
        },
        _ => return vec![],
    };
    let target = match event {
        UserEvent::FriendAdded(e) => e.friend_id.clone(),
        UserEvent::FriendRemoved(e) => e.friend_id.clone(),
        _ => return vec![],
    };
    vec![PolicyCommand {
        target,
        command,
        idempotency_key: format!("friendship-{}", envelope.event_id),
        causation_id: envelope.event_id.to_string(),
    }]
}
