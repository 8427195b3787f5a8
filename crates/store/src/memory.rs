//! The in-memory adapter: the same semantics as the Redis one, for tests and for a laptop.
//!
//! One mutex guards all state, so every operation is atomic exactly as a Redis script is.
//! Blocking reads wait on a [`Notify`] that every append wakes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use esr_schema::entry::{self, Fields};
use esr_schema::{Category, EventEnvelope, StoredEvent, StreamId};
use tokio::sync::Notify;

use crate::{
    AppendOutcome, AppendRequest, CategoryEntry, CategoryLog, Checkpoint, DeadLetter, Delivery,
    EntryId, EntryRef, EventStore, ExpectedVersion, Fence, GroupStats, LeaseHolder, Leases,
    ReadModel, ReadModelWrite, ReadModels, Result, Snapshot, SnapshotStore, StoreError,
    Subscriptions, Tallies, TallyWrite,
};

/// The dead-letter stream's name, the same as on Redis.
pub const DEAD_LETTER_STREAM: &str = "dead_letters";

#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    appended: Notify,
}

#[derive(Default)]
struct State {
    streams_by_id: HashMap<StreamId, Vec<StoredEvent>>,
    streams: HashMap<Category, BTreeMap<EntryId, Fields>>,
    last_id: EntryId,
    groups: HashMap<(String, Category), Group>,
    /// Outcome, fingerprint, expiry.
    idempotency: HashMap<(StreamId, String), (AppendOutcome, String, Instant)>,
    /// The stream each idempotency key was first sent for, until it expires: a key names one
    /// request, whatever its stream.
    idempotency_claims: HashMap<String, (StreamId, Instant)>,
    snapshots: HashMap<StreamId, Snapshot>,
    read_models: HashMap<(String, StreamId), ReadModel>,
    /// By version.
    checkpoints: HashMap<(String, StreamId), BTreeMap<u64, Checkpoint>>,
    tally_positions: HashMap<(String, StreamId), u64>,
    live_generations: HashMap<String, u32>,
    tallies: HashMap<String, TallyCounts>,
    dead_letters: Vec<DeadLetter>,
    /// Per group: members and when each one's time runs out.
    members: HashMap<String, BTreeMap<String, Instant>>,
    /// Per group: the lease of the one partition (holder, token, expiry) and the last token.
    leases: HashMap<String, (Option<(LeaseHolder, Instant)>, u64)>,
}

/// One tally's counts, and the same kept in rank order so its top is read, not sorted.
#[derive(Default)]
struct TallyCounts {
    by_key: HashMap<String, i64>,
    ranked: BTreeSet<(Reverse<i64>, String)>,
}

impl TallyCounts {
    fn add(&mut self, key: String, amount: i64) {
        let before = self.by_key.get(&key).copied().unwrap_or(0);
        let after = before + amount;
        if before > 0 {
            self.ranked.remove(&(Reverse(before), key.clone()));
        }
        if after > 0 {
            self.ranked.insert((Reverse(after), key.clone()));
            self.by_key.insert(key, after);
        } else {
            self.by_key.remove(&key);
        }
    }
}

#[derive(Default)]
struct Group {
    last_delivered: EntryId,
    pending: BTreeMap<EntryId, Pending>,
    /// Each consumer's last read or claim, as Redis keeps a consumer's idle time.
    consumers: HashMap<String, Instant>,
}

