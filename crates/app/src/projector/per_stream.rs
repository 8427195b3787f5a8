//! Projections that keep a position per source stream (a view's version, a tally's count of
//! a stream), written once for all of them.
//!
//! For each stream in a batch: read what is stored (one batched read), fold the events after
//! the stored version up to the last in hand (reading the stream itself when the batch leaves
//! a gap: the stream is the truth, so the order in which consumers get entries never
//! matters), then write once, only if the stored version is still the one read (one batched
//! write). A write another consumer beat is read and planned again, in rounds.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use esr_schema::{Category, DomainEvent, StoredEvent, StreamId};
use esr_store::{Fence, Store, StoreError};

use super::{Handler, HandlerError};

/// What a per-stream projection stores, and how it folds.
#[async_trait]
pub trait StreamSink: Send + Sync + 'static {
    type Event: DomainEvent;
    /// What is stored per stream besides its version (the view; nothing for a tally).
    type State: Send + Sync + 'static;
    /// One conditioned write.
    type Write: Send + 'static;

    /// The consumer group.
    fn group(&self) -> &str;
    fn categories(&self) -> &[Category];

    /// The stored version and state of each stream, in order (version 0: nothing stored).
    /// Beside each stream, the first version of its events in hand: a sink that answers from
    /// memory reads the store instead when that event may already be applied (a redelivery).
    async fn load(
        &self,
        streams: &[(StreamId, u64)],
    ) -> Result<Vec<(u64, Self::State)>, HandlerError>;

    /// The write that takes `stored` (at `expected`) to `target` by folding `events` (the
    /// stream's events `expected + 1 ..= target`, in order).
    fn fold(
        &self,
        stream: &StreamId,
        stored: Self::State,
        expected: u64,
        events: &[(&StoredEvent, Self::Event)],
    ) -> Self::Write;

    /// Store the writes, each only over the version it expects and only while `fence` holds
    /// its partition: one outcome each, in order; `Conflict` when another consumer wrote
    /// first, `Fenced` when the lease ran out.
    async fn save(
        &self,
        writes: Vec<(StreamId, u64, Self::Write)>,
        fence: &Fence,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;
}

/// A batch's streams are split into this many chunks, applied concurrently.
const CHUNKS: usize = 4;

/// How often a batch reads and writes again the streams whose write another consumer beat.
const WRITE_ROUNDS: usize = 10;

enum Plan<S: StreamSink> {
    AlreadyThere,
    Write(u64, S::Write),
    /// Events between the stored version and those in hand are missing (pending with another
    /// consumer, or of a category this projection does not read): read the stream from
    /// `from`, `span` events, then plan again with what was stored.
    History {
        from: u64,
        span: usize,
        stored: (u64, S::State),
    },
}

/// Plan the write that brings a stream from `expected` up to the last of `in_hand` (its
/// events, in version order), folding `history` (the stream from `expected + 1` on) instead
/// when the events in hand leave a gap.
fn plan<S: StreamSink>(
    sink: &S,
    in_hand: &[StoredEvent],
    (expected, stored): (u64, S::State),
    history: Option<&[StoredEvent]>,
) -> Result<Plan<S>, HandlerError> {
    let Some(last) = in_hand.last() else {
        return Ok(Plan::AlreadyThere);
    };
    let (stream, target) = (&last.envelope.stream, last.envelope.version);
    if target <= expected {
        return Ok(Plan::AlreadyThere);
    }
    let fresh: Vec<&StoredEvent> = in_hand
        .iter()
        .filter(|e| e.envelope.version > expected)
        .collect();
    let contiguous = fresh
        .iter()
        .enumerate()
        .all(|(i, e)| e.envelope.version == expected + 1 + i as u64);
    let events: Vec<&StoredEvent> = match history {
        _ if contiguous => fresh,
        Some(history) => history
            .iter()
            .filter(|e| e.envelope.version <= target)
            .collect(),
        None => {
            return Ok(Plan::History {
                from: expected + 1,
                span: usize::try_from(target - expected).unwrap_or(usize::MAX),
                stored: (expected, stored),
            });
        }
    };
    let reached = events.last().map_or(expected, |e| e.envelope.version);
    if reached != target || events.len() as u64 != target - expected {
        return Err(HandlerError::Transient(format!(
            "stream {stream} ends at {reached} before version {target}"
        )));
    }
    let mut decoded = Vec::with_capacity(events.len());
    for e in events {
        let event = e.decode::<S::Event>().map_err(HandlerError::from_decode)?;
        decoded.push((e, event));
    }
    Ok(Plan::Write(
        expected,
        sink.fold(stream, stored, expected, &decoded),
    ))
}

