//! Any [`Tally`], projected by the per-stream runtime: the position per source stream is the
//! tally's record of what it counted, written in the same atomic step as the counts.

use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use esr_kernel::Tally;
use esr_schema::{Category, StoredEvent, StreamId};
use esr_store::{Fence, Store, StoreError, TallyCount, TallyWrite};

use super::HandlerError;
use super::per_stream::{PerStreamProjection, StreamSink};

/// Projects tally `T`: consumer group and tally both named `T::NAME`.
pub type TallyProjection<T> = PerStreamProjection<TallySink<T>>;

pub struct TallySink<T> {
    store: Arc<dyn Store>,
    tally: PhantomData<fn() -> T>,
}

impl<T: Tally> TallyProjection<T> {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let sink = TallySink {
            store: store.clone(),
            tally: PhantomData,
        };
        Self::with_sink(sink, store)
    }
}

#[async_trait]
impl<T: Tally> StreamSink for TallySink<T> {
    type Event = T::Event;
    type State = ();
    type Write = (u64, Vec<TallyCount>);

    fn group(&self) -> &str {
        T::NAME
    }

    fn categories(&self) -> &[Category] {
        T::categories()
    }

    async fn load(&self, streams: &[(StreamId, u64)]) -> Result<Vec<(u64, ())>, HandlerError> {
        let streams: Vec<StreamId> = streams.iter().map(|(stream, _)| stream.clone()).collect();
        let streams = streams.as_slice();
        let positions = self.store.tally_positions(T::NAME, streams).await?;
        Ok(positions.into_iter().map(|p| (p, ())).collect())
    }

    fn fold(
        &self,
        _stream: &StreamId,
        _stored: (),
        expected: u64,
        events: &[(&StoredEvent, T::Event)],
    ) -> (u64, Vec<TallyCount>) {
        let target = events.last().map_or(expected, |(e, _)| e.envelope.version);
        let counts = events
            .iter()
            .flat_map(|(stored, event)| {
                let version = stored.envelope.version;
                T::count(&stored.envelope, event)
                    .into_iter()
                    .map(move |(key, amount)| TallyCount {
                        version,
                        key,
                        amount,
                    })
            })
            .collect();
        (target, counts)
    }

    async fn save(
        &self,
        writes: Vec<(StreamId, u64, (u64, Vec<TallyCount>))>,
        fence: &Fence,
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
        self.store.apply_tallies(T::NAME, writes, fence).await
    }
}
