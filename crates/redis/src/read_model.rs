//! Read models as Redis Hashes, written by `lua/put_read_model.lua` only over the version the
//! writer read. Several users' reads or writes go in one pipeline per partition.

use std::collections::BTreeMap;

use async_trait::async_trait;
use esr_schema::UserId;
use esr_store::read_model::VERSION_FIELD;
use esr_store::{ExpectedVersion, ReadModel, ReadModelWrite, ReadModels, Result, StoreError};
use redis::Value;

use crate::partitioned::by_partition;
use crate::{RedisStore, classify, corrupt, is_noscript, keys};

#[async_trait]
impl ReadModels for RedisStore {
    async fn get_read_model(&self, name: &str, user_id: &UserId) -> Result<Option<ReadModel>> {
        check_name(name)?;
        let reply: Value = redis::cmd("HGETALL")
            .arg(self.inner.keys.read_model(name, user_id))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        read_model(name, user_id, reply)
    }

    async fn put_read_model(
        &self,
        name: &str,
        user_id: &UserId,
        expected: u64,
        model: &ReadModel,
    ) -> Result<()> {
        check_name(name)?;
        let mut invocation = self.inner.put_read_model.prepare_invoke();
        invocation
            .key(self.inner.keys.read_model(name, user_id))
            .arg(expected)
            .arg(model.version);
        for (field, value) in &model.fields {
            if field != VERSION_FIELD {
                invocation.arg(field).arg(value);
            }
        }
        let reply: (i64, i64) = invocation
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        put_outcome(expected, reply)
    }

    async fn get_read_models(
        &self,
        name: &str,
        user_ids: &[UserId],
    ) -> Result<Vec<Option<ReadModel>>> {
        check_name(name)?;
        let name = name.to_owned();
        by_partition(
            self,
            user_ids.to_vec(),
            |u| u,
            move |store, users| {
                let name = name.clone();
                async move {
                    let mut pipe = redis::pipe();
                    for user_id in &users {
                        pipe.cmd("HGETALL")
                            .arg(store.inner.keys.read_model(&name, user_id));
                    }
                    let replies: Vec<Value> = pipe
                        .query_async(&mut store.conn())
                        .await
                        .map_err(classify)?;
                    users
                        .iter()
                        .zip(replies)
                        .map(|(user_id, reply)| read_model(&name, user_id, reply))
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
    ) -> Result<Vec<Result<()>>> {
        check_name(name)?;
        let name = name.to_owned();
        by_partition(
            self,
            writes,
            |w| &w.user_id,
            move |store, writes| {
                let name = name.clone();
                async move { put_pipeline(&store, &name, &writes).await }
            },
        )
        .await
    }
}

/// One partition's writes: one pipeline of script calls.
async fn put_pipeline(
    store: &RedisStore,
    name: &str,
    writes: &[ReadModelWrite],
) -> Result<Vec<Result<()>>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for write in writes {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(store.inner.put_read_model.get_hash())
            .arg(1)
            .arg(store.inner.keys.read_model(name, &write.user_id))
            .arg(write.expected)
            .arg(write.model.version);
        for (field, value) in &write.model.fields {
            if field != VERSION_FIELD {
                cmd.arg(field).arg(value);
            }
        }
        pipe.add_command(cmd);
    }
    let replies: Vec<redis::RedisResult<(i64, i64)>> = pipe
        .query_async(&mut store.conn())
        .await
        .map_err(classify)?;
    let mut outcomes = Vec::with_capacity(writes.len());
    for (write, reply) in writes.iter().zip(replies) {
        outcomes.push(match reply {
            Ok(reply) => put_outcome(write.expected, reply),
            // A restart emptied the script cache: this write loads it and is sent again.
            Err(e) if is_noscript(&e) => {
                store
                    .put_read_model(name, &write.user_id, write.expected, &write.model)
                    .await
            }
            Err(e) => Err(classify(e)),
        });
    }
    Ok(outcomes)
}

fn read_model(name: &str, user_id: &UserId, reply: Value) -> Result<Option<ReadModel>> {
    let what = || format!("{name} of {user_id}");
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

fn check_name(name: &str) -> Result<()> {
    if keys::valid_read_model_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "read model name {name:?}: use 1 to 32 of a-z and '_', not a reserved key prefix"
        )))
    }
}
