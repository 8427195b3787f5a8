//! Any [`View`] kept per stream, projected by the per-stream runtime.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use esr_kernel::View;
use esr_schema::{Category, EntityId, StoredEvent, StreamId};
use esr_store::{ReadModel, ReadModelWrite, Store, StoreError};

use super::per_stream::{self, StreamSink};
use super::{Handler, HandlerError};

/// Projects view `V`: consumer group and read model both named `V::NAME`.
pub struct ViewProjection<V: View> {
    sink: Arc<ViewSink<V>>,
}

struct ViewSink<V> {
    store: Arc<dyn Store>,
    view: PhantomData<fn() -> V>,
}

impl<V: View> ViewProjection<V> {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            sink: Arc::new(ViewSink {
                store,
                view: PhantomData,
            }),
        }
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
        stored: &Option<V>,
        _expected: u64,
        events: &[(&StoredEvent, V::Event)],
    ) -> ReadModel {
        let mut view = stored.clone().unwrap_or_else(|| V::empty(&stream.id));
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

#[async_trait]
impl<V: View> Handler for ViewProjection<V> {
    fn group(&self) -> &str {
        V::group()
    }

    fn categories(&self) -> &[Category] {
        V::categories()
    }

    async fn handle(&self, stored: &StoredEvent) -> Result<(), HandlerError> {
        self.handle_batch(std::slice::from_ref(stored))
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    async fn handle_batch(&self, events: &[StoredEvent]) -> Vec<Result<(), HandlerError>> {
        per_stream::handle_batch(&self.sink, &self.sink.store, events).await
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
