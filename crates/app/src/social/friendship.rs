//! Makes friendship mutual by running the friend's side of each friendship change.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use esr_domain::{User, friendship};
use esr_kernel::{Actor, Aggregate as _};
use esr_schema::user::USER_FRIENDS;
use esr_schema::{Category, StoredEvent, StreamId, UserEvent};
use esr_store::Fence;

use crate::command::{CommandError, CommandMeta, CommandService};
use crate::projector::{Handler, HandlerError};

/// The policy's consumer group.
pub const GROUP: &str = "friendship_policy";

/// The categories it reads.
pub const READS: &[Category] = &[USER_FRIENDS];

pub struct FriendshipPolicy {
    commands: Arc<CommandService<User>>,
    interleave: Option<Arc<dyn Interleave>>,
}

/// The points where the policy reads or writes another stream: a test holds a policy there
/// to force an interleaving with another process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Before reading the initiator's state.
    Load,
    /// Before running the mirror command on the friend.
    Act,
    /// Before reading the initiator's state again, to check it did not change meanwhile.
    Check,
}

#[async_trait]
pub trait Interleave: Send + Sync {
    async fn before(&self, step: Step);
}

impl FriendshipPolicy {
    pub fn new(commands: Arc<CommandService<User>>) -> Self {
        Self {
            commands,
            interleave: None,
        }
    }

    /// A policy that calls `interleave` before each [`Step`] (tests).
    pub fn interleaved(
        commands: Arc<CommandService<User>>,
        interleave: Arc<dyn Interleave>,
    ) -> Self {
        Self {
            commands,
            interleave: Some(interleave),
        }
    }

    async fn before(&self, step: Step) {
        if let Some(interleave) = &self.interleave {
            interleave.before(step).await;
        }
    }
}

#[async_trait]
impl Handler for FriendshipPolicy {
    fn group(&self) -> &str {
        GROUP
    }

    fn categories(&self) -> &[Category] {
        READS
    }

    /// Events of one initiator in order, initiators [`CONCURRENT_INITIATORS`] at a time: each
    /// mirror is a few round trips, so one at a time left the policy far behind the users'
    /// commands. Two initiators mirrored at once are what two processes do, which `handle`
    /// already makes safe.
    async fn handle_batch(
        &self,
        events: &[StoredEvent],
        _fence: &Fence,
    ) -> Vec<Result<(), HandlerError>> {
        use futures::StreamExt as _;
        let mut by_initiator: BTreeMap<&StreamId, Vec<usize>> = BTreeMap::new();
        for (i, stored) in events.iter().enumerate() {
            by_initiator
                .entry(&stored.envelope.stream)
                .or_default()
                .push(i);
        }
        let mut outcomes: Vec<Result<(), HandlerError>> = (0..events.len())
            .map(|_| Err(HandlerError::Transient("not handled".into())))
            .collect();
        let mut handled = futures::stream::iter(by_initiator.into_values())
            .map(|indexes| async move {
                let mut done = Vec::with_capacity(indexes.len());
                for i in indexes {
                    done.push((i, self.handle(&events[i]).await));
                }
                done
            })
            .buffer_unordered(CONCURRENT_INITIATORS);
        while let Some(done) = handled.next().await {
            for (i, outcome) in done {
                outcomes[i] = outcome;
            }
        }
        outcomes
    }

    /// Mirror the initiator's current friendship onto the friend, then check that the
    /// initiator did not change while the mirror was written; if it did (another process
    /// handled a later change of the same pair in the meantime, and its mirror may have been
    /// overwritten by this one), mirror again from the newer state. Whichever process writes
    /// last has checked after its write that it wrote the current state.
    async fn handle(&self, stored: &StoredEvent) -> Result<(), HandlerError> {
        let event = stored
            .decode::<UserEvent>()
            .map_err(HandlerError::from_decode)?;
        if friendship::friend_changed(&event).is_none() {
            return Ok(());
        }
        self.before(Step::Load).await;
        let mut initiator = self.initiator(stored).await?;
        let mut reactions = friendship::react(&stored.envelope, &event, &initiator);
        for _ in 0..MAX_ROUNDS {
            for reaction in &reactions {
                self.before(Step::Act).await;
                self.run(stored, reaction).await?;
            }
            self.before(Step::Check).await;
            // The version first (one GET): the whole stream is read again only if it moved.
            let version = self
                .commands
                .store()
                .stream_version(&stored.envelope.stream)
                .await?;
            if version == initiator.version() {
                return Ok(());
            }
            initiator = self.initiator(stored).await?;
            let now = friendship::react(&stored.envelope, &event, &initiator);
            if now == reactions {
                return Ok(());
            }
            tracing::debug!(initiator = %stored.envelope.stream.id, "friendship changed while mirrored; mirroring again");
            reactions = now;
        }
        // Redelivery tries again later, when the pair has calmed down.
        Err(HandlerError::Transient(format!(
            "the friendship of {} kept changing while it was mirrored",
            stored.envelope.stream.id
        )))
    }
}

/// Initiators whose events a batch mirrors at once.
const CONCURRENT_INITIATORS: usize = 32;

/// Mirror rounds in one delivery before giving up to a later redelivery.
const MAX_ROUNDS: usize = 8;

impl FriendshipPolicy {
    async fn initiator(&self, stored: &StoredEvent) -> Result<User, HandlerError> {
        match self.commands.load(&stored.envelope.stream.id).await {
            Ok((state, _)) => Ok(state),
            Err(CommandError::Store(e)) => Err(e.into()),
            // A rolling deploy: a newer build's projector can mirror it; this one must not
            // dead-letter it (the friendship would stay one-sided).
            Err(newer @ CommandError::FromNewerBuild { .. }) => {
                Err(HandlerError::FromNewerBuild(newer.to_string()))
            }
            Err(other) => Err(HandlerError::Poison(other.to_string())),
        }
    }

    async fn run(
        &self,
        stored: &StoredEvent,
        reaction: &friendship::PolicyCommand,
    ) -> Result<(), HandlerError> {
        // No idempotency key: a mirror sets the friend's side to a state, so running it again
        // changes nothing, while a key's replay would answer an older round's result.
        let meta = CommandMeta {
            if_match: None,
            idempotency_key: None,
            fingerprint: None,
            correlation_id: stored.envelope.correlation_id.clone(),
            causation_id: reaction.causation_id.clone(),
            // The service mirrors on behalf of whoever made the friendship change.
            actor: Actor::system(stored.envelope.actor.clone()),
        };
        match self
            .commands
            .execute(&reaction.target, reaction.command.clone(), &meta)
            .await
        {
            Ok(_) => Ok(()),
            Err(CommandError::Rejected(rejection)) => {
                // The friend's list is full: the initiator's side is withdrawn (the check
                // that follows sees the initiator changed and mirrors that, a no-op).
                if let Some(withdrawal) = friendship::withdraw_when_full(reaction, &rejection) {
                    tracing::info!(target_user = %reaction.target, %rejection, "friendship withdrawn: the friend's list is full");
                    return Box::pin(self.run(stored, &withdrawal)).await;
                }
                // Another rule refused the mirror command (the friend vanished?): that is an
                // answer, not a failure to retry.
                tracing::warn!(target_user = %reaction.target, %rejection, "friendship mirror refused");
                Ok(())
            }
            Err(CommandError::Store(e)) => Err(e.into()),
            Err(newer @ CommandError::FromNewerBuild { .. }) => {
                Err(HandlerError::FromNewerBuild(newer.to_string()))
            }
            Err(other) => Err(HandlerError::Transient(other.to_string())),
        }
    }
}
