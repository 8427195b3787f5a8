//! Consumer groups on the partitioned category streams.
//!
//! A consumer reads the partitions it is given (all, or those it holds leases on). It first
//! sweeps them without blocking; when all are empty it blocks on them (on one server one read
//! over every stream; on Cluster one dedicated connection per partition) and returns the first
//! batch that arrives. On one server the sweep is one `XREADGROUP` over all the streams too,
//! `count` entries per stream at most: what is not handed out at once waits in this consumer's
//! buffer (at most `count` times the streams read) for its next calls, so 48 partitions cost
//! one round trip, not 48. Blocked reads that answer later keep their entries in the buffer
//! too, so nothing is handed out twice or dropped; a consumer that never calls again leaves
//! them pending, to be claimed like any dead consumer's.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use esr_schema::Category;
use esr_store::{
    DeadLetter, Delivery, EntryId, EntryRef, GroupStats, Result, StoreError, Subscriptions,
};
use redis::Value;
use tokio::sync::mpsc;

use crate::conn::Conn;
use crate::keys::Keys;
use crate::{RedisStore, classify, corrupt, parse};

/// Headroom above `BLOCK` before a blocked read is given up as lost.
const BLOCK_SLACK: Duration = Duration::from_secs(5);

/// A consumer's read state, locked by each of its reads in turn.
type SharedConsumer = Arc<tokio::sync::Mutex<Consumer>>;

#[derive(Default)]
pub struct State {
    /// Per group and consumer name.
    consumers: Mutex<HashMap<(String, String), SharedConsumer>>,
    /// XAUTOCLAIM cursors, per group and stream, so successive claims walk the whole list.
    claim_cursors: Mutex<HashMap<(String, String), String>>,
}

type Arrival = (u32, Result<Vec<Delivery>>);

struct Consumer {
    buffer: VecDeque<Delivery>,
    in_flight: HashSet<u32>,
    arrivals_tx: mpsc::UnboundedSender<Arrival>,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    next_partition: u32,
}

impl Consumer {
    fn new() -> Self {
        let (arrivals_tx, arrivals) = mpsc::unbounded_channel();
        Self {
            buffer: VecDeque::new(),
            in_flight: HashSet::new(),
            arrivals_tx,
            arrivals,
            next_partition: 0,
        }
    }

    /// Take in what blocked reads from earlier calls brought back.
    fn absorb(&mut self) -> Result<()> {
        let mut first_error = None;
        while let Ok((partition, result)) = self.arrivals.try_recv() {
            self.in_flight.remove(&partition);
            match result {
                Ok(batch) => self.buffer.extend(batch),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn take(&mut self, count: usize) -> Vec<Delivery> {
        let n = count.min(self.buffer.len());
        self.buffer.drain(..n).collect()
    }
}

fn streams_of(categories: &[Category], partition: u32) -> Vec<String> {
    categories
        .iter()
        .map(|c| Keys::category_stream(c, partition))
        .collect()
}

/// The partition a category stream's key names (0 for a key of another form).
fn partition_of_stream(stream: &str) -> u32 {
    Keys::category_of_stream(stream).map_or(0, |(_, partition)| partition)
}

/// A blocked read over every partition at once (one server), in the in-flight set.
const ALL_PARTITIONS: u32 = u32::MAX;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn xreadgroup(
    conn: &mut Conn,
    group: &str,
    consumer: &str,
    streams: &[String],
    count: usize,
    block: Option<Duration>,
) -> Result<Vec<Delivery>> {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(group)
        .arg(consumer)
        .arg("COUNT")
        .arg(count.max(1));
    if let Some(block) = block {
        cmd.arg("BLOCK")
            .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1));
    }
    cmd.arg("STREAMS").arg(streams);
    for _ in streams {
        cmd.arg(">");
    }
    let reply: Value = cmd.query_async(conn).await.map_err(classify)?;
    let mut deliveries = Vec::new();
    for (stream, entries) in parse::streams(reply).map_err(|r| corrupt("XREADGROUP reply", r))? {
        for (id, fields) in entries {
            deliveries.push(Delivery {
                entry: EntryRef {
                    stream: stream.clone(),
                    id,
                },
                partition: partition_of_stream(&stream),
                deliveries: 1,
                fields: fields.unwrap_or_default(),
            });
        }
    }
    Ok(deliveries)
}

impl RedisStore {
    fn consumer(&self, group: &str, consumer: &str) -> SharedConsumer {
        lock(&self.inner.subscriptions.consumers)
            .entry((group.to_owned(), consumer.to_owned()))
            .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Consumer::new())))
            .clone()
    }

    /// A blocking XREADGROUP on its own connection, reported through `tx` when it ends.
    fn spawn_blocked_read(
        &self,
        tx: mpsc::UnboundedSender<Arrival>,
        partition: u32,
        read: (String, String, Vec<String>, usize, Duration),
    ) {
        let store = self.clone();
        tokio::spawn(async move {
            let (group, consumer, streams, count, block) = read;
            let result = async {
                let mut conn = store
                    .inner
                    .connector
                    .take_blocking()
                    .await
                    .map_err(classify)?;
                let read = xreadgroup(&mut conn, &group, &consumer, &streams, count, Some(block));
                match tokio::time::timeout(block + BLOCK_SLACK, read).await {
                    Ok(result) => {
                        if result.is_ok() {
                            store.inner.connector.put_blocking(conn);
                        }
                        result
                    }
                    // The connection's state is unknown now: it is dropped, not reused.
                    Err(_) => Err(StoreError::Unavailable("blocked read got no answer".into())),
                }
            }
            .await;
            let _ = tx.send((partition, result));
        });
    }
}

