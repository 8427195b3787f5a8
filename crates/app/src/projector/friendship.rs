//! Makes friendship mutual by running the friend's side of each friendship change.

use std::sync::Arc;

use async_trait::async_trait;
use esr_domain::{User, friendship};
use esr_schema::user::USER_FRIENDS;
use esr_schema::{Category, StoredEvent, UserEvent};

use super::{Handler, HandlerError};
use crate::command::{CommandError, CommandMeta, CommandService};

pub struct FriendshipPolicy {
    commands: Arc<CommandService<User>>,
}

impl FriendshipPolicy {
    pub fn new(commands: Arc<CommandService<User>>) -> Self {
        Self { commands }
    }
}

#[async_trait]
impl Handler for FriendshipPolicy {
    fn group(&self) -> &str {
        "friendship_policy"
    }

    fn categories(&self) -> &[Category] {
        const READS: &[Category] = &[USER_FRIENDS];
        READS
    }

    async fn handle(&self, stored: &StoredEvent) -> Result<(), HandlerError> {
        let event = stored
            .decode::<UserEvent>()
            .map_err(HandlerError::from_decode)?;
        if friendship::friend_changed(&event).is_none() {
            return Ok(());
        }
        let (initiator_now, _) = match self.commands.load(&stored.envelope.stream.id).await {
            Ok(loaded) => loaded,
            Err(CommandError::Store(e)) => return Err(e.into()),
            Err(other) => return Err(HandlerError::Poison(other.to_string())),
        };
        for reaction in friendship::react(&stored.envelope, &event, &initiator_now) {
            let meta = CommandMeta {
                if_match: None,
                idempotency_key: Some(reaction.idempotency_key),
                fingerprint: None,
                correlation_id: stored.envelope.correlation_id.clone(),
                causation_id: reaction.causation_id,
            };
            match self
                .commands
                .execute(&reaction.target, reaction.command, &meta)
                .await
            {
                Ok(_) => {}
                // A rule refused the mirror command (the friend vanished?): that is an answer,
                // not a failure to retry.
                Err(CommandError::Rejected(rejection)) => {
                    tracing::warn!(target_user = %reaction.target, %rejection, "friendship mirror refused");
                }
                Err(CommandError::Store(e)) => return Err(e.into()),
                Err(other) => return Err(HandlerError::Transient(other.to_string())),
            }
        }
        Ok(())
    }
}
