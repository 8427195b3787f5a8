//! The command side: load, decide, append.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use esr_domain::{Command, Context, Rejection, User};
use esr_schema::{UserId, codec};
use esr_store::{
    AppendRequest, ExpectedVersion, Idempotency, NewEvent, Snapshot, Store, StoreError,
};
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct CommandSettings {
    /// Write an aggregate snapshot every this many events (0: never).
    pub snapshot_every: u64,
    /// Reloads after a version conflict before answering 409.
    pub max_retries: u32,
    /// How long an idempotency record is kept.
    pub idempotency_ttl: Duration,
}

impl Default for CommandSettings {
    fn default() -> Self {
        Self {
            snapshot_every: 100,
            max_retries: 5,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Where a command came from, for the envelope and for concurrency control.
#[derive(Debug, Clone, Default)]
pub struct CommandMeta {
    /// From `If-Match`: the version the client last saw. A mismatch is answered, not retried.
    pub if_match: Option<u64>,
    pub idempotency_key: Option<String>,
    pub correlation_id: String,
    /// The command's own id, or the event that caused it (policies).
    pub causation_id: String,
}

impl CommandMeta {
    pub fn new(correlation_id: Option<String>) -> Self {
        let command_id = Uuid::now_v7().to_string();
        Self {
            if_match: None,
            idempotency_key: None,
            correlation_id: correlation_id.unwrap_or_else(|| command_id.clone()),
            causation_id: command_id,
        }
    }
}

/// What an accepted command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The user's version after the command.
    pub version: u64,
    /// Events appended by this call (0 for a replay or a command that changed nothing).
    pub appended: usize,
    /// The idempotency key had been seen: this is the first call's result.
    pub replayed: bool,
}

/// Why a command was not accepted.
///
/// HTTP: `Rejected` as its [`Rejection`] says (404, 409 or 422); `PreconditionFailed` 412;
/// `Conflict` 409; `Store` 503 when unavailable, else 500; `Corrupt` 500.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("the user is at version {actual}, not {expected} as If-Match says")]
    PreconditionFailed { expected: u64, actual: u64 },
    #[error("the user kept changing: expected version {expected}, found {actual}")]
    Conflict { expected: u64, actual: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored history of {user_id} cannot be read: {reason}")]
    Corrupt { user_id: UserId, reason: String },
}

/// Serializes commands per user inside this instance (so dozens of concurrent commands on one
/// user all go through), and retries conflicts with other instances.
pub struct CommandService {
    store: Arc<dyn Store>,
    settings: CommandSettings,
    user_locks: Vec<Mutex<()>>,
    /// Users' state after this instance's last command on them, with their snapshot version.
    cache: std::sync::Mutex<HashMap<UserId, (User, u64)>>,
}

/// Users kept in the aggregate cache.
const CACHE_USERS: usize = 100_000;

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Enough stripes that unrelated users rarely share one, few enough to cost nothing.
const LOCK_STRIPES: usize = 1024;

impl CommandService {
    pub fn new(store: Arc<dyn Store>, settings: CommandSettings) -> Self {
        Self {
            store,
            settings,
            user_locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Run a command for a user. `AddFriend`'s `friend_registered` is looked up here; the
    /// caller's value is ignored.
    pub async fn execute(
        &self,
        user_id: &UserId,
        mut command: Command,
        meta: &CommandMeta,
    ) -> Result<Accepted, CommandError> {
        if let Some(key) = &meta.idempotency_key
            && let Some(first) = self.store.idempotent_outcome(user_id, key).await?
        {
            return Ok(replay(first.version));
        }
        if let Command::AddFriend {
            friend_id,
            friend_registered,
            ..
        } = &mut command
        {
            // A user's stream starts with its registration, so a non-empty stream is a
            // registered user.
            *friend_registered = self.store.user_version(friend_id).await? > 0;
        }

        let _serialized = self.lock_for(user_id).lock().await;
        let mut attempt = 0;
        // The cached state is a guess checked by the append's expected version: a stale one
        // costs a conflict and a reload, never a wrong write.
        let mut cached = self.cached(user_id);
        loop {
            let from_cache = cached.is_some();
            let (user, snapshot_version) = match cached.take() {
                Some(hit) => hit,
                None => self.load(user_id).await?,
            };
            if let Some(expected) = meta.if_match
                && expected != user.version
            {
                if from_cache {
                    continue;
                }
                return Err(CommandError::PreconditionFailed {
                    expected,
                    actual: user.version,
                });
            }
            let today = Utc::now().date_naive();
            let events = match user.decide(user_id, &command, Context { today }) {
                Ok(events) => events,
                // A refusal is only answered from state read just now.
                Err(_) if from_cache => continue,
                Err(rejection) => return Err(rejection.into()),
            };
            if events.is_empty() {
                let version = user.version;
                if !from_cache {
                    self.remember(user_id, user, snapshot_version);
                }
                return Ok(Accepted {
                    version,
                    appended: 0,
                    replayed: false,
                });
            }
            let count = events.len();
            let request = AppendRequest {
                user_id: user_id.clone(),
                expected: match user.version {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exactly(v),
                },
                events: self.new_events(user_id, &events, meta)?,
                idempotency: meta.idempotency_key.as_ref().map(|key| Idempotency {
                    key: key.clone(),
                    ttl: self.settings.idempotency_ttl,
                }),
            };
            match self.store.append(request).await {
                Ok(outcome) if outcome.duplicate => {
                    self.forget(user_id);
                    return Ok(replay(outcome.version));
                }
                Ok(outcome) => {
                    let mut after = user;
                    for event in &events {
                        after.evolve(event);
                    }
                    let snapshot_version =
                        self.maybe_snapshot(user_id, &after, snapshot_version).await;
                    self.remember(user_id, after, snapshot_version);
                    return Ok(Accepted {
                        version: outcome.version,
                        appended: count,
                        replayed: false,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    self.forget(user_id);
                    if from_cache {
                        continue;
                    }
                    if let Some(expected) = meta.if_match {
                        return Err(CommandError::PreconditionFailed { expected, actual });
                    }
                    attempt += 1;
                    if attempt > self.settings.max_retries {
                        return Err(CommandError::Conflict {
                            expected: user.version,
                            actual,
                        });
                    }
                    tracing::debug!(%user_id, attempt, actual, "version conflict, reloading");
                }
                Err(other) => {
                    self.forget(user_id);
                    return Err(other.into());
                }
            }
        }
    }

    fn cached(&self, user_id: &UserId) -> Option<(User, u64)> {
        lock(&self.cache).get(user_id).cloned()
    }

    fn remember(&self, user_id: &UserId, user: User, snapshot_version: u64) {
        let mut cache = lock(&self.cache);
        // Bounded without bookkeeping: when full, start over (a miss is one load).
        if cache.len() >= CACHE_USERS && !cache.contains_key(user_id) {
            cache.clear();
        }
        cache.insert(user_id.clone(), (user, snapshot_version));
    }

    fn forget(&self, user_id: &UserId) {
        lock(&self.cache).remove(user_id);
    }

    /// The user's current state: the latest snapshot plus every event after it.
    /// Returns the state and the version of the snapshot it started from.
    pub async fn load(&self, user_id: &UserId) -> Result<(User, u64), CommandError> {
        const PAGE: usize = 1000;
        let corrupt = |reason: String| CommandError::Corrupt {
            user_id: user_id.clone(),
            reason,
        };
        let mut user = match self.store.load_snapshot(user_id).await? {
            Some(snapshot) => match User::from_snapshot(&snapshot.state) {
                Ok(user) if user.version == snapshot.version => user,
                // A snapshot is only a shortcut: an unreadable one is skipped, not fatal.
                Ok(_) | Err(_) => {
                    tracing::warn!(%user_id, version = snapshot.version, "ignoring an unreadable snapshot");
                    User::default()
                }
            },
            None => User::default(),
        };
        let snapshot_version = user.version;
        loop {
            let page = self
                .store
                .read_user(user_id, user.version + 1, PAGE)
                .await?;
            for stored in &page {
                if stored.envelope.version != user.version + 1 {
                    return Err(corrupt(format!(
                        "expected version {}, found {}",
                        user.version + 1,
                        stored.envelope.version
                    )));
                }
                let event = stored.decode().map_err(|e| corrupt(e.to_string()))?;
                user.evolve(&event);
            }
            if page.len() < PAGE {
                return Ok((user, snapshot_version));
            }
        }
    }

    fn new_events(
        &self,
        user_id: &UserId,
        events: &[esr_schema::UserEvent],
        meta: &CommandMeta,
    ) -> Result<Vec<NewEvent>, CommandError> {
        let now = Utc::now();
        events
            .iter()
            .map(|event| {
                let encoded = codec::encode(event).map_err(|e| CommandError::Corrupt {
                    user_id: user_id.clone(),
                    reason: e.to_string(),
                })?;
                Ok(NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: encoded.event_type.to_owned(),
                    schema_version: encoded.schema_version,
                    occurred_at: now,
                    correlation_id: meta.correlation_id.clone(),
                    causation_id: meta.causation_id.clone(),
                    payload: encoded.payload,
                })
            })
            .collect()
    }

    /// Snapshot when the new version crossed a multiple of `snapshot_every`, and return the
    /// version of the latest snapshot. A failure only costs a slower next load, so it is
    /// logged, not returned.
    async fn maybe_snapshot(&self, user_id: &UserId, user: &User, snapshot_version: u64) -> u64 {
        let every = self.settings.snapshot_every;
        if every == 0 || user.version / every <= snapshot_version / every {
            return snapshot_version;
        }
        let state = match user.to_snapshot() {
            Ok(state) => state,
            Err(error) => {
                tracing::warn!(%user_id, %error, "snapshot does not encode");
                return snapshot_version;
            }
        };
        let snapshot = Snapshot {
            version: user.version,
            state,
        };
        match self.store.save_snapshot(user_id, snapshot).await {
            Ok(_) => user.version,
            Err(error) => {
                tracing::warn!(%user_id, %error, "snapshot not saved");
                snapshot_version
            }
        }
    }

    fn lock_for(&self, user_id: &UserId) -> &Mutex<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        user_id.hash(&mut hasher);
        let stripe = (hasher.finish() % LOCK_STRIPES as u64) as usize;
        &self.user_locks[stripe]
    }
}

fn replay(version: u64) -> Accepted {
    Accepted {
        version,
        appended: 0,
        replayed: true,
    }
}