#[async_trait]
impl Subscriptions for RedisStore {
    async fn create_group(&self, group: &str, categories: &[Category]) -> Result<()> {
        for partition in 0..self.partitions() {
            for stream in streams_of(categories, partition) {
                let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&stream)
                    .arg(group)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(&mut self.conn())
                    .await;
                match created {
                    Ok(()) => {}
                    // The group exists: matched by the error code, not its text.
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    // A full memory refuses XGROUP CREATE before it looks: a group that is
                    // there already needs nothing, so a projector restarted then still runs.
                    Err(e) if self.group_exists(&stream, group).await => {
                        tracing::debug!(%stream, group, error = %e, "group exists; not created");
                    }
                    Err(e) => return Err(classify(e)),
                }
            }
        }
        Ok(())
    }

    fn partition_count(&self) -> u32 {
        self.partitions()
    }

    async fn read_new_in(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        partitions: &[u32],
        count: usize,
        block: Duration,
    ) -> Result<Vec<Delivery>> {
        let count = count.max(1);
        let state = self.consumer(group, consumer);
        let mut state = state.lock().await;
        state.absorb()?;
        if !state.buffer.is_empty() {
            return Ok(state.take(count));
        }
        let partitions: Vec<u32> = partitions
            .iter()
            .copied()
            .filter(|p| *p < self.partitions())
            .collect();
        if partitions.is_empty() {
            return Ok(vec![]);
        }

        if !self.inner.clustered {
            let streams: Vec<String> = partitions
                .iter()
                .flat_map(|p| streams_of(categories, *p))
                .collect();
            let swept =
                xreadgroup(&mut self.conn(), group, consumer, &streams, count, None).await?;
            state.buffer.extend(swept);
        } else {
            let start = state.next_partition as usize % partitions.len();
            state.next_partition = state.next_partition.wrapping_add(1);
            for i in 0..partitions.len() {
                let partition = partitions[(start + i) % partitions.len()];
                if state.in_flight.contains(&partition) {
                    continue;
                }
                let streams = streams_of(categories, partition);
                let want = count - state.buffer.len();
                let mut conn = self.conn();
                let read = xreadgroup(&mut conn, group, consumer, &streams, want, None).await?;
                state.buffer.extend(read);
                if state.buffer.len() >= count {
                    break;
                }
            }
        }
        if !state.buffer.is_empty() || block.is_zero() {
            return Ok(state.take(count));
        }

        let reads: Vec<(u32, Vec<String>)> = if self.inner.clustered {
            partitions
                .iter()
                .map(|p| (*p, streams_of(categories, *p)))
                .collect()
        } else {
            let streams = partitions
                .iter()
                .flat_map(|p| streams_of(categories, *p))
                .collect();
            vec![(ALL_PARTITIONS, streams)]
        };
        for (partition, streams) in reads {
            if state.in_flight.insert(partition) {
                let read = (group.to_owned(), consumer.to_owned(), streams, count, block);
                self.spawn_blocked_read(state.arrivals_tx.clone(), partition, read);
            }
        }
        let deadline = tokio::time::Instant::now() + block + BLOCK_SLACK;
        loop {
            match tokio::time::timeout_at(deadline, state.arrivals.recv()).await {
                Ok(Some((partition, result))) => {
                    state.in_flight.remove(&partition);
                    let arrived = result?;
                    if !arrived.is_empty() {
                        state.buffer.extend(arrived);
                        return Ok(state.take(count));
                    }
                    if state.in_flight.is_empty() {
                        return Ok(vec![]);
                    }
                }
                Ok(None) | Err(_) => return Ok(vec![]),
            }
        }
    }

    async fn claim_idle_in(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        partitions: &[u32],
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<Delivery>> {
        let min_idle_ms = u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX);
        let mut claimed = Vec::new();
        for &partition in partitions.iter().filter(|p| **p < self.partitions()) {
            for stream in streams_of(categories, partition) {
                if claimed.len() >= count {
                    return Ok(claimed);
                }
                let cursor_key = (group.to_owned(), stream.clone());
                let cursor = lock(&self.inner.subscriptions.claim_cursors)
                    .get(&cursor_key)
                    .cloned()
                    .unwrap_or_else(|| "0-0".to_owned());
                // XAUTOCLAIM also drops entries deleted from the stream from the pending list.
                let reply: Value = redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(group)
                    .arg(consumer)
                    .arg(min_idle_ms)
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(count - claimed.len())
                    .query_async(&mut self.conn())
                    .await
                    .map_err(classify)?;
                let (next, entries) =
                    parse::autoclaim(reply).map_err(|r| corrupt("XAUTOCLAIM reply", r))?;
                lock(&self.inner.subscriptions.claim_cursors).insert(cursor_key, next);
                claimed.extend(self.redelivered(&stream, group, entries).await?);
            }
        }
        Ok(claimed)
    }

    async fn read_own_pending(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        count: usize,
    ) -> Result<Vec<Delivery>> {
        let mut own = Vec::new();
        for partition in 0..self.partitions() {
            if own.len() >= count {
                break;
            }
            let streams = streams_of(categories, partition);
            // XREADGROUP with id 0: this consumer's own pending entries (its history).
            let mut cmd = redis::cmd("XREADGROUP");
            cmd.arg("GROUP")
                .arg(group)
                .arg(consumer)
                .arg("COUNT")
                .arg(count - own.len())
                .arg("STREAMS")
                .arg(&streams);
            for _ in &streams {
                cmd.arg("0");
            }
            let reply: Value = cmd.query_async(&mut self.conn()).await.map_err(classify)?;
            for (stream, entries) in
                parse::streams(reply).map_err(|r| corrupt("XREADGROUP reply", r))?
            {
                // An entry deleted from the stream comes back without fields: nothing to do.
                let entries: Vec<parse::Entry> =
                    entries.into_iter().filter(|(_, f)| f.is_some()).collect();
                own.extend(self.redelivered(&stream, group, entries).await?);
            }
        }
        own.truncate(count);
        Ok(own)
    }

    async fn prune_consumers(
        &self,
        group: &str,
        categories: &[Category],
        idle: Duration,
        keep: &str,
    ) -> Result<u64> {
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let mut removed = 0;
        for partition in 0..self.partitions() {
            for stream in streams_of(categories, partition) {
                for (name, pending, idle) in self.stream_consumers(&stream, group).await? {
                    if name == keep || pending > 0 || idle < idle_ms {
                        continue;
                    }
                    let pruned: i64 = self
                        .inner
                        .prune_consumer
                        .key(&stream)
                        .arg(group)
                        .arg(&name)
                        .invoke_async(&mut self.conn())
                        .await
                        .map_err(classify)?;
                    if pruned == 0 {
                        continue;
                    }
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    async fn trim_consumed(&self, categories: &[Category]) -> Result<u64> {
        let mut removed = 0;
        for partition in 0..self.partitions() {
            for stream in streams_of(categories, partition) {
                let n: u64 = self
                    .inner
                    .trim_consumed
                    .key(&stream)
                    .invoke_async(&mut self.conn())
                    .await
                    .map_err(classify)?;
                removed += n;
            }
        }
        Ok(removed)
    }

    async fn consumers(&self, group: &str, categories: &[Category]) -> Result<Vec<(String, u64)>> {
        let mut held: BTreeMap<String, u64> = BTreeMap::new();
        for partition in 0..self.partitions() {
            for stream in streams_of(categories, partition) {
                for (name, pending, _) in self.stream_consumers(&stream, group).await? {
                    *held.entry(name).or_default() += pending;
                }
            }
        }
        Ok(held.into_iter().collect())
    }

    async fn ack(&self, group: &str, entries: &[EntryRef]) -> Result<()> {
        let mut by_stream: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for entry in entries {
            by_stream
                .entry(&entry.stream)
                .or_default()
                .push(entry.id.to_string());
        }
        for (stream, ids) in by_stream {
            redis::cmd("XACK")
                .arg(stream)
                .arg(group)
                .arg(ids)
                .query_async::<i64>(&mut self.conn())
                .await
                .map_err(classify)?;
        }
        Ok(())
    }

    async fn dead_letter(&self, group: &str, delivery: &Delivery, reason: &str) -> Result<()> {
        let (_, partition) = Keys::category_of_stream(&delivery.entry.stream).ok_or_else(|| {
            StoreError::Invalid(format!("not a category stream: {}", delivery.entry.stream))
        })?;
        let mut record = redis::cmd("XADD");
        record
            .arg(Keys::dead_letters(partition))
            .arg("*")
            .arg("group")
            .arg(group)
            .arg("stream")
            .arg(&delivery.entry.stream)
            .arg("entry_id")
            .arg(delivery.entry.id.to_string())
            .arg("deliveries")
            .arg(delivery.deliveries)
            .arg("reason")
            .arg(reason);
        for (field, value) in &delivery.fields {
            record.arg(format!("field:{field}")).arg(value);
        }
        // Recorded and acked together: one slot, one transaction.
        redis::pipe()
            .atomic()
            .add_command(record)
            .ignore()
            .cmd("XACK")
            .arg(&delivery.entry.stream)
            .arg(group)
            .arg(delivery.entry.id.to_string())
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(classify)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        let mut letters = Vec::new();
        for partition in 0..self.partitions() {
            let key = Keys::dead_letters(partition);
            for (id, fields) in self.xrange(&key, "-", limit).await? {
                letters.push((id, dead_letter(&key, fields.unwrap_or_default())?));
            }
        }
        letters.sort_by_key(|(id, _)| *id);
        Ok(letters.into_iter().take(limit).map(|(_, l)| l).collect())
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        // One XLEN per partition: each key is in its own slot.
        let mut total = 0;
        for partition in 0..self.partitions() {
            let n: u64 = redis::cmd("XLEN")
                .arg(Keys::dead_letters(partition))
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            total += n;
        }
        Ok(total)
    }

    async fn group_stats(&self, group: &str, categories: &[Category]) -> Result<GroupStats> {
        let mut total = GroupStats::default();
        for stats in self.partition_stats(group, categories).await? {
            total.lag += stats.lag;
            total.pending += stats.pending;
            total.lag_is_lower_bound |= stats.lag_is_lower_bound;
        }
        Ok(total)
    }

    async fn group_present(&self, group: &str, categories: &[Category]) -> Result<bool> {
        for partition in 0..self.partitions() {
            for stream in streams_of(categories, partition) {
                let groups = self.stream_groups(&stream).await?.unwrap_or_default();
                if !groups.iter().any(|g| g.name == group) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn partition_stats(
        &self,
        group: &str,
        categories: &[Category],
    ) -> Result<Vec<GroupStats>> {
        let mut all = Vec::with_capacity(self.partitions() as usize);
        for partition in 0..self.partitions() {
            let mut stats = GroupStats::default();
            for stream in streams_of(categories, partition) {
                let groups = self.stream_groups(&stream).await?.unwrap_or_default();
                let Some(info) = groups.into_iter().find(|g| g.name == group) else {
                    return Err(StoreError::Invalid(format!(
                        "no group {group:?} on {stream}"
                    )));
                };
                stats.pending += info.pending;
                let (lag, lower_bound) = self.lag(&stream, &info).await?;
                stats.lag += lag;
                stats.lag_is_lower_bound |= lower_bound;
            }
            all.push(stats);
        }
        Ok(all)
    }
}

/// Entries counted one by one when Redis cannot say a group's lag: more reads as this many,
/// reported as a lower bound.
const LAG_COUNTED_UP_TO: usize = 1000;

impl RedisStore {
    /// How many entries of `stream` the group has not been handed. Redis's own count is
    /// unknown after a restart from its append-only file and can drift after that, so the
    /// entry ids decide: none when the group was handed the stream's last entry; else Redis's
    /// count when it has one, or the entries after the last one handed, counted up to
    /// [`LAG_COUNTED_UP_TO`]. True beside the count when there may be more.
    pub(crate) async fn lag(&self, stream: &str, group: &parse::GroupInfo) -> Result<(u64, bool)> {
        let last = self.xrevrange_last(stream).await?;
        let delivered = group.last_delivered.unwrap_or(EntryId::ZERO);
        match last {
            None => Ok((0, false)),
            Some(last) if last <= delivered => Ok((0, false)),
            Some(_) => match group.lag {
                Some(lag) if lag > 0 => Ok((lag, false)),
                _ => {
                    let after = format!("({delivered}");
                    let unread = self.xrange(stream, &after, LAG_COUNTED_UP_TO).await?;
                    let counted = unread.len().max(1) as u64;
                    Ok((counted, unread.len() >= LAG_COUNTED_UP_TO))
                }
            },
        }
    }

    /// The id of the stream's last entry, if any.
    async fn xrevrange_last(&self, stream: &str) -> Result<Option<EntryId>> {
        let reply: Value = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let entries = parse::entries(reply).map_err(|reason| corrupt(stream, reason))?;
        Ok(entries.first().map(|(id, _)| *id))
    }

    /// Whether `stream` has `group` (false when that cannot be read either).
    async fn group_exists(&self, stream: &str, group: &str) -> bool {
        self.stream_groups(stream)
            .await
            .ok()
            .flatten()
            .is_some_and(|groups| groups.iter().any(|g| g.name == group))
    }

    /// `XINFO GROUPS`: the stream's groups, `None` when there is no such stream.
    pub(crate) async fn stream_groups(
        &self,
        stream: &str,
    ) -> Result<Option<Vec<parse::GroupInfo>>> {
        let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream)
            .query_async(&mut self.conn())
            .await;
        match reply {
            Ok(reply) => parse::groups(&reply)
                .map(Some)
                .map_err(|r| corrupt("XINFO GROUPS reply", r)),
            Err(e)
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// `XINFO CONSUMERS`: (name, pending, idle ms); none when the stream or group is missing.
    pub(crate) async fn stream_consumers(
        &self,
        stream: &str,
        group: &str,
    ) -> Result<Vec<(String, u64, u64)>> {
        let reply: redis::RedisResult<Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(stream)
            .arg(group)
            .query_async(&mut self.conn())
            .await;
        match reply {
            Ok(reply) => parse::consumers(&reply).map_err(|r| corrupt("XINFO CONSUMERS reply", r)),
            Err(e) if e.code() == Some("NOGROUP") => Ok(vec![]),
            Err(e) => Err(classify(e)),
        }
    }

    /// Entries handed out again (claimed, or resumed by their consumer), with their delivery
    /// counts as the group keeps them.
    async fn redelivered(
        &self,
        stream: &str,
        group: &str,
        entries: Vec<parse::Entry>,
    ) -> Result<Vec<Delivery>> {
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let counts = self.delivery_counts(stream, group, &entries).await?;
        Ok(entries
            .into_iter()
            .map(|(id, fields)| Delivery {
                entry: EntryRef {
                    stream: stream.to_owned(),
                    id,
                },
                partition: partition_of_stream(stream),
                deliveries: counts.get(&id).copied().unwrap_or(2),
                fields: fields.unwrap_or_default(),
            })
            .collect())
    }

    async fn delivery_counts(
        &self,
        stream: &str,
        group: &str,
        entries: &[parse::Entry],
    ) -> Result<HashMap<EntryId, u64>> {
        let mut pipe = redis::pipe();
        for (id, _) in entries {
            pipe.cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .arg(id.to_string())
                .arg(id.to_string())
                .arg(1);
        }
        let replies: Vec<Value> = pipe.query_async(&mut self.conn()).await.map_err(classify)?;
        let mut counts = HashMap::new();
        for reply in replies {
            // [[id, consumer, idle ms, deliveries]]
            if let Value::Array(rows) = reply
                && let Some(Value::Array(row)) = rows.first()
                && let (Some(id), Some(n)) = (row.first(), row.get(3))
                && let (Ok(id), Some(n)) = (parse::entry_id(id), parse::int(n))
            {
                counts.insert(id, u64::try_from(n).unwrap_or(0));
            }
        }
        Ok(counts)
    }
}

pub(crate) fn dead_letter(key: &str, fields: esr_schema::entry::Fields) -> Result<DeadLetter> {
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| corrupt(key, format!("dead letter without {name}")))
    };
    Ok(DeadLetter {
        group: get("group")?,
        entry: EntryRef {
            stream: get("stream")?,
            id: get("entry_id")?
                .parse()
                .map_err(|_| corrupt(key, "bad entry_id"))?,
        },
        deliveries: get("deliveries")?
            .parse()
            .map_err(|_| corrupt(key, "bad deliveries"))?,
        reason: get("reason")?,
        fields: fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("field:")?.to_owned(), v.clone())))
            .collect(),
    })
}
