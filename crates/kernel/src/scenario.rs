//! Given/when/then for any aggregate, written once: a history, an actor and the streams the
//! decision may ask about, a command, and what `decide` answered; and the fold of any view
//! ([`folded`]) and the counts of any tally ([`counted`]) over a history. The result prints (`Debug`)
//! as one small insta snapshot a reviewer reads top to bottom.
//!
//! ```
//! # use esr_kernel::{Actor, scenario::given};
//! # fn check<A: esr_kernel::Aggregate>(history: Vec<A::Event>, command: A::Command) {
//! let case = given::<A>(history).by(Actor::user("1", [])).when("post-1", command);
//! // insta::assert_debug_snapshot!(case);
//! # let _ = case;
//! # }
//! ```

use chrono::NaiveDate;
use esr_schema::{EntityId, StreamId};

use crate::{Actor, Aggregate, Context};

/// A case being set up: the stream's history so far and the decision's context.
pub struct Given<A: Aggregate> {
    history: Vec<A::Event>,
    context: Context,
}

/// What a case shows: everything that went in, and what came out.
#[derive(Debug)]
#[allow(dead_code)] // Read through `Debug` by the snapshots.
pub struct Case<A: Aggregate> {
    given: Vec<A::Event>,
    by: Actor,
    existing: Vec<String>,
    when: A::Command,
    then: Result<Vec<A::Event>, A::Rejection>,
}

impl<A: Aggregate> Case<A> {
    /// What `decide` answered.
    pub fn then(&self) -> &Result<Vec<A::Event>, A::Rejection> {
        &self.then
    }
}

/// A stream of `A` whose history is `history`; the actor is anonymous and today is
/// 2026-01-01 unless told.
pub fn given<A: Aggregate>(history: Vec<A::Event>) -> Given<A> {
    Given {
        history,
        context: Context::new(
            NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default(),
            Actor::Anonymous,
        ),
    }
}

impl<A: Aggregate> Given<A> {
    pub fn by(mut self, actor: Actor) -> Self {
        self.context.actor = actor;
        self
    }

    pub fn today(mut self, today: NaiveDate) -> Self {
        self.context.today = today;
        self
    }

    /// `stream` exists (at version 1), for [`Aggregate::context_streams`].
    pub fn existing(mut self, stream: StreamId) -> Self {
        self.context.stream_versions.insert(stream, 1);
        self
    }

    /// Decide `command` on the stream `id`.
    pub fn when(self, id: &str, command: A::Command) -> Case<A> {
        let state = A::from_history(&self.history);
        let then = match EntityId::parse(id) {
            Ok(id) => state.decide(&id, &command, &self.context),
            Err(error) => panic!("scenario id {id:?}: {error}"),
        };
        Case {
            given: self.history,
            by: self.context.actor,
            existing: self
                .context
                .stream_versions
                .keys()
                .map(ToString::to_string)
                .collect(),
            when: command,
            then,
        }
    }
}

/// View `V` of stream `id` after `events`, each applied with the next version (1, 2, ...);
/// the envelope's other fields are fixed, so snapshots stay the same from run to run.
pub fn folded<V: crate::View>(id: &str, events: &[V::Event]) -> V {
    let id = EntityId::parse(id).unwrap_or_else(|error| panic!("scenario id {id:?}: {error}"));
    let mut view = V::empty(&id);
    for (n, event) in events.iter().enumerate() {
        view.apply(&envelope(&id, n, event), event);
    }
    view
}

/// What tally `T` counts for `events` of stream `id`, in order: one `(key, amount)` per count.
pub fn counted<T: crate::Tally>(id: &str, events: &[T::Event]) -> Vec<(String, i64)> {
    let id = EntityId::parse(id).unwrap_or_else(|error| panic!("scenario id {id:?}: {error}"));
    events
        .iter()
        .enumerate()
        .flat_map(|(n, event)| T::count(&envelope(&id, n, event), event))
        .collect()
}

/// The envelope of the `n`th event (version `n + 1`) of stream `id`, fixed but for those.
fn envelope<E: esr_schema::DomainEvent>(
    id: &EntityId,
    n: usize,
    event: &E,
) -> esr_schema::EventEnvelope {
    esr_schema::EventEnvelope {
        event_id: uuid::Uuid::nil(),
        stream: StreamId::of::<E>(id.clone()),
        version: n as u64 + 1,
        event_type: event.event_type().into(),
        schema_version: event.schema_version(),
        occurred_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
        correlation_id: "scenario".into(),
        causation_id: "scenario".into(),
        actor: None,
    }
}
