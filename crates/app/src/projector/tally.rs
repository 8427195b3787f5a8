//! Any [`Tally`], projected by the per-stream runtime: the position per source stream is the
//! tally's record of what it counted, written in the same atomic step as the counts.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use esr_kernel::Tally;
use esr_schema::{Category, StoredEvent, StreamId};
use esr_store::{Store, StoreError, TallyWrite};

use super::per_stream::{self, StreamSink};
use super::{Handler, HandlerError};

/// Projects tally `T`: consumer group and tally both named `T::NAME`.
pub struct TallyProjection<T: Tally> {
    sink: Arc<TallySink<T>>,
}

struct TallySink<T> {
    store: Arc<dyn Store>,
    tally: PhantomData<fn() -> T>,
}

impl<T: Tally> TallyProjection<T> {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            sink: Arc::new(TallySink {
                store,
                tally: PhantomData,
            }),
        }
    }
}

#[async_trait]
impl<T: Tally> StreamSink for TallySink<T> {
    type Event = T::Event;
    type State = ();
    type Write = (u64, Vec<(String, i64)>);

    async fn load(&self, streams: &[StreamId]) -> Result<Vec<(u64, ())>, HandlerError> {
        let positions = self.store.tally_positions(T::NAME, streams).await?;
        Ok(positions.into_iter().map(|p| (p, ())).collect())
    }

    fn fold(
        &self,
        _stream: &StreamId,
        _stored: &(),
        expected: u64,
        events: &[(&StoredEvent, T::Event)],
    ) -> (u64, Vec<(String, i64)>) {
        let target = events.last().map_or(expected, |(e, _)| e.envelope.version);
        let counts = events
            .iter()
            .flat_map(|(stored, event)| T::count(&stored.envelope, event))
            .collect();
        (target, counts)
    }

    async fn save(
        &self,
        writes: Vec<(StreamId, u64, (u64, Vec<(String, i64)>))>,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let writes = writes
            .into_iter()
            .map(|(source, expected, (version, counts))| TallyWrite {
                source,
                expected,
                version,
                counts,
            })
            .collect();
        self.store.apply_tallies(T::NAME, writes).await
    }
}

#[async_trait]
impl<T: Tally> Handler for TallyProjection<T> {
    fn group(&self) -> &str {
        T::NAME
    }

    fn categories(&self) -> &[Category] {
        T::categories()
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