/// Bring each stream up to the last of its events in hand: one batched read and one batched
/// write for all streams, then again for those whose write another consumer beat.
async fn apply_streams<S: StreamSink>(
    sink: &S,
    store: &Arc<dyn Store>,
    in_hand: &[Vec<StoredEvent>],
    fence: &Fence,
) -> Vec<Result<(), HandlerError>> {
    let mut outcomes: Vec<Result<(), HandlerError>> = in_hand
        .iter()
        .map(|_| Err(HandlerError::Transient("stream kept changing".into())))
        .collect();
    // (index, stream) of each stream still to write; a stream without events has nothing to do.
    let mut pending: Vec<(usize, StreamId)> = Vec::with_capacity(in_hand.len());
    for (s, events) in in_hand.iter().enumerate() {
        match events.last() {
            Some(last) => pending.push((s, last.envelope.stream.clone())),
            None => outcomes[s] = Ok(()),
        }
    }
    for _ in 0..WRITE_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let streams: Vec<(StreamId, u64)> = pending
            .iter()
            .map(|(s, id)| {
                let first = in_hand[*s].first().map_or(0, |e| e.envelope.version);
                (id.clone(), first)
            })
            .collect();
        let stored = match sink.load(&streams).await {
            Ok(stored) => stored,
            Err(e) => {
                for (s, _) in &pending {
                    outcomes[*s] = Err(e.clone());
                }
                pending.clear();
                break;
            }
        };
        let mut planned = Vec::new();
        let mut gaps = Vec::new();
        for ((s, stream), stored) in pending.drain(..).zip(stored) {
            match plan(sink, &in_hand[s], stored, None) {
                Ok(Plan::History { from, span, stored }) => {
                    gaps.push((s, stream, from, span, stored));
                }
                other => planned.push((s, stream, other)),
            }
        }
        for (s, stream, history, stored) in read_histories(store, gaps).await {
            let plan = match history {
                Ok(history) => plan(sink, &in_hand[s], stored, Some(&history)),
                Err(e) => Err(e.into()),
            };
            planned.push((s, stream, plan));
        }
        let (mut writes, mut writers) = (Vec::new(), Vec::new());
        for (s, stream, plan) in planned {
            match plan {
                Ok(Plan::Write(expected, write)) => {
                    writes.push((stream.clone(), expected, write));
                    writers.push((s, stream));
                }
                Ok(Plan::AlreadyThere) => outcomes[s] = Ok(()),
                Ok(Plan::History { .. }) => {
                    outcomes[s] = Err(HandlerError::Transient(
                        "the stream did not fill the gap".into(),
                    ));
                }
                Err(e) => outcomes[s] = Err(e),
            }
        }
        if writes.is_empty() {
            break;
        }
        match sink.save(writes, fence).await {
            Ok(written) => {
                for ((s, stream), outcome) in writers.into_iter().zip(written) {
                    match outcome {
                        Ok(()) => outcomes[s] = Ok(()),
                        // Another consumer wrote first: read again and retry.
                        Err(StoreError::Conflict { .. }) => pending.push((s, stream)),
                        Err(e) => outcomes[s] = Err(e.into()),
                    }
                }
            }
            Err(e) => {
                let e = HandlerError::from(e);
                for (s, _) in writers {
                    outcomes[s] = Err(e.clone());
                }
            }
        }
    }
    for (s, _) in pending {
        outcomes[s] = Err(HandlerError::Transient("stream kept changing".into()));
    }
    outcomes
}

type History<T> = (usize, StreamId, Result<Vec<StoredEvent>, StoreError>, T);

