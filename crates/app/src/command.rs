//! The command runtime, written once for every aggregate: load (snapshot plus later events),
//! gather the context, decide, append with the expected version; retries, `If-Match`,
//! idempotency keys, snapshots, per-stream serialization and a cache of recent states.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use esr_kernel::{Actor, Aggregate, Context};
use esr_schema::{DomainEvent, EntityId, StreamId, codec};
use esr_store::{
    AppendRequest, ExpectedVersion, Idempotency, NewEvent, Snapshot, Store, StoreError,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::metrics;

#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// Write an aggregate snapshot every this many events (0: never).
    pub snapshot_every: u64,
    /// Reloads after a version conflict before answering 409.
    pub max_retries: u32,
    /// How long an idempotency record is kept.
    pub idempotency_ttl: Duration,
    /// Commands a second each authenticated user may send over HTTP (0: no limit).
    pub commands_per_user_per_sec: u32,
}

impl Default for CommandSettings {
    fn default() -> Self {
        Self {
            snapshot_every: 100,
            max_retries: 5,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            commands_per_user_per_sec: 50,
        }
    }
}

/// Where a command came from, for the envelope and for concurrency control.
#[derive(Debug, Clone)]
pub struct CommandMeta {
    /// From `If-Match`: the version the client last saw. A mismatch is answered, not retried.
    pub if_match: Option<u64>,
    pub idempotency_key: Option<String>,
    /// What the command asks ([`fingerprint`]), recorded with the idempotency key so that the
    /// key reused for another command is refused. `None` (policies, whose keys come from
    /// events and whose command may change between redeliveries): not compared.
    pub fingerprint: Option<String>,
    pub correlation_id: String,
    /// The command's own id, or the event that caused it (policies).
    pub causation_id: String,
    /// Who makes the command: `decide` judges what it may do, and every event records it.
    pub actor: Actor,
}

impl CommandMeta {
    pub fn new(correlation_id: Option<String>, actor: Actor) -> Self {
        let command_id = Uuid::now_v7().to_string();
        Self {
            if_match: None,
            idempotency_key: None,
            fingerprint: None,
            correlation_id: correlation_id.unwrap_or_else(|| command_id.clone()),
            causation_id: command_id,
            actor,
        }
    }
}

/// What an accepted command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The stream's version after the command.
    pub version: u64,
    /// Events appended by this call (0 for a replay or a command that changed nothing).
    pub appended: usize,
    /// The idempotency key had been seen: this is the first call's result.
    pub replayed: bool,
}

/// Why a command was not accepted.
///
/// HTTP: `Rejected` as its [`esr_kernel::RejectionKind`] says (404, 409, 422 or 403);
/// `PreconditionFailed` 412; `Conflict` 409; `Store` 503 when unavailable, else 500;
/// `Corrupt` 500; `FromNewerBuild` 503 (an instance of the newer build can serve it).
#[derive(Debug, thiserror::Error)]
pub enum CommandError<R: std::error::Error + 'static> {
    #[error(transparent)]
    Rejected(R),
    #[error("the stream is at version {actual}, not {expected} as If-Match says")]
    PreconditionFailed { expected: u64, actual: u64 },
    #[error("the stream kept changing: expected version {expected}, found {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored history of {stream} cannot be read: {reason}")]
    Corrupt { stream: StreamId, reason: String },
    /// The stream holds an event of a type or schema version this build does not know: a
    /// newer build wrote it, and only such a build can decide on the stream now.
    #[error("{stream} holds an event this build does not know (a newer build wrote it): {reason}")]
    FromNewerBuild { stream: StreamId, reason: String },
}

/// Runs commands for aggregate `A`. Serializes commands per stream inside this instance (so
/// dozens of concurrent commands on one stream all go through), and retries conflicts with
/// other instances.
pub struct CommandService<A: Aggregate> {
    store: Arc<dyn Store>,
    settings: CommandSettings,
    stream_locks: Vec<Mutex<()>>,
    /// Streams' state after this instance's last command on them, with their snapshot version.
    cache: std::sync::Mutex<HashMap<EntityId, (A, u64)>>,
}

