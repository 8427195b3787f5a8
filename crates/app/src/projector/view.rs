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
    view: PhantomData<fn() -> V>,
}

impl<V: View> ViewProjection<V> {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let sink = ViewSink {
            store: store.clone(),
            view: PhantomData,
        };
        Self::with_sink(sink, store)
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
        let models = self.store.get_read_models(V::NAME, streams).await?;
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
        if !checkpoints.is_empty() {
            self.store.save_checkpoints(V::NAME, checkpoints).await?;
        }
        self.store.put_read_models(V::NAME, writes).await
    }
}

/// Read a stream's view the way the projector stored it.
pub async fn stored_view<V: View>(
    store: &dyn Store,
    id: &EntityId,
) -> Result<Option<V>, StoreError> {
    let stream = StreamId::of::<V::Event>(id.clone());
    match store.get_read_model(V::NAME, &stream).await? {
        None => Ok(None),
        Some(model) => decode::<V>(&stream, &model).map(Some),
    }
}
