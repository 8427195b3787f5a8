//! The query side, written once for every view: read models, waiting for a version (read your
//! own writes), the past folded from the stream, histories, and tallies.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use esr_kernel::View;
use esr_schema::{DomainEvent, EntityId, StoredEvent, StreamId};
use esr_store::{ReadModel, Store, StoreError};
use serde::Serialize;

use crate::read_model::{self, LiveGenerations, stored_view_in};

pub struct QueryService {
    store: Arc<dyn Store>,
    /// The longest a `min_version` read waits for the projector.
    pub max_wait: Duration,
    generations: LiveGenerations,
    waits: Arc<Waits>,
}

/// How often the read models awaited by `min_version` reads are read again.
const WAIT_ROUND: Duration = Duration::from_millis(5);

/// The `min_version` reads waiting, read together: each round reads every awaited read model
/// once, in one batch, however many reads wait on it. A crowd waiting on one user (or on a
/// version that never comes) costs one read a round, not one read per waiter.
#[derive(Default)]
struct Waits {
    state: Mutex<WaitState>,
}

/// A waiting read: the version it needs, and where to hand the model that reaches it.
type Waiter = (u64, tokio::sync::oneshot::Sender<ReadModel>);

#[derive(Default)]
struct WaitState {
    /// By read model (generation name, stream).
    pending: HashMap<(String, StreamId), Vec<Waiter>>,
    /// Whether a task is reading rounds now.
    polling: bool,
}

impl Waits {
    fn lock(&self) -> std::sync::MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for the read model `name` of `stream` to reach `min_version`: a receiver of it.
    fn register(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        name: String,
        stream: StreamId,
        min_version: u64,
    ) -> tokio::sync::oneshot::Receiver<ReadModel> {
        let (reached, receiver) = tokio::sync::oneshot::channel();
        let mut state = self.lock();
        state
            .pending
            .entry((name, stream))
            .or_default()
            .push((min_version, reached));
        if !state.polling {
            state.polling = true;
            tokio::spawn(self.clone().rounds(store.clone()));
        }
        receiver
    }

    /// Read rounds until nobody waits.
    async fn rounds(self: Arc<Self>, store: Arc<dyn Store>) {
        loop {
            tokio::time::sleep(WAIT_ROUND).await;
            let mut by_name: HashMap<String, Vec<StreamId>> = HashMap::new();
            {
                let mut state = self.lock();
                // Waiters that gave up (timed out, disconnected) leave.
                state.pending.retain(|_, waiters| {
                    waiters.retain(|(_, reached)| !reached.is_closed());
                    !waiters.is_empty()
                });
                if state.pending.is_empty() {
                    state.polling = false;
                    return;
                }
                for (name, stream) in state.pending.keys() {
                    by_name
                        .entry(name.clone())
                        .or_default()
                        .push(stream.clone());
                }
            }
            for (name, streams) in by_name {
                let models = match store.get_read_models(&name, &streams).await {
                    Ok(models) => models,
                    // The waiters read once more themselves when their time is up.
                    Err(error) => {
                        tracing::debug!(%error, "reading awaited read models");
                        continue;
                    }
                };
                let mut state = self.lock();
                for (stream, model) in streams.into_iter().zip(models) {
                    let Some(model) = model else { continue };
                    let key = (name.clone(), stream);
                    let Some(waiters) = state.pending.get_mut(&key) else {
                        continue;
                    };
                    for (_, reached) in waiters.extract_if(.., |(min, _)| *min <= model.version) {
                        let _ = reached.send(model.clone());
                    }
                    if waiters.is_empty() {
                        state.pending.remove(&key);
                    }
                }
            }
        }
    }
}

/// A view read that had to reach a version.
#[derive(Debug)]
pub enum Fresh<V> {
    Reached(V),
    /// Waited `max_wait`; the read model is still behind (or absent: `None`).
    TimedOut(Option<V>),
}

/// An event as the history routes show it: envelope plus payload as JSON.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub version: u64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    pub causation_id: String,
    /// Who caused it (`user:<subject>`, `system:<cause>`, `anonymous`); null for events
    /// stored before actors were recorded.
    pub actor: Option<String>,
    pub data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored event {version} of {stream} cannot be read: {reason}")]
    Corrupt {
        stream: StreamId,
        version: u64,
        reason: String,
    },
}

impl QueryService {
    /// How long a `min_version` read waits unless told.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(5);

    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            max_wait: Self::DEFAULT_MAX_WAIT,
            generations: LiveGenerations::default(),
            waits: Arc::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The stream's view, from the generation served (a rebuild's switch reaches this side
    /// within `GENERATION_TTL`).
    pub async fn view<V: View>(&self, id: &EntityId) -> Result<Option<V>, QueryError> {
        let name = self.generations.name(self.store.as_ref(), V::NAME).await?;
        Ok(stored_view_in::<V>(self.store.as_ref(), &name, id).await?)
    }