/// Streams kept in the aggregate cache.
const CACHE_STREAMS: usize = 100_000;

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Enough stripes that unrelated users rarely share one, few enough to cost nothing.
const LOCK_STRIPES: usize = 1024;

/// The command side's services, one per aggregate, sharing one store and settings: made on
/// first use, so the runtime names no aggregate and a module's routes ask for theirs.
pub struct Commands {
    store: Arc<dyn Store>,
    settings: CommandSettings,
    by_aggregate: std::sync::Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Each user's commands over HTTP, counted against their rate.
    pub rate: Arc<crate::http::CommandRate>,
}

impl Commands {
    pub fn new(store: Arc<dyn Store>, settings: CommandSettings) -> Self {
        Self {
            rate: Arc::new(crate::http::CommandRate::new(
                settings.commands_per_user_per_sec,
            )),
            store,
            settings,
            by_aggregate: Default::default(),
        }
    }

    /// The service of aggregate `A`: one per `Commands`, so its per-stream serialization and
    /// cache cover every route and policy that runs `A`'s commands.
    pub fn of<A: Aggregate>(&self) -> Arc<CommandService<A>> {
        let mut services = lock(&self.by_aggregate);
        // Keyed by the type it holds: the downcast of a present entry cannot fail.
        if let Some(service) = services
            .get(&TypeId::of::<A>())
            .and_then(|service| service.clone().downcast::<CommandService<A>>().ok())
        {
            return service;
        }
        let service = Arc::new(CommandService::<A>::new(
            self.store.clone(),
            self.settings.clone(),
        ));
        services.insert(TypeId::of::<A>(), service.clone());
        service
    }

