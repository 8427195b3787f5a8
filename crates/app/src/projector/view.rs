//! Any [`View`] kept per stream, projected by the per-stream runtime.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use esr_kernel::View;
use esr_schema::{Category, EntityId, StoredEvent, StreamId};
use esr_store::{Checkpoint, ReadModel, ReadModelWrite, Store, StoreError};

use super::HandlerError;
use super::per_stream::{PerStreamProjection, StreamSink};

/// A checkpoint of the view every this many versions of a stream: the view as of a past time
/// folds at most this many events (one page) after the nearest one. Each costs about one
/// read model's size per this many events.
pub const CHECKPOINT_EVERY: u64 = 1000;

/// Projects view `V` into the read model named `V::NAME`, in the group `V::group()`, with a
/// [`Checkpoint`] every [`CHECKPOINT_EVERY`] versions.
pub type ViewProjection<V> = PerStreamProjection<ViewSink<V>>;

pub struct ViewSink<V> {
    store: Arc<dyn Store>,
    generation: Generation,
    view: PhantomData<fn() -> V>,
}

impl<V: View> ViewProjection<V> {
    /// Writes the generation of the read model that is served, and follows a rebuild's switch.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_generation(store, Generation::live())
    }

    /// Writes `generation` only, served or not (a rebuild filling a new generation).
    pub fn pinned(store: Arc<dyn Store>, generation: u32) -> Self {
        Self::with_generation(store, Generation::Pinned(generation))
    }

    fn with_generation(store: Arc<dyn Store>, generation: Generation) -> Self {
        let sink = ViewSink {
            store: store.clone(),
            generation,
            view: PhantomData,
        };
        Self::with_sink(sink, store)
    }
}

/// How long a process trusts the served generation it read. After a switch, a projector
/// may write the old generation this long; the rebuild folds those events into the new one
/// after waiting longer (see `esr projection rebuild`).
pub const GENERATION_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Which generation of a read model to read or write.
pub enum Generation {
    /// The served one.
    Live(LiveGenerations),
    Pinned(u32),
}

impl Generation {
    pub fn live() -> Self {
        Self::Live(LiveGenerations::default())
    }

    /// The name read model `name` is stored under in this generation.
    pub async fn name(&self, store: &dyn Store, name: &str) -> Result<String, StoreError> {
        match self {
            Self::Pinned(generation) => Ok(esr_store::generation_name(name, *generation)),
            Self::Live(live) => live.name(store, name).await,
        }
    }
}

/// The served generation of each read model, read from the store at most every
/// [`GENERATION_TTL`].
#[derive(Default)]
pub struct LiveGenerations {
    read: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

impl LiveGenerations {
    /// The name the served generation of read model `name` is stored under.
    pub async fn name(&self, store: &dyn Store, name: &str) -> Result<String, StoreError> {
        let fresh = self
            .read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .filter(|(_, at)| at.elapsed() < GENERATION_TTL)
            .map(|(generation, _)| *generation);
        let generation = match fresh {
            Some(generation) => generation,
            None => {
                let generation = store.live_generation(name).await?;
                self.read
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), (generation, std::time::Instant::now()));
                generation
            }
        };
        Ok(esr_store::generation_name(name, generation))
    }
}

fn decode<V: View>(stream: &StreamId, model: &ReadModel) -> Result<V, StoreError> {
    V::from_fields(&stream.id, &model.fields).map_err(|e| StoreError::Corrupt {
        what: format!("{} of {stream}", V::NAME),
        reason: e.to_string(),
    })
}

#[async_trait]
impl<V: View> StreamSink for ViewSink<V> {
    type Event = V::Event;
    type State = Option<V>;
    type Write = (ReadModel, Vec<Checkpoint>);

    fn group(&self) -> &str {
        V::group()
    }

    fn categories(&self) -> &[Category] {
        V::categories()
    }

    async fn load(&self, streams: &[StreamId]) -> Result<Vec<(u64, Option<V>)>, HandlerError> {
        // Resolved for the load and again for the save: a switch in between costs a version
        // conflict and another round, never a wrong write.
        let name = self.generation.name(self.store.as_ref(), V::NAME).await?;
        let models = self.store.get_read_models(&name, streams).await?;
        streams
            .iter()
            .zip(models)
            .map(|(stream, model)| match model {
                None => Ok((0, None)),
                Some(model) => Ok((model.version, Some(decode::<V>(stream, &model)?))),
            })
            .collect::<Result<_, StoreError>>()
            .map_err(|e| HandlerError::Poison(e.to_string()))
    }

    fn fold(
        &self,
        stream: &StreamId,
        stored: Option<V>,
        _expected: u64,
        events: &[(&StoredEvent, V::Event)],
    ) -> (ReadModel, Vec<Checkpoint>) {
        let mut view = stored.unwrap_or_else(|| V::empty(&stream.id));
        let mut checkpoints = vec![];
        for (stored, event) in events {
            view.apply(&stored.envelope, event);
            if stored.envelope.version % CHECKPOINT_EVERY == 0 {
                checkpoints.push(Checkpoint {
                    version: stored.envelope.version,
                    at: stored.envelope.occurred_at,
                    fields: view.to_fields(),
                });
            }
        }
        let model = ReadModel {
            version: view.version(),
            fields: view.to_fields(),
        };
        (model, checkpoints)
    }

    async fn save(
        &self,
        writes: Vec<(StreamId, u64, (ReadModel, Vec<Checkpoint>))>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut checkpoints = vec![];
        let writes = writes
            .into_iter()
            .map(|(stream, expected, (model, taken))| {
                checkpoints.extend(taken.into_iter().map(|c| (stream.clone(), c)));
                ReadModelWrite {
                    stream,
                    expected,
                    model,
                }
            })
            .collect();
        // Checkpoints first: each is the fold up to its version whoever writes it, so one
        // written for a read-model write that then loses a race is still right, while one
        // missing after a crash between the two writes would never be written again.
        let name = self.generation.name(self.store.as_ref(), V::NAME).await?;
        if !checkpoints.is_empty() {
            self.store.save_checkpoints(&name, checkpoints).await?;
        }
        self.store.put_read_models(&name, writes).await
    }
}

/// Read a stream's view the way the projector stored it, in the generation served.
pub async fn stored_view<V: View>(
    store: &dyn Store,
    id: &EntityId,
) -> Result<Option<V>, StoreError> {
    let name = esr_store::generation_name(V::NAME, store.live_generation(V::NAME).await?);
    stored_view_in::<V>(store, &name, id).await
}

/// Read a stream's view stored under `name` (a generation of `V`'s read model).
pub async fn stored_view_in<V: View>(
    store: &dyn Store,
    name: &str,
    id: &EntityId,
) -> Result<Option<V>, StoreError> {
    let stream = StreamId::of::<V::Event>(id.clone());
    match store.get_read_model(name, &stream).await? {
        None => Ok(None),
        Some(model) => decode::<V>(&stream, &model).map(Some),
    }
}
