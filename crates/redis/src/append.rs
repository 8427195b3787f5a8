//! Appends: one Lua script (`lua/append.lua`) checks the idempotency record and the expected
//! version, then writes the stream, the category streams and the record.
//!
//! A single append is one script call. A batch goes, per partition (one slot), in script calls
//! of up to [`EVENTS_PER_CALL`] events, all of a partition's calls in one pipeline, the
//! partitions concurrently.

use esr_schema::entry;
use esr_store::{AppendOutcome, AppendRequest, ExpectedVersion, Result, StoreError};

use crate::partitioned::by_partition;
use crate::{RedisStore, corrupt, reply_pairs};

/// One request's part of an append script call: the request, checked, and its keys.
pub(crate) struct AppendCall<'a> {
    request: &'a AppendRequest,
    keys: Vec<String>,
}

pub async fn append(store: &RedisStore, request: &AppendRequest) -> Result<AppendOutcome> {
    let call = append_call(store, request)?;
    if let Some(claimed) = claim_keys(store, &[Some(request)]).await?.pop() {
        claimed?;
    }
    let cmd = append_evalsha(store, &[&call]);
    let (mut replies, shortfall) = match store.inner.wait_for_replicas {
        None => (vec![query_append(store, &cmd).await], None),
        Some(wait) => {
            store
                .script_pipeline(&store.inner.append, std::slice::from_ref(&cmd), Some(wait))
                .await?
        }
    };
    let reply = replies
        .pop()
        .unwrap_or_else(|| Err(corrupt("append reply", "no reply")))?;
    append_outcomes(&[&call], &reply, shortfall.as_deref())?
        .pop()
        .unwrap_or_else(|| Err(corrupt("append reply", "no outcome")))
}

