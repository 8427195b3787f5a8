//! Batched appends: per partition (one slot), the requests go in script calls of up to
//! [`EVENTS_PER_CALL`] events, all of a partition's calls in one pipeline, the partitions
//! concurrently.

use esr_store::{AppendOutcome, AppendRequest, Result, StoreError};

use crate::partitioned::by_partition;
use crate::{AppendCall, RedisStore, append_outcomes, classify, corrupt, is_noscript};

pub async fn append_batch(
    store: &RedisStore,
    requests: Vec<AppendRequest>,
) -> Result<Vec<Result<AppendOutcome>>> {
    by_partition(
        store,
        requests,
        |request| &request.user_id,
        |store, requests| async move { append_pipeline(&store, &requests).await },
    )
    .await
}

/// Events per script call: enough to spread a call's cost over many events, few enough that
/// one call (which runs alone on the server) stays well under a millisecond or so.
const EVENTS_PER_CALL: usize = 128;

/// The requests of one partition: their script calls, chunked, in one pipeline.
async fn append_pipeline(
    store: &RedisStore,
    requests: &[AppendRequest],
) -> Result<Vec<Result<AppendOutcome>>> {
    let mut outcomes: Vec<Option<Result<AppendOutcome>>> = requests.iter().map(|_| None).collect();
    let mut chunks: Vec<Vec<(usize, AppendCall)>> = vec![];
    let mut events_in_chunk = 0;
    for (position, request) in requests.iter().enumerate() {
        let call = match store.append_call(request) {
            Ok(call) => call,
            Err(e) => {
                outcomes[position] = Some(Err(e));
                continue;
            }
        };
        let events = request.events.len();
        match chunks.last_mut() {
            Some(chunk) if events_in_chunk + events <= EVENTS_PER_CALL => {
                chunk.push((position, call));
                events_in_chunk += events;
            }
            _ => {
                chunks.push(vec![(position, call)]);
                events_in_chunk = events;
            }
        }
    }
    let evalsha = |chunk: &[(usize, AppendCall)]| {
        let calls: Vec<&AppendCall> = chunk.iter().map(|(_, c)| c).collect();
        store.append_evalsha(&calls)
    };
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for chunk in &chunks {
        pipe.add_command(evalsha(chunk));
    }
    let replies: Vec<redis::RedisResult<Vec<i64>>> = if chunks.is_empty() {
        vec![]
    } else {
        pipe.query_async(&mut store.conn())
            .await
            .map_err(classify)?
    };
    if replies.len() != chunks.len() {
        return Err(corrupt(
            "append pipeline",
            format!("{} replies for {} calls", replies.len(), chunks.len()),
        ));
    }
    for (chunk, reply) in chunks.iter().zip(replies) {
        let reply = match reply {
            Ok(reply) => Ok(reply),
            // A restart emptied the script cache: this call loads it and is sent again.
            Err(e) if is_noscript(&e) => store.query_append(&evalsha(chunk)).await,
            Err(e) => Err(classify(e)),
        };
        let calls: Vec<&AppendCall> = chunk.iter().map(|(_, c)| c).collect();
        match reply.and_then(|reply| append_outcomes(&calls, &reply)) {
            Ok(chunk_outcomes) => {
                for ((position, _), outcome) in chunk.iter().zip(chunk_outcomes) {
                    outcomes[*position] = Some(outcome);
                }
            }
            // The call failed as a whole (a script error can come after some requests were
            // written): every request of it gets the error, and must be checked by reading.
            Err(e) => {
                for (position, _) in chunk {
                    outcomes[*position] = Some(Err(copy_of(&e)));
                }
            }
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(StoreError::Invalid("append left unanswered".into()))))
        .collect())
}

/// The same error for another request of a failed call (`StoreError` holds a boxed source).
fn copy_of(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict { expected, actual } => StoreError::Conflict {
            expected: *expected,
            actual: *actual,
        },
        StoreError::Unavailable(source) => {
            StoreError::Unavailable(Box::new(std::io::Error::other(source.to_string())))
        }
        StoreError::Corrupt { what, reason } => StoreError::Corrupt {
            what: what.clone(),
            reason: reason.clone(),
        },
        StoreError::Invalid(reason) => StoreError::Invalid(reason.clone()),
    }
}