    /// Wait (bounded by `max_wait`) until the read model reaches `min_version`:
    /// read-your-own-writes after a command answered with that version. Waiting reads of one
    /// model share its reads ([`Waits`]).
    pub async fn view_at_least<V: View>(
        &self,
        id: &EntityId,
        min_version: u64,
    ) -> Result<Fresh<V>, QueryError> {
        let deadline = tokio::time::Instant::now() + self.max_wait;
        // The projector is usually a few milliseconds behind a command: read a few times
        // alone first, then join the shared rounds.
        for pause in [0, 2, 4] {
            tokio::time::sleep(Duration::from_millis(pause)).await;
            if let Some(view) = self.view::<V>(id).await?
                && view.version() >= min_version
            {
                return Ok(Fresh::Reached(view));
            }
        }
        let name = self.generations.name(self.store.as_ref(), V::NAME).await?;
        let stream = StreamId::of::<V::Event>(id.clone());
        let reached = self
            .waits
            .register(&self.store, name, stream.clone(), min_version);
        if let Ok(Ok(model)) = tokio::time::timeout_at(deadline, reached).await {
            return Ok(Fresh::Reached(read_model::decode::<V>(&stream, &model)?));
        }
        // Time is up (or the rounds could not read): one last read of our own.
        Ok(match self.view::<V>(id).await? {
            Some(view) if view.version() >= min_version => Fresh::Reached(view),
            stale => Fresh::TimedOut(stale),
        })
    }

    /// The view as it was at `at`: the nearest checkpoint at or before `at`, then the
    /// stream's events after it up to `at` (not the read model).
    pub async fn view_as_of<V: View>(
        &self,
        id: &EntityId,
        at: DateTime<Utc>,
    ) -> Result<Option<V>, QueryError> {
        const PAGE: usize = 1000;
        let stream = StreamId::of::<V::Event>(id.clone());
        // From the nearest checkpoint at or before `at` (an unreadable one is skipped: it is
        // only a shortcut), so at most one checkpoint interval of events is folded.
        let name = self.generations.name(self.store.as_ref(), V::NAME).await?;
        let checkpoint = self.store.checkpoint_at(&name, &stream, at).await?;
        let (mut view, mut from) = match checkpoint.and_then(|c| {
            V::from_fields(id, &c.fields)
                .ok()
                .map(|view| (view, c.version))
        }) {
            Some((view, version)) if view.version() == version => (view, version + 1),
            _ => (V::empty(id), 1),
        };
        'pages: loop {
            let page = self.store.read_stream(&stream, from, PAGE).await?;
            for stored in &page {
                if stored.envelope.occurred_at > at {
                    break 'pages;
                }
                let event = decode::<V::Event>(stored)?;
                view.apply(&stored.envelope, &event);
            }
            if page.len() < PAGE {
                break;
            }
            from += PAGE as u64;
        }
        Ok((view.version() > 0).then_some(view))
    }

    /// Up to `limit` events of aggregate `E`'s stream `id` from version `from`, decoded.
    pub async fn events<E: DomainEvent>(
        &self,
        id: &EntityId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<EventView>, QueryError> {
        let stream = StreamId::of::<E>(id.clone());
        self.history(&stream, from, limit, |stored| {
            let event = decode::<E>(stored)?;
            Ok(serde_json::to_value(&event).unwrap_or(serde_json::Value::Null))
        })
        .await
    }

    /// A page of any stream's history, each payload made JSON by `data` (the admin tool reads
    /// streams of aggregates it knows only by name).
    pub async fn history(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
        data: impl Fn(&StoredEvent) -> Result<serde_json::Value, QueryError>,
    ) -> Result<Vec<EventView>, QueryError> {
        let stored = self.store.read_stream(stream, from.max(1), limit).await?;
        stored
            .iter()
            .map(|s| {
                let e = &s.envelope;
                Ok(EventView {
                    version: e.version,
                    event_id: e.event_id.to_string(),
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    occurred_at: e.occurred_at,
                    correlation_id: e.correlation_id.clone(),
                    causation_id: e.causation_id.clone(),
                    actor: e.actor.clone(),
                    data: data(s)?,
                })
            })
            .collect()
    }

    pub async fn stream_version<E: DomainEvent>(&self, id: &EntityId) -> Result<u64, QueryError> {
        Ok(self
            .store
            .stream_version(&StreamId::of::<E>(id.clone()))
            .await?)
    }

    /// Up to `limit` keys of tally `name`, highest count first, then key ascending.
    pub async fn tally_top(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, QueryError> {
        Ok(self.store.tally_top(name, limit).await?)
    }

    pub async fn tally_count(&self, name: &str, key: &str) -> Result<i64, QueryError> {
        Ok(self.store.tally_count(name, key).await?)
    }
}

fn decode<E: DomainEvent>(stored: &StoredEvent) -> Result<E, QueryError> {
    stored.decode::<E>().map_err(|e| QueryError::Corrupt {
        stream: stored.envelope.stream.clone(),
        version: stored.envelope.version,
        reason: e.to_string(),
    })
}
