//! Tallies on Redis. A key's whole count lives in one partition, the one its name picks
//! (`keys::partition_of_key`): a sorted set per partition (scores are minus the counts, so
//! `ZRANGE` gives the order the port promises), so the top of the tally is a merge of each
//! partition's first `limit` members, whatever the tail. Counts come from source streams in
//! every partition, so they cannot be written in one step with the source's position (another
//! slot on Cluster); instead each partition records, per source, the version of the last event
//! it counted (`lua/tally_count.lua`) and counts only newer ones, and the source's position is
//! moved after (`lua/tally_position.lua`). A crash between the two leaves counts that the
//! redelivery finds already counted.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use esr_schema::StreamId;
use esr_store::{ExpectedVersion, Fence, Result, StoreError, Tallies, TallyCount, TallyWrite};

use crate::keys::Keys;
use crate::lease::FenceArgs;
use crate::partitioned::by_partition;
use crate::{RedisStore, classify, corrupt, reply_pairs};

/// Counts (or positions) per script call: enough to spread a call's cost, few enough to keep
/// it short.
const CHANGES_PER_CALL: usize = 128;

fn score_to_count(score: f64) -> i64 {
    // Scores are integral sums of integral amounts, far below 2^53.
    -(score.round() as i64)
}

#[async_trait]
impl Tallies for RedisStore {
    async fn tally_positions(&self, name: &str, sources: &[StreamId]) -> Result<Vec<u64>> {
        self.check_view_name("tally", name)?;
        let name = name.to_owned();
        by_partition(
            self,
            sources.to_vec(),
            |s| s,
            move |store, _, sources| {
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

    async fn apply_tallies(
        &self,
        name: &str,
        writes: Vec<TallyWrite>,
        fence: &Fence,
    ) -> Result<Vec<Result<()>>> {
        self.check_view_name("tally", name)?;
        // A source whose partition the fence does not hold is refused before anything is sent.
        let total = writes.len();
        let mut outcomes: Vec<Option<Result<()>>> = (0..total).map(|_| None).collect();
        let mut held = Vec::with_capacity(total);
        let mut held_at = Vec::with_capacity(total);
        for (i, write) in writes.into_iter().enumerate() {
            let partition = self.inner.keys.partition(&write.source);
            match fence.token(partition) {
                Ok(token) => {
                    held.push((write, token.map_or(0, |(_, t)| t)));
                    held_at.push(i);
                }
                Err(refused) => outcomes[i] = Some(Err(refused)),
            }
        }
        // Counts first: were the positions moved first, a crash between would lose counts.
        self.add_counts(name, &held).await?;
        let name = name.to_owned();
        let fence = fence.clone();
        let moved = by_partition(
            self,
            held.into_iter().map(|(write, _)| write).collect(),
            |w| &w.source,
            move |store, partition, writes| {
                let name = name.clone();
                let fence = FenceArgs::of(&fence, partition);
                async move { store.move_positions(&name, fence?, &writes).await }
            },
        )
        .await?;
        for (i, outcome) in held_at.into_iter().zip(moved) {
            outcomes[i] = Some(outcome);
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Err(corrupt("tally writes", "a write was not answered"))))
            .collect())
    }

    async fn tally_count(&self, name: &str, key: &str) -> Result<i64> {
        self.check_view_name("tally", name)?;
        let partition = self.inner.keys.tally_partition(key);
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(Keys::tally(name, partition))
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(score.map_or(0, score_to_count))
    }

    async fn tally_top(&self, name: &str, limit: usize) -> Result<Vec<(String, i64)>> {
        self.check_view_name("tally", name)?;
        if limit == 0 {
            return Ok(vec![]);
        }
        // Each partition's first `limit` are the only candidates it has: a key's count is
        // whole in its partition. Partitions are read concurrently (different masters on
        // Cluster).
        let mut reads = tokio::task::JoinSet::new();
        for partition in 0..self.partitions() {
            let mut conn = self.conn();
            let key = Keys::tally(name, partition);
            reads.spawn(async move {
                redis::cmd("ZRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(limit - 1)
                    .arg("WITHSCORES")
                    .query_async::<Vec<(String, f64)>>(&mut conn)
                    .await
                    .map_err(classify)
            });
        }
        let mut ranked: Vec<(String, i64)> = Vec::new();
        while let Some(read) = reads.join_next().await {
            let entries = read.map_err(|e| StoreError::Unavailable(Box::new(e)))??;
            ranked.extend(
                entries
                    .into_iter()
                    .map(|(key, score)| (key, score_to_count(score)))
                    .filter(|(_, count)| *count > 0),
            );
        }
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(limit);
        Ok(ranked)
    }
}

/// One source's counts for one partition of a tally: a unit never split between calls, since
/// the script tells counted from not by version.
struct SourceCounts<'a> {
    source: String,
    source_partition: u32,
    /// The writer's fencing token for the source's partition (0: unfenced).
    token: u64,
    counts: Vec<&'a TallyCount>,
    /// The write that added the last counts, and the last version before it: a later write
    /// of the same source in one batch adds only versions above it.
    last_write: usize,
    floor: u64,
}

impl RedisStore {
    /// Add every write's counts to the partitions of their keys, each event's counts once;
    /// beside each write, its writer's fencing token for the source's partition (0: none).
    async fn add_counts(&self, name: &str, writes: &[(TallyWrite, u64)]) -> Result<()> {
        let keys = &self.inner.keys;
        let mut partitions: BTreeMap<u32, Vec<SourceCounts<'_>>> = BTreeMap::new();
        let mut unit_of: HashMap<(u32, &StreamId), usize> = HashMap::new();
        for (w, (write, token)) in writes.iter().enumerate() {
            for count in &write.counts {
                let partition = keys.tally_partition(&count.key);
                let units = partitions.entry(partition).or_default();
                let unit = *unit_of
                    .entry((partition, &write.source))
                    .or_insert_with(|| {
                        units.push(SourceCounts {
                            source: format!("{}:{}", write.source.aggregate, write.source.id),
                            source_partition: keys.partition(&write.source),
                            token: *token,
                            counts: vec![],
                            last_write: w,
                            floor: 0,
                        });
                        units.len() - 1
                    });
                let unit = &mut units[unit];
                if unit.last_write != w {
                    unit.floor = unit.counts.last().map_or(0, |c| c.version);
                    unit.last_write = w;
                }
                if count.version > unit.floor {
                    unit.counts.push(count);
                }
            }
        }
        let mut calls = tokio::task::JoinSet::new();
        for (partition, units) in partitions {
            let cmds = self.count_calls(name, partition, &units);
            let store = self.clone();
            calls.spawn(async move {
                let (replies, _) = store
                    .script_pipeline(&store.inner.tally_count, &cmds, None)
                    .await?;
                replies.into_iter().try_for_each(|r| r.map(drop))
            });
        }
        while let Some(call) = calls.join_next().await {
            call.map_err(|e| StoreError::Unavailable(Box::new(e)))??;
        }
        Ok(())
    }