struct Pending {
    consumer: String,
    delivered_at: Instant,
    deliveries: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Write raw fields to a category stream, as a foreign producer (or `redis-cli XADD`)
    /// could. Tests use it to plant poison entries.
    pub fn append_foreign(&self, category: &Category, fields: Fields) -> EntryId {
        let id = {
            let mut state = self.lock();
            let id = state.next_id();
            state
                .streams
                .entry(category.clone())
                .or_default()
                .insert(id, fields);
            id
        };
        self.inner.appended.notify_waiters();
        id
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written (every mutation
        // completes before it could panic), so a poisoned lock is still consistent.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Whether `fence` is unfenced or holds the current lease of partition 0.
    fn passes(&self, fence: &Fence) -> bool {
        match fence.token(0) {
            Ok(None) => true,
            Ok(Some((group, token))) => matches!(
                self.leases.get(group),
                Some((Some((holder, until)), _))
                    if holder.token == token && *until > Instant::now()
            ),
            Err(_) => false,
        }
    }

    fn put_read_model(
        &mut self,
        name: &str,
        stream: &StreamId,
        expected: u64,
        model: &ReadModel,
    ) -> Result<()> {
        let key = (name.to_owned(), stream.clone());
        let actual = self.read_models.get(&key).map_or(0, |m| m.version);
        if actual != expected {
            return Err(StoreError::Conflict {
                expected: ExpectedVersion::Exactly(expected),
                actual,
            });
        }
        let mut stored = model.clone();
        stored.fields.insert(
            crate::read_model::VERSION_FIELD.to_owned(),
            model.version.to_string(),
        );
        self.read_models.insert(key, stored);
        Ok(())
    }

    fn next_id(&mut self) -> EntryId {
        let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        self.last_id = if now > self.last_id.ms {
            EntryId { ms: now, seq: 0 }
        } else {
            EntryId {
                ms: self.last_id.ms,
                seq: self.last_id.seq + 1,
            }
        };
        self.last_id
    }

    fn delivery(&self, category: &Category, id: EntryId, deliveries: u64) -> Option<Delivery> {
        let fields = self.streams.get(category)?.get(&id)?.clone();
        Some(Delivery {
            entry: EntryRef {
                stream: category.to_string(),
                id,
            },
            partition: 0,
            deliveries,
            fields,
        })
    }
}

/// A write refused by its fence (one partition here: 0).
fn fenced() -> StoreError {
    StoreError::Fenced { partition: 0 }
}

/// `KeyReused` when both fingerprints are known and differ.
fn reused(key: &str, recorded: &str, asked: &str) -> Result<()> {
    if recorded.is_empty() || asked.is_empty() || recorded == asked {
        Ok(())
    } else {
        Err(StoreError::KeyReused {
            key: key.to_owned(),
        })
    }
}

/// The version a request produced when it was applied before: its first event is stored
/// right after the version it expected (the same call delivered twice).
fn delivered_before(state: &State, request: &AppendRequest) -> Option<u64> {
    let expected = match request.expected {
        ExpectedVersion::Any => return None,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exactly(v) => v,
    };
    let stored = state.streams_by_id.get(&request.stream)?;
    let first = stored.get(usize::try_from(expected).ok()?)?;
    let sent = request.events.first()?;
    (first.envelope.event_id == sent.event_id).then(|| expected + request.events.len() as u64)
}

fn category_of(stream: &str) -> Result<Category> {
    Category::parse(stream).map_err(|_| StoreError::Invalid(format!("no stream {stream:?}")))
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome> {
        if request.events.is_empty() {
            return Err(StoreError::Invalid(
                "an append needs at least one event".into(),
            ));
        }
        let outcome = {
            let mut state = self.lock();
            let now = Instant::now();
            if let Some(idem) = &request.idempotency {
                match state.idempotency_claims.get(&idem.key) {
                    Some((stream, expires)) if *expires > now && *stream != request.stream => {
                        return Err(StoreError::KeyReused {
                            key: idem.key.clone(),
                        });
                    }
                    Some((_, expires)) if *expires > now => {}
                    _ => {
                        state
                            .idempotency_claims
                            .insert(idem.key.clone(), (request.stream.clone(), now + idem.ttl));
                    }
                }
                let key = (request.stream.clone(), idem.key.clone());
                match state.idempotency.get(&key) {
                    Some((outcome, recorded, expires)) if *expires > now => {
                        reused(&idem.key, recorded, &idem.fingerprint)?;
                        return Ok(AppendOutcome {
                            duplicate: true,
                            ..*outcome
                        });
                    }
                    Some(_) => {
                        state.idempotency.remove(&key);
                    }
                    None => {}
                }
            }
            let actual = state
                .streams_by_id
                .get(&request.stream)
                .map_or(0, |e| e.len() as u64);
            if !request.expected.admits(actual) {
                if let Some(version) = delivered_before(&state, &request) {
                    return Ok(AppendOutcome {
                        version,
                        duplicate: true,
                    });
                }
                return Err(StoreError::Conflict {
                    expected: request.expected,
                    actual,
                });
            }
            let mut version = actual;
            // Time never goes back within a stream: an event earlier than the stream's last
            // (a clock stepped back) is stored at the last one's time.
            let mut last_time = state
                .streams_by_id
                .get(&request.stream)
                .and_then(|events| events.last())
                .map(|e| e.envelope.occurred_at);
            for new in request.events {
                version += 1;
                let occurred_at = last_time.map_or(new.occurred_at, |t| t.max(new.occurred_at));
                last_time = Some(occurred_at);
                let event = StoredEvent {
                    envelope: EventEnvelope {
                        event_id: new.event_id,
                        stream: request.stream.clone(),
                        version,
                        event_type: new.event_type,
                        schema_version: new.schema_version,
                        occurred_at,
                        correlation_id: new.correlation_id,
                        causation_id: new.causation_id,
                        actor: new.actor,
                    },
                    payload: new.payload,
                };
                let category = new.category.clone();
                let id = state.next_id();
                let fields = entry::to_fields(&event);
                state
                    .streams
                    .entry(category)
                    .or_default()
                    .insert(id, fields);
                state
                    .streams_by_id
                    .entry(request.stream.clone())
                    .or_default()
                    .push(event);
            }
            let outcome = AppendOutcome {
                version,
                duplicate: false,
            };
            if let Some(idem) = request.idempotency {
                state.idempotency.insert(
                    (request.stream, idem.key),
                    (outcome, idem.fingerprint, now + idem.ttl),
                );
            }
            outcome
        };
        self.inner.appended.notify_waiters();
        Ok(outcome)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        let state = self.lock();
        let skip = usize::try_from(from_version.saturating_sub(1)).unwrap_or(usize::MAX);
        Ok(state
            .streams_by_id
            .get(stream)
            .map(|events| events.iter().skip(skip).take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64> {
        Ok(self
            .lock()
            .streams_by_id
            .get(stream)
            .map_or(0, |e| e.len() as u64))
    }

    async fn idempotent_outcome(
        &self,
        stream: &StreamId,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<AppendOutcome>> {
        let state = self.lock();
        let Some((outcome, recorded, _)) = state
            .idempotency
            .get(&(stream.clone(), key.to_owned()))
            .filter(|(_, _, expires)| *expires > Instant::now())
        else {
            return Ok(None);
        };
        reused(key, recorded, fingerprint)?;
        Ok(Some(AppendOutcome {
            duplicate: true,
            ..*outcome
        }))
    }
}

#[async_trait]
impl CategoryLog for MemoryStore {
    async fn read_category(
        &self,
        category: &Category,
        after: EntryId,
        limit: usize,
    ) -> Result<Vec<CategoryEntry>> {
        let state = self.lock();
        let Some(stream) = state.streams.get(category) else {
            return Ok(vec![]);
        };
        Ok(stream
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .take(limit)
            .map(|(id, fields)| CategoryEntry {
                stream: category.to_string(),
                id: *id,
                fields: fields.clone(),
            })
            .collect())
    }
}

#[async_trait]
impl Subscriptions for MemoryStore {
    async fn create_group(&self, group: &str, categories: &[Category]) -> Result<()> {
        let mut state = self.lock();
        for category in categories {
            state
                .groups
                .entry((group.to_owned(), category.clone()))
                .or_default();
        }
        Ok(())
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
        // One partition, 0: a consumer that does not hold it reads nothing.
        if !partitions.contains(&0) {
            return Ok(vec![]);
        }
        let deadline = tokio::time::Instant::now() + block;
        loop {
            // Registered before looking, so an append between the look and the wait still wakes us.
            let appended = self.inner.appended.notified();
            tokio::pin!(appended);
            appended.as_mut().enable();

            let batch = self.take_new(group, consumer, categories, count)?;
            if !batch.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(batch);
            }
            if tokio::time::timeout_at(deadline, appended).await.is_err() {
                return Ok(vec![]);
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
        if !partitions.contains(&0) {
            return Ok(vec![]);
        }
        let now = Instant::now();
        self.redeliver(group, consumer, categories, count, |p| {
            now.duration_since(p.delivered_at) >= min_idle
        })
    }

    async fn read_own_pending(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        count: usize,
    ) -> Result<Vec<Delivery>> {
        self.redeliver(group, consumer, categories, count, |p| {
            p.consumer == consumer
        })
    }

    async fn prune_consumers(
        &self,
        group: &str,
        categories: &[Category],
        idle: Duration,
        keep: &str,
    ) -> Result<u64> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut removed = 0;
        for category in categories {
            let Some(g) = state.groups.get_mut(&(group.to_owned(), category.clone())) else {
                continue;
            };
            let holding: std::collections::HashSet<String> =
                g.pending.values().map(|p| p.consumer.clone()).collect();
            let before = g.consumers.len();
            g.consumers.retain(|name, last| {
                name == keep || holding.contains(name) || now.duration_since(*last) < idle
            });
            removed += (before - g.consumers.len()) as u64;
        }
        Ok(removed)
    }

    async fn consumers(&self, group: &str, categories: &[Category]) -> Result<Vec<(String, u64)>> {
        let state = self.lock();
        let mut held: BTreeMap<String, u64> = BTreeMap::new();
        for category in categories {
            let Some(g) = state.groups.get(&(group.to_owned(), category.clone())) else {
                continue;
            };
            for name in g.consumers.keys() {
                held.entry(name.clone()).or_default();
            }
            for p in g.pending.values() {
                *held.entry(p.consumer.clone()).or_default() += 1;
            }
        }
        Ok(held.into_iter().collect())
    }

    async fn trim_consumed(&self, categories: &[Category]) -> Result<u64> {
        let mut state = self.lock();
        let mut removed = 0;
        for category in categories {
            // The lowest, over the groups, of the entry after the last delivered one and the
            // oldest pending one.
            let floor = state
                .groups
                .iter()
                .filter(|((_, c), _)| c == category)
                .map(|(_, g)| {
                    let next = EntryId {
                        ms: g.last_delivered.ms,
                        seq: g.last_delivered.seq.saturating_add(1),
                    };
                    let oldest_pending = g.pending.keys().next().copied();
                    oldest_pending.map_or(next, |p| p.min(next))
                })
                .min();
            let (Some(floor), Some(stream)) = (floor, state.streams.get_mut(category)) else {
                continue;
            };
            let kept = stream.split_off(&floor);
            removed += stream.len() as u64;
            *stream = kept;
        }
        Ok(removed)
    }

    async fn ack(&self, group: &str, entries: &[EntryRef]) -> Result<()> {
        let mut state = self.lock();
        for entry in entries {
            let category = category_of(&entry.stream)?;
            if let Some(g) = state.groups.get_mut(&(group.to_owned(), category)) {
                g.pending.remove(&entry.id);
            }
        }
        Ok(())
    }

    async fn dead_letter(&self, group: &str, delivery: &Delivery, reason: &str) -> Result<()> {
        let category = category_of(&delivery.entry.stream)?;
        let mut state = self.lock();
        state.dead_letters.push(DeadLetter {
            group: group.to_owned(),
            entry: delivery.entry.clone(),
            deliveries: delivery.deliveries,
            reason: reason.to_owned(),
            fields: delivery.fields.clone(),
        });
        if let Some(g) = state.groups.get_mut(&(group.to_owned(), category)) {
            g.pending.remove(&delivery.entry.id);
        }
        Ok(())
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>> {
        Ok(self
            .lock()
            .dead_letters
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn group_stats(&self, group: &str, categories: &[Category]) -> Result<GroupStats> {
        let state = self.lock();
        let mut stats = GroupStats::default();
        for category in categories {
            let Some(g) = state.groups.get(&(group.to_owned(), category.clone())) else {
                return Err(StoreError::Invalid(format!(
                    "no group {group:?} on {category}"
                )));
            };
            stats.pending += g.pending.len() as u64;
            stats.lag += state.streams.get(category).map_or(0, |s| {
                s.range((
                    std::ops::Bound::Excluded(g.last_delivered),
                    std::ops::Bound::Unbounded,
                ))
                .count() as u64
            });
        }
        Ok(stats)
    }
}

impl MemoryStore {
    /// Hand `consumer` up to `count` pending entries that `pick` selects (idle ones for a claim,
    /// its own for a resume), counting the delivery; entries gone from the stream leave the
    /// pending list instead, as XAUTOCLAIM does.
    fn redeliver(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        count: usize,
        pick: impl Fn(&Pending) -> bool,
    ) -> Result<Vec<Delivery>> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut handed = Vec::new();
        for category in categories {
            let key = (group.to_owned(), category.clone());
            let Some(mut g) = state.groups.remove(&key) else {
                return Err(StoreError::Invalid(format!(
                    "no group {group:?} on {category}"
                )));
            };
            g.consumers.insert(consumer.to_owned(), now);
            let picked: Vec<EntryId> = g
                .pending
                .iter()
                .filter(|(_, p)| pick(p))
                .map(|(id, _)| *id)
                .take(count.saturating_sub(handed.len()))
                .collect();
            for id in picked {
                let Some(p) = g.pending.get_mut(&id) else {
                    continue;
                };
                match state.delivery(category, id, p.deliveries + 1) {
                    Some(delivery) => {
                        p.consumer = consumer.to_owned();
                        p.delivered_at = now;
                        p.deliveries += 1;
                        handed.push(delivery);
                    }
                    None => {
                        g.pending.remove(&id);
                    }
                }
            }
            state.groups.insert(key, g);
        }
        Ok(handed)
    }

    fn take_new(
        &self,
        group: &str,
        consumer: &str,
        categories: &[Category],
        count: usize,
    ) -> Result<Vec<Delivery>> {
        let mut state = self.lock();
        let now = Instant::now();
        let mut batch = Vec::new();
        for category in categories {
            let key = (group.to_owned(), category.clone());
            let Some(mut g) = state.groups.remove(&key) else {
                return Err(StoreError::Invalid(format!(
                    "no group {group:?} on {category}"
                )));
            };
            g.consumers.insert(consumer.to_owned(), now);
            let fresh: Vec<(EntryId, Fields)> =
                state.streams.get(category).map_or_else(Vec::new, |s| {
                    s.range((
                        std::ops::Bound::Excluded(g.last_delivered),
                        std::ops::Bound::Unbounded,
                    ))
                    .take(count.saturating_sub(batch.len()))
                    .map(|(id, f)| (*id, f.clone()))
                    .collect()
                });
            for (id, fields) in fresh {
                g.last_delivered = id;
                g.pending.insert(
                    id,
                    Pending {
                        consumer: consumer.to_owned(),
                        delivered_at: now,
                        deliveries: 1,
                    },
                );
                batch.push(Delivery {
                    entry: EntryRef {
                        stream: category.to_string(),
                        id,
                    },
                    partition: 0,
                    deliveries: 1,
                    fields,
                });
            }
            state.groups.insert(key, g);
        }
        Ok(batch)
    }
}

#[async_trait]
impl Leases for MemoryStore {
    async fn heartbeat(&self, group: &str, member: &str, ttl: Duration) -> Result<Vec<String>> {
        let mut state = self.lock();
        let now = Instant::now();
        let members = state.members.entry(group.to_owned()).or_default();
        if !member.is_empty() {
            members.insert(member.to_owned(), now + ttl);
        }
        members.retain(|_, until| *until > now);
        Ok(members.keys().cloned().collect())
    }

    async fn leave(&self, group: &str, member: &str) -> Result<()> {
        if let Some(members) = self.lock().members.get_mut(group) {
            members.remove(member);
        }
        Ok(())
    }

    async fn acquire_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<u64>> {
        if partition != 0 {
            return Err(StoreError::Invalid(format!(
                "no partition {partition}: the memory store has one"
            )));
        }
        let mut state = self.lock();
        let now = Instant::now();
        let (held, last) = state.leases.entry(group.to_owned()).or_default();
        match held {
            Some((holder, until)) if *until > now && holder.owner != owner => Ok(None),
            Some((holder, until)) if *until > now => {
                *until = now + ttl;
                Ok(Some(holder.token))
            }
            _ => {
                *last += 1;
                *held = Some((
                    LeaseHolder {
                        owner: owner.to_owned(),
                        token: *last,
                    },
                    now + ttl,
                ));
                Ok(Some(*last))
            }
        }
    }

    async fn renew_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool> {
        let mut state = self.lock();
        let now = Instant::now();
        match state.leases.get_mut(group) {
            Some((Some((holder, until)), _))
                if partition == 0
                    && *until > now
                    && holder.owner == owner
                    && holder.token == token =>
            {
                *until = now + ttl;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        token: u64,
    ) -> Result<()> {
        let mut state = self.lock();
        if let Some((held, _)) = state.leases.get_mut(group)
            && partition == 0
            && held
                .as_ref()
                .is_some_and(|(h, _)| h.owner == owner && h.token == token)
        {
            *held = None;
        }
        Ok(())
    }

    async fn lease_holders(&self, group: &str) -> Result<Vec<Option<LeaseHolder>>> {
        let state = self.lock();
        let now = Instant::now();
        let holder = match state.leases.get(group) {
            Some((Some((holder, until)), _)) if *until > now => Some(holder.clone()),
            _ => None,
        };
        Ok(vec![holder])
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<bool> {
        let mut state = self.lock();
        let newer = state
            .snapshots
            .get(stream)
            .is_none_or(|stored| stored.version < snapshot.version);
        if newer {
            state.snapshots.insert(stream.clone(), snapshot);
        }
        Ok(newer)
    }
}

#[async_trait]
impl ReadModels for MemoryStore {
    async fn live_generation(&self, name: &str) -> Result<u32> {
        Ok(self.lock().live_generations.get(name).copied().unwrap_or(1))
    }

    async fn set_live_generation(&self, name: &str, generation: u32) -> Result<()> {
        self.lock()
            .live_generations
            .insert(name.to_owned(), generation.max(1));
        Ok(())
    }

    async fn save_checkpoints(
        &self,
        name: &str,
        checkpoints: Vec<(StreamId, Checkpoint)>,
        fence: &Fence,
    ) -> Result<()> {
        let mut state = self.lock();
        if !state.passes(fence) {
            return Err(fenced());
        }
        for (stream, checkpoint) in checkpoints {
            state
                .checkpoints
                .entry((name.to_owned(), stream))
                .or_default()
                .insert(checkpoint.version, checkpoint);
        }
        Ok(())
    }

    async fn checkpoint_at(
        &self,
        name: &str,
        stream: &StreamId,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Checkpoint>> {
        let state = self.lock();
        Ok(state
            .checkpoints
            .get(&(name.to_owned(), stream.clone()))
            .and_then(|by_version| by_version.values().rev().find(|c| c.at <= at))
            .cloned())
    }

    async fn get_read_model(&self, name: &str, stream: &StreamId) -> Result<Option<ReadModel>> {
        Ok(self
            .lock()
            .read_models
            .get(&(name.to_owned(), stream.clone()))
            .cloned())
    }

    async fn put_read_model(
        &self,
        name: &str,
        stream: &StreamId,
        expected: u64,
        model: &ReadModel,
    ) -> Result<()> {
        self.lock().put_read_model(name, stream, expected, model)
    }

    async fn put_read_models(
        &self,
        name: &str,
        writes: Vec<ReadModelWrite>,
        fence: &Fence,
    ) -> Result<Vec<Result<()>>> {
        let mut state = self.lock();
        // Fenced: each write refused, as the Redis adapter answers.
        if !state.passes(fence) {
            return Ok(writes.iter().map(|_| Err(fenced())).collect());
        }
        Ok(writes
            .iter()
            .map(|w| state.put_read_model(name, &w.stream, w.expected, &w.model))
            .collect())
    }
}

#[async_trait]
impl Tallies for MemoryStore {
    async fn tally_positions(&self, name: &str, sources: &[StreamId]) -> Result<Vec<u64>> {
        let state = self.lock();
        Ok(sources
            .iter()
            .map(|s| {
                state
                    .tally_positions
                    .get(&(name.to_owned(), s.clone()))
                    .copied()
                    .unwrap_or(0)
            })
            .collect())
    }

    async fn apply_tallies(
        &self,
        name: &str,
        writes: Vec<TallyWrite>,
        fence: &Fence,
    ) -> Result<Vec<Result<()>>> {
        let mut state = self.lock();
        if !state.passes(fence) {
            return Ok(writes.iter().map(|_| Err(fenced())).collect());
        }
        let mut outcomes = Vec::with_capacity(writes.len());
        for write in writes {
            let key = (name.to_owned(), write.source);
            let actual = state.tally_positions.get(&key).copied().unwrap_or(0);
            if actual != write.expected {
                outcomes.push(Err(StoreError::Conflict {
                    expected: ExpectedVersion::Exactly(write.expected),
                    actual,
                }));
                continue;
            }
            state.tally_positions.insert(key, write.version);
            let counts = state.tallies.entry(name.to_owned()).or_default();
            for count in write.counts {
                counts.add(count.key, count.amount);
            }
            outcomes.push(Ok(()));
        }
        Ok(outcomes)
    }

    async fn tally_count(&self, name: &str, key: &str) -> Result<i64> {
        Ok(self
            .lock()
            .tallies
            .get(name)
            .and_then(|counts| counts.by_key.get(key))
            .copied()
            .unwrap_or(0))
    }

    async fn tally_top(&self, name: &str, limit: usize) -> Result<Vec<(String, i64)>> {
        let state = self.lock();
        Ok(state
            .tallies
            .get(name)
            .map(|counts| {
                counts
                    .ranked
                    .iter()
                    .take(limit)
                    .map(|(Reverse(count), key)| (key.clone(), *count))
                    .collect()
            })
            .unwrap_or_default())
    }
}
