//! Any [`View`] kept per stream, projected by the per-stream runtime.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use esr_kernel::View;
use esr_schema::{Category, StoredEvent, StreamId};
use esr_store::{Checkpoint, Fence, ReadModel, ReadModelWrite, Store, StoreError};

use super::HandlerError;
use super::per_stream::{PerStreamProjection, StreamSink};
use crate::read_model::{Generation, decode};

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
    /// The models this process wrote last, by generation name and stream: a guess checked by
    /// the version-conditioned write (a stale one costs a conflict and a reload), so a stream
    /// projected by this process alone is never read back from the store. Within a partition
    /// this instance holds by lease no other instance writes, so the guesses hold.
    recent: std::sync::Mutex<Recent<V>>,
    view: PhantomData<fn() -> V>,
}

/// The models a sink keeps, by stream, with their stored size: those of one generation (a
/// switch to another starts over).
struct Recent<V> {
    generation: String,
    models: HashMap<StreamId, (u64, V, usize)>,
    bytes: usize,
}

impl<V> Recent<V> {
    fn of(&mut self, generation: &str) -> &mut Self {
        if self.generation != generation {
            self.clear();
            generation.clone_into(&mut self.generation);
        }
        self
    }

    /// The model kept for `stream`, taken out (the fold consumes it, the write puts the next
    /// back), if it has not applied `first`; a model that has stays for the store to judge.
    fn take(&mut self, stream: &StreamId, first: u64) -> Option<(u64, V)> {
        if self
            .models
            .get(stream)
            .is_none_or(|(version, _, _)| *version >= first)
        {
            return None;
        }
        let (version, view, bytes) = self.models.remove(stream)?;
        self.bytes -= bytes;
        Some((version, view))
    }

    fn insert(&mut self, stream: StreamId, version: u64, view: V, bytes: usize) {
        // Bounded without bookkeeping: when full, start over (a miss is one read).
        if self.bytes + bytes > RECENT_BYTES {
            self.clear();
        }
        self.bytes += bytes;
        if let Some((_, _, old)) = self.models.insert(stream, (version, view, bytes)) {
            self.bytes -= old;
        }
    }

    fn remove(&mut self, stream: &StreamId) {
        if let Some((_, _, old)) = self.models.remove(stream) {
            self.bytes -= old;
        }
    }

    fn clear(&mut self) {
        self.models.clear();
        self.bytes = 0;
    }
}

/// What a sink's kept models may weigh, counted as their stored fields: models of any size,
/// a few thousand profiles with 100 likes or hundreds of thousands of small ones.
const RECENT_BYTES: usize = 64 * 1024 * 1024;

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
            recent: std::sync::Mutex::new(Recent {
                generation: String::new(),
                models: HashMap::new(),
                bytes: 0,
            }),
            view: PhantomData,
        };
        Self::with_sink(sink, store)
    }
}

#[async_trait]
impl<V: View> StreamSink for ViewSink<V> {
    type Event = V::Event;
    type State = Option<V>;
    type Write = (ReadModel, Vec<Checkpoint>, V);

    fn group(&self) -> &str {
        V::group()
    }

    fn categories(&self) -> &[Category] {
        V::categories()
    }

    async fn load(
        &self,
        streams: &[(StreamId, u64)],
    ) -> Result<Vec<(u64, Option<V>)>, HandlerError> {
        // Resolved for the load and again for the save: a switch in between costs a version
        // conflict and another round, never a wrong write.
        let name = self.generation.name(self.store.as_ref(), V::NAME).await?;
        let mut loaded: Vec<Option<(u64, Option<V>)>> = {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            let recent = recent.of(&name);
            streams
                .iter()
                // An event in hand the guess says is applied is a redelivery: the store
                // decides whether the write really landed.
                .map(|(stream, first)| {
                    recent
                        .take(stream, *first)
                        .map(|(version, view)| (version, Some(view)))
                })
                .collect()
        };
        let missing: Vec<StreamId> = streams
            .iter()
            .zip(&loaded)
            .filter(|(_, hit)| hit.is_none())
            .map(|((stream, _), _)| stream.clone())
            .collect();
        if !missing.is_empty() {
            let models = self.store.get_read_models(&name, &missing).await?;
            let mut read = missing.iter().zip(models);
            for slot in loaded.iter_mut().filter(|slot| slot.is_none()) {
                let Some((stream, model)) = read.next() else {
                    break;
                };
                *slot = Some(match model {
                    None => (0, None),
                    Some(model) => (
                        model.version,
                        Some(
                            decode::<V>(stream, &model)
                                .map_err(|e| HandlerError::Poison(e.to_string()))?,
                        ),
                    ),
                });
            }
        }
        Ok(loaded
            .into_iter()
            .map(|slot| slot.unwrap_or((0, None)))
            .collect())
    }

    fn fold(
        &self,
        stream: &StreamId,
        stored: Option<V>,
        _expected: u64,
        events: &[(&StoredEvent, V::Event)],
    ) -> (ReadModel, Vec<Checkpoint>, V) {
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
        (model, checkpoints, view)
    }

    async fn save(
        &self,
        writes: Vec<(StreamId, u64, (ReadModel, Vec<Checkpoint>, V))>,
        fence: &Fence,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut checkpoints = vec![];
        let mut views = Vec::with_capacity(writes.len());
        let writes: Vec<ReadModelWrite> = writes
            .into_iter()
            .map(|(stream, expected, (model, taken, view))| {
                checkpoints.extend(taken.into_iter().map(|c| (stream.clone(), c)));
                let bytes = model.fields.iter().map(|(k, v)| k.len() + v.len()).sum();
                views.push((stream.clone(), model.version, view, bytes));
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
            self.store
                .save_checkpoints(&name, checkpoints, fence)
                .await?;
        }
        let outcomes = self.store.put_read_models(&name, writes, fence).await;
        let mut kept = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let recent = kept.of(&name);
        match &outcomes {
            Ok(outcomes) => {
                for ((stream, version, view, bytes), outcome) in views.into_iter().zip(outcomes) {
                    match outcome {
                        Ok(()) => recent.insert(stream, version, view, bytes),
                        // Another writer got there first: what is stored is unknown now.
                        Err(_) => recent.remove(&stream),
                    }
                }
            }
            // The store failed as a whole (a restart may have lost recent writes): forget all.
            Err(_) => recent.clear(),
        }
        drop(kept);
        outcomes
    }
}
