//! Batched appends: one pipeline of append scripts per partition (one slot each), the
//! partitions concurrently.

use std::collections::BTreeMap;
use std::sync::Arc;

use esr_store::{AppendOutcome, AppendRequest, EventStore, Result, StoreError};

use crate::{RedisStore, append_outcome, classify};

pub async fn append_batch(
    store: &RedisStore,
    requests: Vec<AppendRequest>,
) -> Result<Vec<Result<AppendOutcome>>> {
    let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, request) in requests.iter().enumerate() {
        by_partition
            .entry(store.inner.keys.partition(&request.user_id))
            .or_default()
            .push(i);
    }
    let requests = Arc::new(requests);
    let mut tasks = tokio::task::JoinSet::new();
    for (_, indexes) in by_partition {
        let (store, requests) = (store.clone(), requests.clone());
        tasks.spawn(async move {
            let outcomes = append_pipeline(&store, &requests, &indexes).await;
            (indexes, outcomes)
        });
    }
    let mut outcomes: Vec<Option<Result<AppendOutcome>>> =
        (0..requests.len()).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (indexes, result) = joined.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let results = result?;
        for (i, outcome) in indexes.into_iter().zip(results) {
            outcomes[i] = Some(outcome);
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Err(StoreError::Invalid("append missing from its batch".into())))
        })
        .collect())
}

async fn append_pipeline(
    store: &RedisStore,
    requests: &[AppendRequest],
    indexes: &[usize],
) -> Result<Vec<Result<AppendOutcome>>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    let mut prepared = Vec::with_capacity(indexes.len());
    for &i in indexes {
        match store.append_evalsha(&requests[i]) {
            Ok(cmd) => {
                pipe.add_command(cmd);
                prepared.push(Ok(()));
            }
            Err(e) => prepared.push(Err(e)),
        }
    }
    let mut replies: Vec<redis::RedisResult<(i64, i64)>> = if pipe.is_empty() {
        vec![]
    } else {
        pipe.query_async(&mut store.conn())
            .await
            .map_err(classify)?
    };
    replies.reverse();
    let mut outcomes = Vec::with_capacity(indexes.len());
    for (&i, prep) in indexes.iter().zip(prepared) {
        let outcome = match prep {
            Err(e) => Err(e),
            Ok(()) => match replies.pop() {
                Some(Ok(reply)) => append_outcome(requests[i].expected, reply),
                // After a restart emptied the script cache: this one call loads and retries.
                Some(Err(e))
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    store.append(requests[i].clone()).await
                }
                Some(Err(e)) => Err(classify(e)),
                None => Err(StoreError::Invalid(
                    "pipeline answered fewer replies than calls".into(),
                )),
            },
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}
