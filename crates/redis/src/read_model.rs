//! Read models as Redis Hashes, written by `lua/put_read_model.lua` only over the version the
//! writer read. Several streams' reads or writes go in one pipeline per partition.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use esr_schema::StreamId;
use esr_store::read_model::VERSION_FIELD;
use esr_store::{
    Checkpoint, ExpectedVersion, Fence, ReadModel, ReadModelWrite, ReadModels, Result, StoreError,
};
use redis::Value;

use crate::lease::FenceArgs;
use crate::partitioned::by_partition;
use crate::{RedisStore, classify, corrupt, keys, reply_pairs};

#[async_trait]
impl ReadModels for RedisStore {
    async fn live_generation(&self, name: &str) -> Result<u32> {
        self.check_view_name("read model", name)?;
        let key = keys::Keys::generation(name);
        let stored: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        match stored {
            None => Ok(1),
            Some(text) => text
                .parse()
                .map_err(|_| corrupt(&key, format!("{text:?} is not a generation"))),
        }
    }

    async fn set_live_generation(&self, name: &str, generation: u32) -> Result<()> {
        self.check_view_name("read model", name)?;
        redis::cmd("SET")
            .arg(keys::Keys::generation(name))
            .arg(generation.max(1))
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(classify)
    }

    /// One sorted set per stream, scored by the checkpoint's time in microseconds (exact in a
    /// double until the year 2255); the member is MessagePack of (version, time, fields), so a
    /// checkpoint saved twice is one member.
    async fn save_checkpoints(
        &self,
        name: &str,
        checkpoints: Vec<(StreamId, Checkpoint)>,
        fence: &Fence,
    ) -> Result<()> {
        self.check_view_name("read model", name)?;
        for (stream, checkpoint) in checkpoints {
            let fence = FenceArgs::of(fence, self.inner.keys.partition(&stream))?;
            let micros = checkpoint.at.timestamp_micros();
            let member = rmp_serde::to_vec(&(checkpoint.version, micros, &checkpoint.fields))
                .map_err(|e| StoreError::Invalid(format!("checkpoint does not encode: {e}")))?;
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.inner.save_checkpoint.get_hash())
                .arg(2)
                .arg(&fence.lease)
                .arg(self.inner.keys.checkpoints(name, &stream))
                .arg(fence.token)
                .arg(micros)
                .arg(member);
            let reply = self.query_script(&self.inner.save_checkpoint, &cmd).await?;
            if fence.refused(&reply) {
                return Err(fence.error());
            }
        }
        Ok(())
    }

    async fn checkpoint_at(
        &self,
        name: &str,
        stream: &StreamId,
        at: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>> {
        self.check_view_name("read model", name)?;
        let key = self.inner.keys.checkpoints(name, stream);
        let found: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(&key)
            .arg(at.timestamp_micros())
            .arg("-inf")
            .arg("BYSCORE")
            .arg("REV")
            .arg("LIMIT")
            .arg(0)
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let Some(member) = found.first() else {
            return Ok(None);
        };
        let (version, micros, fields): (u64, i64, BTreeMap<String, String>) =
            rmp_serde::from_slice(member).map_err(|e| corrupt(&key, e.to_string()))?;
        let at = DateTime::from_timestamp_micros(micros)
            .ok_or_else(|| corrupt(&key, format!("time {micros} out of range")))?;
        Ok(Some(Checkpoint {
            version,
            at,
            fields,
        }))
    }

    async fn get_read_model(&self, name: &str, stream: &StreamId) -> Result<Option<ReadModel>> {
        self.check_view_name("read model", name)?;
        let reply: Value = redis::cmd("HGETALL")
            .arg(self.inner.keys.read_model(name, stream))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        read_model(name, stream, reply)
    }

    async fn put_read_model(
        &self,
        name: &str,
        stream: &StreamId,
        expected: u64,
        model: &ReadModel,
    ) -> Result<()> {
        self.check_view_name("read model", name)?;
        let write = ReadModelWrite {
            stream: stream.clone(),
            expected,
            model: model.clone(),
        };
        let partition = self.inner.keys.partition(stream);
        let unfenced = FenceArgs::of(&Fence::Unfenced, partition)?;
        let call = put_call(self, name, &unfenced, std::slice::from_ref(&write));
        let reply = self.query_script(&self.inner.put_read_model, &call).await?;
        put_outcomes(std::slice::from_ref(&write), &reply)?
            .pop()
            .unwrap_or_else(|| Err(corrupt("read model reply", "no outcome")))
    }

    async fn get_read_models(
        &self,
        name: &str,
        streams: &[StreamId],
    ) -> Result<Vec<Option<ReadModel>>> {
        self.check_view_name("read model", name)?;
        let name = name.to_owned();
        by_partition(
            self,
            streams.to_vec(),
            |u| u,
            move |store, _, streams| {
                let name = name.clone();
                async move {
                    let mut pipe = redis::pipe();
                    for stream in &streams {
                        pipe.cmd("HGETALL")
                            .arg(store.inner.keys.read_model(&name, stream));
                    }
                    let replies: Vec<Value> = pipe
                        .query_async(&mut store.conn())
                        .await
                        .map_err(classify)?;
                    streams
                        .iter()
                        .zip(replies)
                        .map(|(stream, reply)| read_model(&name, stream, reply))
                        .collect()
                }
            },
        )
        .await
    }

    async fn put_read_models(
        &self,
        name: &str,
        writes: Vec<ReadModelWrite>,
        fence: &Fence,
    ) -> Result<Vec<Result<()>>> {
        self.check_view_name("read model", name)?;
        let name = name.to_owned();
        let fence = fence.clone();
        by_partition(
            self,
            writes,
            |w| &w.stream,
            move |store, partition, writes| {
                let name = name.clone();
                let checked = FenceArgs::of(&fence, partition);
                async move {
                    match checked {
                        Ok(fence) => put_pipeline(&store, &name, &fence, &writes).await,
                        // Not held here: every write of the partition is refused, nothing sent.
                        Err(_) => Ok(writes
                            .iter()
                            .map(|_| Err(StoreError::Fenced { partition }))
                            .collect()),
                    }
                }
            },
        )
        .await
    }
}