    /// EVALSHAs of the count script for one partition, about [`CHANGES_PER_CALL`] counts each.
    fn count_calls(
        &self,
        name: &str,
        partition: u32,
        units: &[SourceCounts<'_>],
    ) -> Vec<redis::Cmd> {
        let mut calls = Vec::new();
        let mut start = 0;
        while start < units.len() {
            let mut end = start;
            let mut counts = 0;
            while end < units.len()
                && (end == start || counts + units[end].counts.len() <= CHANGES_PER_CALL)
            {
                counts += units[end].counts.len();
                end += 1;
            }
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(self.inner.tally_count.get_hash())
                .arg(3)
                .arg(Keys::tally(name, partition))
                .arg(Keys::tally_sources(name, partition))
                .arg(Keys::tally_fences(name, partition))
                .arg(end - start);
            for unit in &units[start..end] {
                cmd.arg(&unit.source)
                    .arg(unit.source_partition)
                    .arg(unit.token)
                    .arg(unit.counts.len());
                for count in &unit.counts {
                    cmd.arg(count.version).arg(&count.key).arg(count.amount);
                }
            }
            calls.push(cmd);
            start = end;
        }
        calls
    }

    /// Move each write's source position (all in one partition), conditioned on the expected.
    async fn move_positions(
        &self,
        name: &str,
        fence: FenceArgs,
        writes: &[TallyWrite],
    ) -> Result<Vec<Result<()>>> {
        let chunks: Vec<&[TallyWrite]> = writes.chunks(CHANGES_PER_CALL).collect();
        let calls: Vec<redis::Cmd> = chunks
            .iter()
            .map(|chunk| {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(self.inner.tally_position.get_hash())
                    .arg(chunk.len() + 1)
                    .arg(&fence.lease);
                for write in *chunk {
                    cmd.arg(self.inner.keys.tally_position(name, &write.source));
                }
                cmd.arg(fence.token).arg(chunk.len());
                for write in *chunk {
                    cmd.arg(write.expected).arg(write.version);
                }
                cmd
            })
            .collect();
        let (replies, _) = self
            .script_pipeline(&self.inner.tally_position, &calls, None)
            .await?;
        let mut outcomes = Vec::with_capacity(writes.len());
        for (chunk, reply) in chunks.into_iter().zip(replies) {
            let reply = reply?;
            if fence.refused(&reply) {
                outcomes.extend(chunk.iter().map(|_| Err(fence.error())));
                continue;
            }
            for (write, (moved, stored)) in
                chunk
                    .iter()
                    .zip(reply_pairs("tally reply", &reply, chunk.len())?)
            {
                outcomes.push(if moved == 1 {
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
}