    /// Use `service` for `A`'s commands from now on (one a caller already holds).
    pub fn adopt<A: Aggregate>(&self, service: Arc<CommandService<A>>) {
        lock(&self.by_aggregate).insert(TypeId::of::<A>(), service);
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &CommandSettings {
        &self.settings
    }
}

type Outcome<A, T> = Result<T, CommandError<<A as Aggregate>::Rejection>>;

impl<A: Aggregate> CommandService<A> {
    pub fn new(store: Arc<dyn Store>, settings: CommandSettings) -> Self {
        Self {
            store,
            settings,
            stream_locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> &CommandSettings {
        &self.settings
    }

    fn stream(id: &EntityId) -> StreamId {
        StreamId::of::<A::Event>(id.clone())
    }

    /// The facts `decide` asked for: today, the actor, and the versions of the streams it named.
    async fn context(
        &self,
        id: &EntityId,
        command: &A::Command,
        actor: &Actor,
    ) -> Result<Context, StoreError> {
        let mut context = Context::new(Utc::now().date_naive(), actor.clone());
        for stream in A::context_streams(id, command) {
            let version = self.store.stream_version(&stream).await?;
            context.stream_versions.insert(stream, version);
        }
        Ok(context)
    }

    /// Run a command on the stream `id` of aggregate `A`.
    pub async fn execute(
        &self,
        id: &EntityId,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Outcome<A, Accepted> {
        let stream = Self::stream(id);
        let fingerprint = meta.fingerprint.as_deref().unwrap_or("");
        if let Some(key) = &meta.idempotency_key
            && let Some(first) = self
                .store
                .idempotent_outcome(&stream, key, fingerprint)
                .await?
        {
            metrics::replay(&aggregate_name::<A>());
            return Ok(replay(first.version));
        }
        let context = self.context(id, &command, &meta.actor).await?;

        let _serialized = self.lock_for(id).lock().await;
        let mut attempt = 0;
        // The cached state is a guess checked by the append's expected version: a stale one
        // costs a conflict and a reload, never a wrong write.
        let mut cached = self.cached(id);
        loop {
            let from_cache = cached.is_some();
            let (state, snapshot_version) = match cached.take() {
                Some(hit) => hit,
                None => self.load(id).await?,
            };
            if let Some(expected) = meta.if_match
                && expected != state.version()
            {
                if from_cache {
                    continue;
                }
                return Err(CommandError::PreconditionFailed {
                    expected,
                    actual: state.version(),
                });
            }
            let events = match state.decide(id, &command, &context) {
                Ok(events) => events,
                // A refusal is only answered from state read just now.
                Err(_) if from_cache => continue,
                Err(rejection) => return Err(CommandError::Rejected(rejection)),
            };
            if events.is_empty() {
                // "Nothing to do" is an answer like a refusal: only from state read just now.
                if from_cache {
                    continue;
                }
                let version = state.version();
                self.remember(id, state, snapshot_version);
                return Ok(Accepted {
                    version,
                    appended: 0,
                    replayed: false,
                });
            }
            let count = events.len();
            let request = AppendRequest {
                stream: stream.clone(),
                expected: match state.version() {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exactly(v),
                },
                events: self.new_events(&stream, &events, meta)?,
                idempotency: meta.idempotency_key.as_ref().map(|key| Idempotency {
                    key: key.clone(),
                    ttl: self.settings.idempotency_ttl,
                    fingerprint: fingerprint.to_owned(),
                }),
            };
            let appending = std::time::Instant::now();
            let appended = self.store.append(request).await;
            metrics::append(&aggregate_name::<A>(), appending.elapsed());
            match appended {
                Ok(outcome) if outcome.duplicate => {
                    self.forget(id);
                    metrics::replay(&aggregate_name::<A>());
                    return Ok(replay(outcome.version));
                }
                Ok(outcome) => {
                    let mut after = state;
                    for event in &events {
                        after.evolve(event);
                    }
                    let snapshot_version =
                        self.maybe_snapshot(&stream, &after, snapshot_version).await;
                    self.remember(id, after, snapshot_version);
                    return Ok(Accepted {
                        version: outcome.version,
                        appended: count,
                        replayed: false,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    self.forget(id);
                    metrics::conflict(&aggregate_name::<A>());
                    if from_cache {
                        continue;
                    }
                    if let Some(expected) = meta.if_match {
                        return Err(CommandError::PreconditionFailed { expected, actual });
                    }
                    attempt += 1;
                    if attempt > self.settings.max_retries {
                        return Err(CommandError::Conflict {
                            expected: state.version(),
                            actual,
                        });
                    }
                    metrics::retry(&aggregate_name::<A>());
                    tracing::debug!(%stream, attempt, actual, "version conflict, reloading");
                }
                Err(other) => {
                    self.forget(id);
                    return Err(other.into());
                }
            }
        }
    }

    fn cached(&self, id: &EntityId) -> Option<(A, u64)> {
        lock(&self.cache).get(id).cloned()
    }

    fn remember(&self, id: &EntityId, state: A, snapshot_version: u64) {
        let mut cache = lock(&self.cache);
        // Bounded without bookkeeping: when full, start over (a miss is one load).
        if cache.len() >= CACHE_STREAMS && !cache.contains_key(id) {
            cache.clear();
        }
        cache.insert(id.clone(), (state, snapshot_version));
    }

    fn forget(&self, id: &EntityId) {
        lock(&self.cache).remove(id);
    }

    /// The stream's current state: the latest snapshot plus every event after it.
    /// Returns the state and the version of the snapshot it started from.
    pub async fn load(&self, id: &EntityId) -> Outcome<A, (A, u64)> {
        const PAGE: usize = 1000;
        let stream = Self::stream(id);
        let corrupt = |reason: String| CommandError::Corrupt {
            stream: stream.clone(),
            reason,
        };
        let mut state = match self.store.load_snapshot(&stream).await? {
            Some(snapshot) => match A::from_snapshot(&snapshot.state) {
                Ok(state) if state.version() == snapshot.version => state,
                // A snapshot is only a shortcut: an unreadable one is skipped, not fatal.
                Ok(_) | Err(_) => {
                    tracing::warn!(%stream, version = snapshot.version, "ignoring an unreadable snapshot");
                    A::default()
                }
            },
            None => A::default(),
        };
        let snapshot_version = state.version();
        loop {
            let page = self
                .store
                .read_stream(&stream, state.version() + 1, PAGE)
                .await?;
            for stored in &page {
                if stored.envelope.version != state.version() + 1 {
                    return Err(corrupt(format!(
                        "expected version {}, found {}",
                        state.version() + 1,
                        stored.envelope.version
                    )));
                }
                let event = stored.decode::<A::Event>().map_err(|e| {
                    if e.is_from_a_newer_build() {
                        CommandError::FromNewerBuild {
                            stream: stream.clone(),
                            reason: e.to_string(),
                        }
                    } else {
                        corrupt(e.to_string())
                    }
                })?;
                state.evolve(&event);
            }
            if page.len() < PAGE {
                return Ok((state, snapshot_version));
            }
        }
    }

    fn new_events(
        &self,
        stream: &StreamId,
        events: &[A::Event],
        meta: &CommandMeta,
    ) -> Outcome<A, Vec<NewEvent>> {
        let now = Utc::now();
        events
            .iter()
            .map(|event| {
                let encoded = codec::encode(event).map_err(|e| CommandError::Corrupt {
                    stream: stream.clone(),
                    reason: e.to_string(),
                })?;
                Ok(NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: encoded.event_type.to_owned(),
                    schema_version: encoded.schema_version,
                    category: encoded.category,
                    occurred_at: now,
                    correlation_id: meta.correlation_id.clone(),
                    causation_id: meta.causation_id.clone(),
                    actor: Some(meta.actor.recorded()),
                    payload: encoded.payload,
                })
            })
            .collect()
    }

    /// Snapshot when the new version crossed a multiple of `snapshot_every`, and return the
    /// version of the latest snapshot. A failure only costs a slower next load, so it is
    /// logged, not returned.
    async fn maybe_snapshot(&self, stream: &StreamId, after: &A, snapshot_version: u64) -> u64 {
        let every = self.settings.snapshot_every;
        let version = after.version();
        if every == 0 || version / every <= snapshot_version / every {
            return snapshot_version;
        }
        let state = match after.to_snapshot() {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%stream, %error, "snapshot does not encode");
                return snapshot_version;
            }
        };
        match self
            .store
            .save_snapshot(stream, Snapshot { version, state })
            .await
        {
            Ok(_) => version,
            Err(error) => {
                tracing::warn!(%stream, %error, "snapshot not saved");
                snapshot_version
            }
        }
    }

    fn lock_for(&self, id: &EntityId) -> &Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut hasher);
        let stripe = (hasher.finish() % LOCK_STRIPES as u64) as usize;
        &self.stream_locks[stripe]
    }
}

/// What a command asks and who asks it, as a short text that two equal commands of one actor
/// share: FNV-1a (64 bits) of the aggregate type, the actor and the command in MessagePack's
/// compact form (fields by position, never by name), so a retry that spans a deploy renaming
/// a field is still recognised. The actor is in it so that another caller reusing a key is
/// refused, not answered the first caller's result.
pub fn fingerprint<A: Aggregate>(command: &A::Command, actor: &Actor) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    add(<A::Event as esr_schema::DomainEvent>::AGGREGATE
        .as_str()
        .as_bytes());
    add(b":");
    add(actor.recorded().as_bytes());
    add(b":");
    match rmp_serde::to_vec(command) {
        Ok(encoded) => add(&encoded),
        // A command that does not encode (a map with non-string keys, say) is told apart by
        // its text instead.
        Err(_) => add(format!("{command:?}").as_bytes()),
    }
    format!("{hash:016x}")
}

fn replay(version: u64) -> Accepted {
    Accepted {
        version,
        appended: 0,
        replayed: true,
    }
}

/// The aggregate's name, as metrics label it.
fn aggregate_name<A: Aggregate>() -> String {
    <A::Event as DomainEvent>::AGGREGATE.to_string()
}