/// Writes per script call: enough to spread a call's cost, few enough to keep it short.
const WRITES_PER_CALL: usize = 128;

/// One partition's writes: script calls of up to [`WRITES_PER_CALL`], in one pipeline.
async fn put_pipeline(
    store: &RedisStore,
    name: &str,
    fence: &FenceArgs,
    writes: &[ReadModelWrite],
) -> Result<Vec<Result<()>>> {
    let chunks: Vec<&[ReadModelWrite]> = writes.chunks(WRITES_PER_CALL).collect();
    let calls: Vec<redis::Cmd> = chunks
        .iter()
        .map(|chunk| put_call(store, name, fence, chunk))
        .collect();
    let replies = store
        .script_pipeline(&store.inner.put_read_model, &calls, None)
        .await?
        .0;
    let mut outcomes = Vec::with_capacity(writes.len());
    for (chunk, reply) in chunks.into_iter().zip(replies) {
        let reply = reply?;
        if fence.refused(&reply) {
            outcomes.extend(chunk.iter().map(|_| Err(fence.error())));
        } else {
            outcomes.extend(put_outcomes(chunk, &reply)?);
        }
    }
    Ok(outcomes)
}

/// One EVALSHA of the read-model script for `writes` (all in one partition).
fn put_call(
    store: &RedisStore,
    name: &str,
    fence: &FenceArgs,
    writes: &[ReadModelWrite],
) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(store.inner.put_read_model.get_hash())
        .arg(writes.len() + 1)
        .arg(&fence.lease);
    for write in writes {
        cmd.arg(store.inner.keys.read_model(name, &write.stream));
    }
    cmd.arg(fence.token).arg(writes.len());
    for write in writes {
        let fields: Vec<(&String, &String)> = write
            .model
            .fields
            .iter()
            .filter(|(field, _)| field.as_str() != VERSION_FIELD)
            .collect();
        cmd.arg(write.expected)
            .arg(write.model.version)
            .arg(fields.len());
        for (field, value) in fields {
            cmd.arg(field).arg(value);
        }
    }
    cmd
}

/// The script's reply for `writes`.
fn put_outcomes(writes: &[ReadModelWrite], reply: &[i64]) -> Result<Vec<Result<()>>> {
    Ok(writes
        .iter()
        .zip(reply_pairs("read model reply", reply, writes.len())?)
        .map(|(write, pair)| put_outcome(write.expected, pair))
        .collect())
}

fn read_model(name: &str, stream: &StreamId, reply: Value) -> Result<Option<ReadModel>> {
    let what = || format!("{name} of {stream}");
    let fields: BTreeMap<String, String> =
        redis::from_redis_value(reply).map_err(|e| corrupt(&what(), e.to_string()))?;
    if fields.is_empty() {
        return Ok(None);
    }
    let version = fields
        .get(VERSION_FIELD)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(&what(), "no version field"))?;
    Ok(Some(ReadModel { version, fields }))
}

fn put_outcome(expected: u64, (written, stored): (i64, i64)) -> Result<()> {
    if written == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict {
            expected: ExpectedVersion::Exactly(expected),
            actual: u64::try_from(stored).unwrap_or(0),
        })
    }
}
