//! Any [`View`] kept per stream, projected by the per-stream runtime.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use esr_kernel::View;
use esr_schema::{Category, EntityId, StoredEvent, StreamId};
use esr_store::{ReadModel, ReadModelWrite, Store, StoreError};

use super::HandlerError;
use super::per_stream::{PerStreamProjection, StreamSink};

/// Projects view `V` into the read model named `V::NAME`, in the group `V::group()`.
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
    type Write = ReadModel;

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
    ) -> ReadModel {
        let mut view = stored.unwrap_or_else(|| V::empty(&stream.id));
        for (stored, event) in events {
            view.apply(&stored.envelope, event);
        }
        ReadModel {
            version: view.version(),
            fields: view.to_fields(),
        }
    }

    async fn save(
        &self,
        writes: Vec<(StreamId, u64, ReadModel)>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let writes = writes
            .into_iter()
            .map(|(stream, expected, model)| ReadModelWrite {
                stream,
                expected,
                model,
            })
            .collect();
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
