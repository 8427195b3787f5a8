//! Work on many streams at once: split by partition (one slot each, so one pipeline each), the
//! partitions concurrently, results put back in the callers' order.

use std::collections::BTreeMap;
use std::future::Future;

use esr_schema::StreamId;
use esr_store::{Result, StoreError};

use crate::{RedisStore, corrupt};

/// Run `work` on each partition's share of `items` (in their order), partitions concurrently;
/// `work` (given the partition) answers one result per item it was given.
pub(crate) async fn by_partition<T, R, Fut>(
    store: &RedisStore,
    items: Vec<T>,
    stream_of: impl Fn(&T) -> &StreamId,
    work: impl Fn(RedisStore, u32, Vec<T>) -> Fut,
) -> Result<Vec<R>>
where
    T: Send + 'static,
    R: Send + 'static,
    Fut: Future<Output = Result<Vec<R>>> + Send + 'static,
{
    let total = items.len();
    let mut shares: BTreeMap<u32, (Vec<usize>, Vec<T>)> = BTreeMap::new();
    for (i, item) in items.into_iter().enumerate() {
        let share = shares
            .entry(store.inner.keys.partition(stream_of(&item)))
            .or_default();
        share.0.push(i);
        share.1.push(item);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (partition, (indexes, share)) in shares {
        let running = work(store.clone(), partition, share);
        tasks.spawn(async move { (indexes, running.await) });
    }
    let mut results: Vec<Option<R>> = (0..total).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (indexes, answered) = joined.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let answered = answered?;
        if answered.len() != indexes.len() {
            return Err(corrupt(
                "partition pipeline",
                format!("{} results for {} items", answered.len(), indexes.len()),
            ));
        }
        for (i, result) in indexes.into_iter().zip(answered) {
            results[i] = Some(result);
        }
    }
    results
        .into_iter()
        .map(|r| r.ok_or_else(|| corrupt("partition pipeline", "an item was not answered")))
        .collect()
}
