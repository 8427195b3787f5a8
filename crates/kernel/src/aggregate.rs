use std::collections::BTreeMap;

use chrono::NaiveDate;
use esr_schema::{DomainEvent, EntityId, StreamId};

use crate::Actor;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Facts from outside the aggregate that a decision needs, gathered by the command runtime
/// before `decide` so that `decide` stays pure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub today: NaiveDate,
    /// Who makes the command: `decide` refuses what this actor may not do.
    pub actor: Actor,
    /// The current version of each stream the aggregate asked for in
    /// [`Aggregate::context_streams`] (0: no such stream).
    pub stream_versions: BTreeMap<StreamId, u64>,
}

impl Context {
    pub fn new(today: NaiveDate, actor: Actor) -> Self {
        Self {
            today,
            actor,
            stream_versions: BTreeMap::new(),
        }
    }

    /// Whether `stream` has events: for a user, whether it is registered.
    pub fn exists(&self, stream: &StreamId) -> bool {
        self.stream_versions.get(stream).is_some_and(|v| *v > 0)
    }
}

/// What kind of refusal a rejection is, so a transport can answer it without knowing the
/// aggregate (HTTP: 404, 409, 422, 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The aggregate (or another it names) does not exist.
    NotFound,
    /// A domain rule refused the command.
    Conflict,
    /// A field of the command is invalid.
    Invalid,
    /// The actor may not make this command.
    Forbidden,
}

/// Why a command was refused. Nothing is written for a refused command.
pub trait Rejection: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> RejectionKind;
    /// A stable, machine-readable code for API errors.
    fn code(&self) -> &'static str;
}

/// A consistency boundary: one stream per instance, every command decided against the state
/// folded from that stream.
///
/// Implemented by `esr_domain::User` and `esr_domain::Group`; the command runtime
/// (`esr_app::CommandService<A>`) loads, decides, appends with the expected version, retries
/// conflicts, snapshots, and handles `If-Match` and idempotency keys for every aggregate.
pub trait Aggregate:
    Default + Clone + Serialize + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static
{
    type Event: DomainEvent;
    /// Serialize: the idempotency fingerprint is its encoding (fields by position), so that
    /// renaming a field does not make a retry look like another command.
    type Command: std::fmt::Debug + Serialize + Send + Sync + 'static;
    type Rejection: Rejection;

    /// The version of the last event folded in; 0 before the first.
    fn version(&self) -> u64;

    /// The streams whose versions `decide` needs in its [`Context`] for this command (is the
    /// friend registered?). None by default.
    fn context_streams(id: &EntityId, command: &Self::Command) -> Vec<StreamId> {
        let _ = (id, command);
        vec![]
    }

    /// The events a command causes (possibly none, when it asks for what is already true), or
    /// why it is refused.
    fn decide(
        &self,
        id: &EntityId,
        command: &Self::Command,
        context: &Context,
    ) -> Result<Vec<Self::Event>, Self::Rejection>;

    /// Apply one event, adding one to the version. Total: every event applies to every state,
    /// because stored history is a fact even if an older, laxer `decide` wrote it.
    fn evolve(&mut self, event: &Self::Event);

    /// Fold a history from nothing.
    fn from_history<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self {
        let mut state = Self::default();
        for event in events {
            state.evolve(event);
        }
        state
    }

    /// The snapshot form: MessagePack in the named form, like events, so a field added later
    /// reads as its default.
    fn to_snapshot(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }

    fn from_snapshot(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}
