//! Tallies on Redis: per partition, a sorted set of counts (scores are minus the counts, so
//! `ZRANGE` gives the order the port promises) and a position per source stream, changed
//! together by one script (`lua/tally.lua`). A count is spread over the partitions of the
//! streams that fed it: a key's count is the sum of its scores, and the top keys are found
//! by reading every partition's sets down to where no unseen key could still enter.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use esr_schema::StreamId;
use esr_store::{ExpectedVersion, Result, StoreError, Tallies, TallyWrite};

use crate::keys::{self, Keys};
use crate::partitioned::by_partition;
use crate::{RedisStore, classify, corrupt, is_noscript, reply_pairs};

/// Changes per script call: enough to spread a call's cost, few enough to keep it short.
const CHANGES_PER_CALL: usize = 128;

fn check_name(name: &str) -> Result<()> {
    if keys::valid_view_name(name) {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "tally name {name:?}: use 1 to 32 of a-z, 0-9 and '_', not a reserved word"
        )))
    }
}

fn score_to_count(score: f64) -> i64 {
    // Scores are integral sums of integral amounts, far below 2^53.
    -(score.round() as i64)
}

#[async_trait]
impl Tallies for RedisStore {
    async fn tally_positions(&self, name: &str, sources: &[StreamId]) -> Result<Vec<u64>> {
        check_name(name)?;
        let name = name.to_owned();
        by_partition(
            self,
            sources.to_vec(),
            |s| s,
            move |store, sources| {
                let name = name.clone();
                async move {
                    let mut pipe = redis::pipe();
                    for source in &sources {
                        pipe.cmd("GET")
                            .arg(store.inner.keys.tally_position(&name, source));
                    }
                    let positions: Vec<Option<u64>> = pipe
                        .query_async(&mut store.conn())
                        .await
                        .map_err(classify)?;
                    Ok(positions.into_iter().map(|p| p.unwrap_or(0)).collect())
                }
            },
        )
        .await
    }

    async fn apply_tallies(&self, name: &str, writes: Vec<TallyWrite>) -> Result<Vec<Result<()>>> {
        check_name(name)?;
        let name = name.to_owned();
        by_partition(
            self,
            writes,
            |w| &w.source,
            move |store, writes| {
                let name = name.clone();
                async move { apply_pipeline(&store, &name, &writes).await }
            },
        )
        .await
    }

    async fn tally_count(&self, name: &str, key: &str) -> Result<i64> {
        check_name(name)?;
        let totals = self.totals(name, vec![key.to_owned()]).await?;
        Ok(totals.first().map_or(0, |(_, count)| *count))
    }

    async fn tally_top(&self, name: &str, limit: usize) -> Result<Vec<(String, i64)>> {
        check_name(name)?;
        if limit == 0 {
            return Ok(vec![]);
        }
        let partitions = self.partitions();
        // Read each partition's set in pages, in count order. Every key not yet seen has, in
        // each partition, at most the count last read there (0 once a set is exhausted): the
        // sum of those is the most it can have. Stop when `limit` seen keys beat it outright.
        let page = limit.max(16);
        let mut offsets = vec![0usize; partitions as usize];
        let mut frontier = vec![i64::MAX; partitions as usize];
        let mut seen: BTreeSet<String> = BTreeSet::new();
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        let mut fresh: Vec<String> = Vec::new();
        loop {
            for partition in 0..partitions {
                let p = partition as usize;
                if frontier[p] == 0 {
                    continue;
                }
                let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(Keys::tally(name, partition))
                    .arg(offsets[p])
                    .arg(offsets[p] + page - 1)
                    .arg("WITHSCORES")
                    .query_async(&mut self.conn())
                    .await
                    .map_err(classify)?;
                offsets[p] += entries.len();
                frontier[p] = if entries.len() < page {
                    0
                } else {
                    entries.last().map_or(0, |(_, s)| score_to_count(*s))
                };
                fresh.extend(
                    entries
                        .into_iter()
                        .map(|(key, _)| key)
                        .filter(|k| seen.insert(k.clone())),
                );
            }
            // The keys first seen this round: their whole counts, one ZMSCORE per partition.
            for (key, count) in self.totals(name, std::mem::take(&mut fresh)).await? {
                totals.insert(key, count);
            }
            let bound: i64 = frontier.iter().sum();
            let mut ranked: Vec<(String, i64)> = totals
                .iter()
                .filter(|(_, count)| **count > 0)
                .map(|(k, c)| (k.clone(), *c))
                .collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let settled = bound == 0 || ranked.get(limit - 1).is_some_and(|(_, c)| *c > bound);
            if settled {
                ranked.truncate(limit);
                return Ok(ranked);
            }
        }
    }
}