/// The histories `plan` asked for, read concurrently.
async fn read_histories<T: Send + 'static>(
    store: &Arc<dyn Store>,
    wanted: Vec<(usize, StreamId, u64, usize, T)>,
) -> Vec<History<T>> {
    let mut reads = tokio::task::JoinSet::new();
    for (s, stream, from, span, carried) in wanted {
        let store = store.clone();
        reads.spawn(async move {
            let history = store.read_stream(&stream, from, span).await;
            (s, stream, history, carried)
        });
    }
    let mut histories = Vec::new();
    while let Some(joined) = reads.join_next().await {
        if let Ok(read) = joined {
            histories.push(read);
        }
    }
    histories
}

/// A projection run by this module: the [`Handler`] for any [`StreamSink`].
pub struct PerStreamProjection<S> {
    sink: Arc<S>,
    store: Arc<dyn Store>,
}

impl<S: StreamSink> PerStreamProjection<S> {
    pub(crate) fn with_sink(sink: S, store: Arc<dyn Store>) -> Self {
        Self {
            sink: Arc::new(sink),
            store,
        }
    }
}

#[async_trait]
impl<S: StreamSink> Handler for PerStreamProjection<S> {
    fn group(&self) -> &str {
        self.sink.group()
    }

    fn categories(&self) -> &[Category] {
        self.sink.categories()
    }

    async fn handle(&self, stored: &StoredEvent) -> Result<(), HandlerError> {
        self.handle_batch(std::slice::from_ref(stored), &Fence::Unfenced)
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    async fn handle_batch(
        &self,
        events: &[StoredEvent],
        fence: &Fence,
    ) -> Vec<Result<(), HandlerError>> {
        handle_batch(&self.sink, &self.store, events, fence).await
    }
}

/// A batch of events of any streams: grouped per stream, sorted by version, the streams
/// split in disjoint chunks applied concurrently (one chunk's folding overlaps another's
/// round trips, and the chunks spread over the cores). One outcome per event, in order.
async fn handle_batch<S: StreamSink>(
    sink: &Arc<S>,
    store: &Arc<dyn Store>,
    events: &[StoredEvent],
    fence: &Fence,
) -> Vec<Result<(), HandlerError>> {
    let mut by_stream: BTreeMap<&StreamId, Vec<usize>> = BTreeMap::new();
    for (i, stored) in events.iter().enumerate() {
        by_stream
            .entry(&stored.envelope.stream)
            .or_default()
            .push(i);
    }
    let (indexes, streams): (Vec<Vec<usize>>, Vec<Vec<StoredEvent>>) = by_stream
        .into_values()
        .map(|indexes| {
            let mut in_hand: Vec<StoredEvent> =
                indexes.iter().map(|i| events[*i].clone()).collect();
            in_hand.sort_by_key(|e| e.envelope.version);
            (indexes, in_hand)
        })
        .unzip();
    let chunk_size = streams.len().div_ceil(CHUNKS).max(1);
    let mut chunks = tokio::task::JoinSet::new();
    let mut streams = streams.into_iter();
    let mut first = 0;
    while first < indexes.len() {
        let chunk: Vec<Vec<StoredEvent>> = streams.by_ref().take(chunk_size).collect();
        let (sink, store, fence) = (sink.clone(), store.clone(), fence.clone());
        let len = chunk.len();
        chunks.spawn(async move {
            let applied = apply_streams(sink.as_ref(), &store, &chunk, &fence).await;
            (first, applied)
        });
        first += len.max(1);
    }
    let mut outcomes: Vec<Result<(), HandlerError>> = (0..events.len())
        .map(|_| Err(HandlerError::Transient("not applied".into())))
        .collect();
    while let Some(joined) = chunks.join_next().await {
        // A chunk that panicked leaves its events "not applied": they stay pending.
        let Ok((first, applied)) = joined else {
            continue;
        };
        for (stream, result) in (first..).zip(applied) {
            for &i in indexes.get(stream).map_or(&[][..], Vec::as_slice) {
                outcomes[i] = result.clone();
            }
        }
    }
    outcomes
}