pub async fn append_batch(
    store: &RedisStore,
    requests: Vec<AppendRequest>,
) -> Result<Vec<Result<AppendOutcome>>> {
    by_partition(
        store,
        requests,
        |request| &request.stream,
        |store, _, requests| async move { append_pipeline(&store, &requests).await },
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
    // Checked first, so that a request refused as invalid claims no key.
    let checked: Vec<Result<AppendCall>> = requests.iter().map(|r| append_call(store, r)).collect();
    let claimable: Vec<Option<&AppendRequest>> = requests
        .iter()
        .zip(&checked)
        .map(|(request, call)| call.is_ok().then_some(request))
        .collect();
    let claims = claim_keys(store, &claimable).await?;
    for ((position, call), claimed) in checked.into_iter().enumerate().zip(claims) {
        let call = match call.and_then(|call| claimed.map(|()| call)) {
            Ok(call) => call,
            Err(e) => {
                outcomes[position] = Some(Err(e));
                continue;
            }
        };
        let events = requests[position].events.len();
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
    let script_calls: Vec<redis::Cmd> = chunks
        .iter()
        .map(|chunk| {
            let calls: Vec<&AppendCall> = chunk.iter().map(|(_, c)| c).collect();
            append_evalsha(store, &calls)
        })
        .collect();
    let (replies, shortfall) = store
        .script_pipeline(
            &store.inner.append,
            &script_calls,
            store.inner.wait_for_replicas,
        )
        .await?;
    for (chunk, reply) in chunks.iter().zip(replies) {
        let calls: Vec<&AppendCall> = chunk.iter().map(|(_, c)| c).collect();
        match reply.and_then(|reply| append_outcomes(&calls, &reply, shortfall.as_deref())) {
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

/// Claim each request's idempotency key for its stream (`SET NX GET`, in the key's own
/// partition, so one key names one request whatever its stream): `KeyReused` for a key first
/// sent for another stream. A request without a key passes. The claim outlives a failed
/// append, so the same request sent again passes it; it expires with the key's record.
async fn claim_keys(
    store: &RedisStore,
    requests: &[Option<&AppendRequest>],
) -> Result<Vec<Result<()>>> {
    let keys = &store.inner.keys;
    let mut outcomes: Vec<Result<()>> = requests.iter().map(|_| Ok(())).collect();
    // Per key's partition (one slot): a pipeline of claims, and (request, stream, key) each.
    let mut by_partition: std::collections::BTreeMap<u32, (redis::Pipeline, Vec<_>)> =
        Default::default();
    for (i, request) in requests.iter().enumerate() {
        let Some((request, idempotency)) =
            request.and_then(|r| r.idempotency.as_ref().map(|i| (r, i)))
        else {
            continue;
        };
        let (pipe, claimed) = by_partition
            .entry(crate::keys::partition_of_key(
                &idempotency.key,
                keys.partitions,
            ))
            .or_insert_with(|| (redis::pipe(), Vec::new()));
        let stream = format!("{}:{}", request.stream.aggregate, request.stream.id);
        pipe.cmd("SET")
            .arg(keys.idempotency_claim(&idempotency.key))
            .arg(&stream)
            .arg("NX")
            .arg("GET")
            .arg("PX")
            .arg(
                u64::try_from(idempotency.ttl.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            );
        claimed.push((i, stream, idempotency.key.clone()));
    }
    let mut claims = tokio::task::JoinSet::new();
    for (_, (pipe, streams)) in by_partition {
        let mut conn = store.conn();
        claims.spawn(async move {
            let claimed: redis::RedisResult<Vec<Option<String>>> =
                pipe.query_async(&mut conn).await;
            (streams, claimed)
        });
    }
    while let Some(joined) = claims.join_next().await {
        let (streams, claimed) = joined.map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let claimed = claimed.map_err(crate::classify)?;
        if claimed.len() != streams.len() {
            return Err(corrupt(
                "idempotency claims",
                format!("{} replies for {} claims", claimed.len(), streams.len()),
            ));
        }
        for ((i, stream, key), before) in streams.into_iter().zip(claimed) {
            if before.is_some_and(|before| before != stream) {
                outcomes[i] = Err(StoreError::KeyReused { key });
            }
        }
    }
    Ok(outcomes)
}

/// A request checked, with its share of the append script's KEYS (see `lua/append.lua`).
fn append_call<'a>(store: &RedisStore, request: &'a AppendRequest) -> Result<AppendCall<'a>> {
    if request.events.is_empty() {
        return Err(StoreError::Invalid(
            "an append needs at least one event".into(),
        ));
    }
    let keys = &store.inner.keys;
    let stream = &request.stream;
    let partition = keys.partition(stream);
    let idempotency_key = request.idempotency.as_ref().map_or("", |i| i.key.as_str());
    let mut script_keys = vec![
        keys.version(stream),
        keys.stream(stream),
        keys.idempotency(stream, idempotency_key),
    ];
    for event in &request.events {
        script_keys.push(crate::keys::Keys::category_stream(
            &event.category,
            partition,
        ));
    }
    Ok(AppendCall {
        request,
        keys: script_keys,
    })
}

/// One EVALSHA of the append script for `calls` (all in one partition); NOSCRIPT is the
/// caller's to handle. The ARGV are written from the requests straight into the command.
fn append_evalsha(store: &RedisStore, calls: &[&AppendCall]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(store.inner.append.get_hash())
        .arg(calls.iter().map(|c| c.keys.len()).sum::<usize>());
    for call in calls {
        cmd.arg(&call.keys);
    }
    cmd.arg(calls.len());
    for call in calls {
        let request = call.request;
        match request.expected {
            ExpectedVersion::Any => cmd.arg("any"),
            ExpectedVersion::NoStream => cmd.arg(0),
            ExpectedVersion::Exactly(v) => cmd.arg(v),
        };
        let ttl_ms = request.idempotency.as_ref().map_or(0, |i| {
            u64::try_from(i.ttl.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let fingerprint = request
            .idempotency
            .as_ref()
            .map_or("", |i| i.fingerprint.as_str());
        cmd.arg(ttl_ms)
            .arg(request.events.len())
            .arg(entry::id_field(&request.stream.aggregate))
            .arg(request.stream.id.as_str())
            .arg(fingerprint);
        // The same text forms as stored entries (`entry::to_fields`), in the script's order,
        // minus the version the script assigns.
        for event in &request.events {
            cmd.arg(&event.event_type)
                .arg(event.event_id.hyphenated().to_string())
                .arg(entry::format_time(event.occurred_at))
                .arg(event.schema_version)
                .arg(&event.correlation_id)
                .arg(entry::stored_causation_of(
                    &event.correlation_id,
                    &event.causation_id,
                ))
                .arg(event.actor.as_deref().unwrap_or(""))
                .arg(&event.payload);
        }
    }
    cmd
}

pub(crate) async fn query_append(store: &RedisStore, cmd: &redis::Cmd) -> Result<Vec<i64>> {
    store.query_script(&store.inner.append, cmd).await
}

/// The append script's reply for `calls`. With a replication `shortfall`, what was written
/// (or found written) is not answered as done: it could be lost in a failover.
fn append_outcomes(
    calls: &[&AppendCall<'_>],
    reply: &[i64],
    shortfall: Option<&str>,
) -> Result<Vec<Result<AppendOutcome>>> {
    Ok(calls
        .iter()
        .zip(reply_pairs("append reply", reply, calls.len())?)
        .map(
            |(call, pair)| match (append_outcome(call, pair), shortfall) {
                (Ok(_), Some(shortfall)) => Err(StoreError::Unavailable(Box::new(
                    std::io::Error::other(shortfall.to_owned()),
                ))),
                (outcome, _) => outcome,
            },
        )
        .collect())
}

fn append_outcome(call: &AppendCall<'_>, reply: (i64, i64)) -> Result<AppendOutcome> {
    let request = call.request;
    let version = u64::try_from(reply.1)
        .map_err(|_| corrupt("append reply", format!("negative version {}", reply.1)))?;
    match reply.0 {
        1 => Ok(AppendOutcome {
            version,
            duplicate: false,
        }),
        2 => Ok(AppendOutcome {
            version,
            duplicate: true,
        }),
        0 => Err(StoreError::Conflict {
            expected: request.expected,
            actual: version,
        }),
        3 => Err(StoreError::KeyReused {
            key: request
                .idempotency
                .as_ref()
                .map(|i| i.key.clone())
                .unwrap_or_default(),
        }),
        // Refused before any write: the stream and its counter still agree.
        4 => {
            let key = usize::try_from(reply.1)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|n| call.keys.get(n))
                .map_or("?", String::as_str);
            Err(corrupt(
                key,
                "the key holds another type than this store writes there; nothing was appended",
            ))
        }
        5 => Err(corrupt(
            call.keys.get(1).map_or("?", String::as_str),
            format!(
                "the stream holds an entry past its version counter ({version}) that this \
                 store did not write; nothing was appended"
            ),
        )),
        other => Err(corrupt("append reply", format!("unknown code {other}"))),
    }
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
        StoreError::KeyReused { key } => StoreError::KeyReused { key: key.clone() },
        StoreError::Fenced { partition } => StoreError::Fenced {
            partition: *partition,
        },
    }
}