impl RedisStore {
    /// The whole counts of `keys`: their scores summed over every partition's set.
    async fn totals(&self, name: &str, keys: Vec<String>) -> Result<Vec<(String, i64)>> {
        if keys.is_empty() {
            return Ok(vec![]);
        }
        let mut sums = vec![0i64; keys.len()];
        for partition in 0..self.partitions() {
            let scores: Vec<Option<f64>> = redis::cmd("ZMSCORE")
                .arg(Keys::tally(name, partition))
                .arg(&keys)
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            for (sum, score) in sums.iter_mut().zip(scores) {
                *sum += score.map_or(0, score_to_count);
            }
        }
        Ok(keys.into_iter().zip(sums).collect())
    }
}

/// One partition's changes: script calls of up to [`CHANGES_PER_CALL`], in one pipeline.
async fn apply_pipeline(
    store: &RedisStore,
    name: &str,
    writes: &[TallyWrite],
) -> Result<Vec<Result<()>>> {
    if writes.is_empty() {
        return Ok(vec![]);
    }
    let chunks: Vec<&[TallyWrite]> = writes.chunks(CHANGES_PER_CALL).collect();
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for chunk in &chunks {
        pipe.add_command(apply_call(store, name, chunk));
    }
    let replies: Vec<redis::RedisResult<Vec<i64>>> = pipe
        .query_async(&mut store.conn())
        .await
        .map_err(classify)?;
    if replies.len() != chunks.len() {
        return Err(corrupt(
            "tally pipeline",
            format!("{} replies for {} calls", replies.len(), chunks.len()),
        ));
    }
    let mut outcomes = Vec::with_capacity(writes.len());
    for (chunk, reply) in chunks.into_iter().zip(replies) {
        let reply = match reply {
            Ok(reply) => reply,
            // A restart emptied the script cache: this call loads it and is sent again.
            Err(e) if is_noscript(&e) => {
                store
                    .query_script(&store.inner.tally, &apply_call(store, name, chunk))
                    .await?
            }
            Err(e) => return Err(classify(e)),
        };
        for (write, (applied, stored)) in
            chunk
                .iter()
                .zip(reply_pairs("tally reply", &reply, chunk.len())?)
        {
            outcomes.push(if applied == 1 {
                Ok(())
            } else {
                Err(StoreError::Conflict {
                    expected: ExpectedVersion::Exactly(write.expected),
                    actual: u64::try_from(stored).unwrap_or(0),
                })
            });
        }
    }
    Ok(outcomes)
}

/// One EVALSHA of the tally script for `writes` (all in one partition).
fn apply_call(store: &RedisStore, name: &str, writes: &[TallyWrite]) -> redis::Cmd {
    let keys = &store.inner.keys;
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(store.inner.tally.get_hash()).arg(writes.len() * 2);
    for write in writes {
        cmd.arg(keys.tally_position(name, &write.source))
            .arg(Keys::tally(name, keys.partition(&write.source)));
    }
    cmd.arg(writes.len());
    for write in writes {
        cmd.arg(write.expected)
            .arg(write.version)
            .arg(write.counts.len());
        for (key, amount) in &write.counts {
            cmd.arg(key).arg(amount);
        }
    }
    cmd
}
