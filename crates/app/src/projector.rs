//! The projector side: consumer groups feeding handlers, exactly once in effect.
//!
//! Each handler has its own group on the category streams. The runtime reads batches
//! (`read_new` with BLOCK and COUNT), claims entries a dead consumer left pending, hands every
//! decodable event to the handler, dead-letters poison entries, and acks a batch only after
//! its effects are stored. Handlers are idempotent (version-conditioned writes, idempotency
//! keys), so a redelivery changes nothing and any number of processes may share a group.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use esr_domain::{Profile, friendship};
use esr_schema::{Category, StoredEvent, UserEvent, UserId};
use esr_store::{Delivery, ReadModel, ReadModelWrite, Store, StoreError};
use serde::Serialize;
use tokio::sync::watch;

use crate::command::{CommandError, CommandMeta, CommandService};

/// The read model name of the profile projection.
pub const PROFILE_READ_MODEL: &str = "profile";

#[derive(Debug, Clone)]
pub struct ProjectorSettings {
    /// Unique per process: pending entries are tracked per consumer.
    pub consumer: String,
    pub batch_size: usize,
    pub block: Duration,
    /// Entries pending longer than this are presumed abandoned and claimed.
    pub claim_idle: Duration,
    /// An entry delivered more often than this is poison.
    pub max_deliveries: u64,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            consumer: unique_consumer_name(),
            batch_size: 100,
            block: Duration::from_millis(2000),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

/// `<host>-<pid>-<random>`: never shared between instances, readable in `XINFO CONSUMERS`.
pub fn unique_consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "projector".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// Why a handler could not apply an event.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later (the store was unavailable): the entry stays pending.
    #[error("transient: {0}")]
    Transient(String),
    /// Will never work: the entry goes to the dead-letter stream.
    #[error("{0}")]
    Poison(String),
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) | StoreError::Conflict { .. } => {
                Self::Transient(e.to_string())
            }
            StoreError::Corrupt { .. } | StoreError::Invalid(_) => Self::Poison(e.to_string()),
        }
    }
}

/// One reaction to events: a projection or a policy.
#[async_trait]
pub trait Handler: Send + Sync {
    /// The consumer group, one per handler.
    fn group(&self) -> &'static str;
    fn categories(&self) -> &'static [Category];
    async fn handle(&self, stored: &StoredEvent, event: &UserEvent) -> Result<(), HandlerError>;

    /// A batch, one outcome per event in order. By default one event at a time; a handler
    /// that can coalesce (one write per user, say) overrides it.
    async fn handle_batch(
        &self,
        events: &[(StoredEvent, UserEvent)],
    ) -> Vec<Result<(), HandlerError>> {
        let mut outcomes = Vec::with_capacity(events.len());
        for (stored, event) in events {
            outcomes.push(self.handle(stored, event).await);
        }
        outcomes
    }
}

/// Folds events into the profile read model, only ever over the version it read.
pub struct ProfileProjection {
    store: Arc<dyn Store>,
}

impl ProfileProjection {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

/// A batch's users are split into this many chunks, applied concurrently.
const PROFILE_CHUNKS: usize = 4;

/// How often a batch reads and writes again the users whose write another consumer beat.
const PROFILE_WRITE_ROUNDS: usize = 10;

/// What a user's profile needs to reach the last of the events in hand.
enum Plan {
    AlreadyThere,
    Write(ReadModelWrite),
    /// Events between the stored version and those in hand are missing (e.g. pending with
    /// another consumer): read the user's stream from `from`, `span` events.
    History {
        from: u64,
        span: usize,
    },
}

/// Plan the write that brings a user's profile from `current` up to the last of `in_hand`
/// (that user's events, in version order), folding `history` (the user's stream from the
/// stored version on) instead when the events in hand leave a gap. One write for all of them.
fn plan_write(
    in_hand: &[StoredEvent],
    current: Option<&ReadModel>,
    history: Option<&[StoredEvent]>,
) -> Result<Plan, HandlerError> {
    let Some(last) = in_hand.last() else {
        return Ok(Plan::AlreadyThere);
    };
    let user_id = &last.envelope.user_id;
    let (mut profile, expected) = match current {
        Some(model) => (
            Profile::from_fields(&model.fields).map_err(|e| HandlerError::Poison(e.to_string()))?,
            model.version,
        ),
        None => (Profile::empty(user_id.clone()), 0),
    };
    let target = last.envelope.version;
    if target <= expected {
        return Ok(Plan::AlreadyThere);
    }
    let fresh: Vec<&StoredEvent> = in_hand
        .iter()
        .filter(|e| e.envelope.version > expected)
        .collect();
    let contiguous = fresh
        .iter()
        .enumerate()
        .all(|(i, e)| e.envelope.version == expected + 1 + i as u64);
    // The user's stream is the truth, so the order in which consumers get entries never
    // matters.
    let events: Vec<&StoredEvent> = match history {
        _ if contiguous => fresh,
        Some(history) => history.iter().collect(),
        None => {
            return Ok(Plan::History {
                from: expected + 1,
                span: usize::try_from(target - expected).unwrap_or(usize::MAX),
            });
        }
    };
    for e in events {
        let decoded = e
            .decode()
            .map_err(|err| HandlerError::Poison(err.to_string()))?;
        profile.apply(&e.envelope, &decoded);
    }
    if profile.version != target {
        return Err(HandlerError::Transient(format!(
            "user stream of {user_id} ends at {} before version {target}",
            profile.version
        )));
    }
    Ok(Plan::Write(ReadModelWrite {
        user_id: user_id.clone(),
        expected,
        model: ReadModel {
            version: profile.version,
            fields: profile.to_fields(),
        },
    }))
}

/// One round's plans for the `pending` users (index into `users`, user id) from their stored
/// profiles, reading concurrently the histories that gaps need.
async fn plan_round(
    store: &Arc<dyn Store>,
    users: &[Vec<StoredEvent>],
    pending: impl Iterator<Item = (usize, UserId)>,
    current: Vec<Option<ReadModel>>,
) -> Vec<(usize, UserId, Result<Plan, HandlerError>)> {
    let mut planned = Vec::new();
    let (mut gaps, mut gap_models) = (Vec::new(), BTreeMap::new());
    for ((u, user_id), model) in pending.zip(current) {
        match plan_write(&users[u], model.as_ref(), None) {
            Ok(Plan::History { from, span }) => {
                gaps.push((u, user_id, from, span));
                gap_models.insert(u, model);
            }
            other => planned.push((u, user_id, other)),
        }
    }
    for (u, user_id, history) in read_histories(store, gaps).await {
        let model = gap_models.get(&u).and_then(Option::as_ref);
        let plan = match history {
            Ok(history) => plan_write(&users[u], model, Some(&history)),
            Err(e) => Err(e.into()),
        };
        planned.push((u, user_id, plan));
    }
    planned
}

/// The histories `plan_write` asked for, read concurrently: (user index, user, result).
async fn read_histories(
    store: &Arc<dyn Store>,
    wanted: Vec<(usize, UserId, u64, usize)>,
) -> Vec<(usize, UserId, Result<Vec<StoredEvent>, StoreError>)> {
    let mut reads = tokio::task::JoinSet::new();
    for (u, user_id, from, span) in wanted {
        let store = store.clone();
        reads.spawn(async move {
            let history = store.read_user(&user_id, from, span).await;
            (u, user_id, history)
        });
    }
    let mut histories = Vec::new();
    while let Some(joined) = reads.join_next().await {
        if let Ok(read) = joined {
            histories.push(read);
        }
    }
    histories
}

/// Bring each user's profile up to the last of their events in hand: one batched read and one
/// batched write for all users, then again for those whose write another consumer beat.
async fn apply_users(
    store: &Arc<dyn Store>,
    users: &[Vec<StoredEvent>],
) -> Vec<Result<(), HandlerError>> {
    let mut outcomes: Vec<Result<(), HandlerError>> = users
        .iter()
        .map(|_| Err(HandlerError::Transient("read model kept changing".into())))
        .collect();
    // (index, user id) of each user still to write; a user without events has nothing to do.
    let mut pending: Vec<(usize, UserId)> = Vec::with_capacity(users.len());
    for (u, in_hand) in users.iter().enumerate() {
        match in_hand.last() {
            Some(last) => pending.push((u, last.envelope.user_id.clone())),
            None => outcomes[u] = Ok(()),
        }
    }
    for _ in 0..PROFILE_WRITE_ROUNDS {
        if pending.is_empty() {
            break;
        }
        let ids: Vec<UserId> = pending.iter().map(|(_, id)| id.clone()).collect();
        let current = match store.get_read_models(PROFILE_READ_MODEL, &ids).await {
            Ok(current) => current,
            Err(e) => {
                let e = HandlerError::from(e);
                for (u, _) in &pending {
                    outcomes[*u] = Err(e.clone());
                }
                pending.clear();
                break;
            }
        };
        let planned = plan_round(store, users, pending.drain(..), current).await;
        let (mut writes, mut writers) = (Vec::new(), Vec::new());
        for (u, user_id, plan) in planned {
            match plan {
                Ok(Plan::Write(write)) => {
                    writes.push(write);
                    writers.push((u, user_id));
                }
                Ok(Plan::AlreadyThere) => outcomes[u] = Ok(()),
                Ok(Plan::History { .. }) => {
                    outcomes[u] = Err(HandlerError::Transient(
                        "the user's stream did not fill the gap".into(),
                    ));
                }
                Err(e) => outcomes[u] = Err(e),
            }
        }
        if writes.is_empty() {
            break;
        }
        match store.put_read_models(PROFILE_READ_MODEL, writes).await {
            Ok(written) => {
                for ((u, user_id), outcome) in writers.into_iter().zip(written) {
                    match outcome {
                        Ok(()) => outcomes[u] = Ok(()),
                        // Another consumer wrote first: read again and retry.
                        Err(StoreError::Conflict { .. }) => pending.push((u, user_id)),
                        Err(e) => outcomes[u] = Err(e.into()),
                    }
                }
            }
            Err(e) => {
                let e = HandlerError::from(e);
                for (u, _) in writers {
                    outcomes[u] = Err(e.clone());
                }
            }
        }
    }
    for (u, _) in pending {
        outcomes[u] = Err(HandlerError::Transient("read model kept changing".into()));
    }
    outcomes
}

#[async_trait]
impl Handler for ProfileProjection {
    fn group(&self) -> &'static str {
        "profile_projection"
    }

    fn categories(&self) -> &'static [Category] {
        &Category::ALL
    }

    async fn handle(&self, stored: &StoredEvent, _event: &UserEvent) -> Result<(), HandlerError> {
        apply_users(&self.store, &[vec![stored.clone()]])
            .await
            .pop()
            .unwrap_or(Ok(()))
    }

    /// One batched read and one batched write for all users of the batch.
    async fn handle_batch(
        &self,
        events: &[(StoredEvent, UserEvent)],
    ) -> Vec<Result<(), HandlerError>> {
        let mut by_user: BTreeMap<UserId, Vec<usize>> = BTreeMap::new();
        for (i, (stored, _)) in events.iter().enumerate() {
            by_user
                .entry(stored.envelope.user_id.clone())
                .or_default()
                .push(i);
        }
        let (indexes, users): (Vec<Vec<usize>>, Vec<Vec<StoredEvent>>) = by_user
            .into_values()
            .map(|indexes| {
                let mut in_hand: Vec<StoredEvent> =
                    indexes.iter().map(|i| events[*i].0.clone()).collect();
                in_hand.sort_by_key(|e| e.envelope.version);
                (indexes, in_hand)
            })
            .unzip();
        // Disjoint sets of users, so the chunks never race each other: one chunk's folding
        // overlaps another's round trips, and the chunks spread over the cores.
        let chunk_size = users.len().div_ceil(PROFILE_CHUNKS).max(1);
        let mut chunks = tokio::task::JoinSet::new();
        let mut users = users.into_iter();
        let mut first = 0;
        while first < indexes.len() {
            let chunk: Vec<Vec<StoredEvent>> = users.by_ref().take(chunk_size).collect();
            let store = self.store.clone();
            let len = chunk.len();
            chunks.spawn(async move { (first, apply_users(&store, &chunk).await) });
            first += len.max(1);
        }
        let mut outcomes: Vec<Result<(), HandlerError>> = (0..events.len())
            .map(|_| Err(HandlerError::Transient("not applied".into())))
            .collect();
        while let Some(joined) = chunks.join_next().await {
            // A chunk that panicked leaves its events "not applied": they stay pending.
            let Ok((first, applied)) = joined else {
                continue;
            };
            for (user, result) in (first..).zip(applied) {
                for &i in indexes.get(user).map_or(&[][..], Vec::as_slice) {
                    outcomes[i] = result.clone();
                }
            }
        }
        outcomes
    }
}

/// Makes friendship mutual by running the friend's side of each friendship change.
pub struct FriendshipPolicy {
    commands: Arc<CommandService>,
}

impl FriendshipPolicy {
    pub fn new(commands: Arc<CommandService>) -> Self {
        Self { commands }
    }
}

#[async_trait]
impl Handler for FriendshipPolicy {
    fn group(&self) -> &'static str {
        "friendship_policy"
    }

    fn categories(&self) -> &'static [Category] {
        &[Category::UserFriends]
    }

    async fn handle(&self, stored: &StoredEvent, event: &UserEvent) -> Result<(), HandlerError> {
        if friendship::friend_changed(event).is_none() {
            return Ok(());
        }
        let (initiator_now, _) = match self.commands.load(&stored.envelope.user_id).await {
            Ok(loaded) => loaded,
            Err(CommandError::Store(e)) => return Err(e.into()),
            Err(other) => return Err(HandlerError::Poison(other.to_string())),
        };
        for reaction in friendship::react(&stored.envelope, event, &initiator_now) {
            let meta = CommandMeta {
                if_match: None,
                idempotency_key: Some(reaction.idempotency_key),
                correlation_id: stored.envelope.correlation_id.clone(),
                causation_id: reaction.causation_id,
            };
            match self
                .commands
                .execute(&reaction.target, reaction.command, &meta)
                .await
            {
                Ok(_) => {}
                // A rule refused the mirror command (the friend vanished?): that is an answer,
                // not a failure to retry.
                Err(CommandError::Rejected(rejection)) => {
                    tracing::warn!(target_user = %reaction.target, %rejection, "friendship mirror refused");
                }
                Err(CommandError::Store(e)) => return Err(e.into()),
                Err(other) => return Err(HandlerError::Transient(other.to_string())),
            }
        }
        Ok(())
    }
}

/// Health of one group, for `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupHealth {
    pub group: &'static str,
    pub lag: u64,
    pub pending: u64,
}

/// Every handler's runtime.
pub struct Projectors {
    store: Arc<dyn Store>,
    handlers: Vec<Arc<dyn Handler>>,
    settings: ProjectorSettings,
}

impl Projectors {
    /// The profile projection and the friendship policy.
    pub fn standard(
        store: Arc<dyn Store>,
        commands: Arc<CommandService>,
        settings: ProjectorSettings,
    ) -> Self {
        let handlers: Vec<Arc<dyn Handler>> = vec![
            Arc::new(ProfileProjection::new(store.clone())),
            Arc::new(FriendshipPolicy::new(commands)),
        ];
        Self::new(store, handlers, settings)
    }

    /// Any set of handlers, each with its own group.
    pub fn new(
        store: Arc<dyn Store>,
        handlers: Vec<Arc<dyn Handler>>,
        settings: ProjectorSettings,
    ) -> Self {
        Self {
            store,
            handlers,
            settings,
        }
    }

    pub async fn create_groups(&self) -> Result<(), StoreError> {
        for handler in &self.handlers {
            self.store
                .create_group(handler.group(), handler.categories())
                .await?;
        }
        Ok(())
    }

    /// Run every handler until `shutdown` turns true; each finishes and acks its batch in hand.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        self.create_groups().await?;
        let mut tasks = tokio::task::JoinSet::new();
        for handler in self.handlers.clone() {
            let (this, shutdown) = (self.clone(), shutdown.clone());
            tasks.spawn(async move { this.run_handler(handler, shutdown).await });
        }
        while let Some(done) = tasks.join_next().await {
            done?;
        }
        Ok(())
    }

    pub async fn health(&self) -> Result<(Vec<GroupHealth>, u64), StoreError> {
        let mut groups = Vec::new();
        for handler in &self.handlers {
            let stats = self
                .store
                .group_stats(handler.group(), handler.categories())
                .await?;
            groups.push(GroupHealth {
                group: handler.group(),
                lag: stats.lag,
                pending: stats.pending,
            });
        }
        let dead = self.store.dead_letter_count().await?;
        Ok((groups, dead))
    }

    async fn run_handler(
        self: Arc<Self>,
        handler: Arc<dyn Handler>,
        shutdown: watch::Receiver<bool>,
    ) {
        let s = &self.settings;
        let mut failures: u32 = 0;
        // Claim first: a restarted process picks up what its predecessor left.
        let mut next_claim = tokio::time::Instant::now();
        // The next batch, read while the current one is processed: the read's round trip and
        // parsing overlap the handler's work. One read at a time per consumer, as before.
        let mut read_ahead: Option<tokio::task::JoinHandle<Result<Vec<Delivery>, StoreError>>> =
            None;
        while !*shutdown.borrow() {
            let claim_due = tokio::time::Instant::now() >= next_claim;
            let batch = if let Some(reading) = read_ahead.take() {
                joined(reading.await)
            } else if claim_due {
                next_claim = tokio::time::Instant::now() + s.claim_idle / 2;
                self.store
                    .claim_idle(
                        handler.group(),
                        &s.consumer,
                        handler.categories(),
                        s.claim_idle,
                        s.batch_size,
                    )
                    .await
            } else {
                self.read_new(handler.as_ref()).await
            };
            let result = match batch {
                Ok(batch) => {
                    // A full batch says more is waiting; an empty or short one does not.
                    if batch.len() >= s.batch_size && !claim_due && !*shutdown.borrow() {
                        let (this, handler) = (self.clone(), handler.clone());
                        read_ahead = Some(tokio::spawn(async move {
                            this.read_new(handler.as_ref()).await
                        }));
                    }
                    self.process(handler.as_ref(), batch).await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => failures = 0,
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let pause = Duration::from_millis(100 * u64::from(failures.min(50)));
                    tracing::error!(group = handler.group(), error = %error_chain(&error), ?pause, "batch failed");
                    tokio::time::sleep(pause).await;
                }
            }
        }
        // A batch read ahead is in hand too: finish it, so stopping leaves nothing pending.
        if let Some(reading) = read_ahead {
            let result = match joined(reading.await) {
                Ok(batch) => self.process(handler.as_ref(), batch).await,
                Err(e) => Err(e),
            };
            if let Err(error) = result {
                tracing::error!(group = handler.group(), error = %error_chain(&error), "last batch failed; claimed by another consumer later");
            }
        }
        tracing::info!(group = handler.group(), "stopped");
    }

    async fn read_new(&self, handler: &dyn Handler) -> Result<Vec<Delivery>, StoreError> {
        let s = &self.settings;
        self.store
            .read_new(
                handler.group(),
                &s.consumer,
                handler.categories(),
                s.batch_size,
                s.block,
            )
            .await
    }

    async fn process(&self, handler: &dyn Handler, batch: Vec<Delivery>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // First what the runtime itself can judge: entries that are not events, or failed too
        // often; then the handler gets the rest as one batch.
        let mut outcomes: Vec<Option<Result<(), HandlerError>>> = Vec::with_capacity(batch.len());
        let (mut handed, mut events) = (Vec::new(), Vec::new());
        for (i, delivery) in batch.iter().enumerate() {
            let judged = match delivery.event() {
                Err(e) => Some(Err(HandlerError::Poison(format!("not an event: {e}")))),
                Ok(stored) => match stored.decode() {
                    Err(e) => Some(Err(HandlerError::Poison(e.to_string()))),
                    Ok(_) if delivery.deliveries > self.settings.max_deliveries => {
                        Some(Err(HandlerError::Poison(format!(
                            "failed {} deliveries",
                            delivery.deliveries - 1
                        ))))
                    }
                    Ok(event) => {
                        handed.push(i);
                        events.push((stored, event));
                        None
                    }
                },
            };
            outcomes.push(judged);
        }
        let handled = handler.handle_batch(&events).await;
        for (i, outcome) in handed.into_iter().zip(handled) {
            outcomes[i] = Some(outcome);
        }

        let mut done = Vec::with_capacity(batch.len());
        let (mut dead, mut deferred) = (0, 0);
        for (delivery, outcome) in batch.iter().zip(outcomes) {
            match outcome.unwrap_or_else(|| Err(HandlerError::Transient("not handled".into()))) {
                Ok(()) => done.push(delivery.entry.clone()),
                Err(HandlerError::Poison(reason)) => {
                    tracing::warn!(group = handler.group(), entry = %delivery.entry.id, %reason, "dead-lettering");
                    self.store
                        .dead_letter(handler.group(), delivery, &reason)
                        .await?;
                    dead += 1;
                }
                // Left pending: claimed again after the idle time, up to `max_deliveries`.
                Err(HandlerError::Transient(reason)) => {
                    tracing::warn!(group = handler.group(), entry = %delivery.entry.id, %reason, "will retry");
                    deferred += 1;
                }
            }
        }
        self.store.ack(handler.group(), &done).await?;
        tracing::info!(
            group = handler.group(),
            applied = done.len(),
            dead_lettered = dead,
            deferred,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "batch"
        );
        Ok(())
    }
}

/// A read-ahead task's result; a task that panicked is reported as the store failing.
fn joined(
    result: Result<Result<Vec<Delivery>, StoreError>, tokio::task::JoinError>,
) -> Result<Vec<Delivery>, StoreError> {
    result.unwrap_or_else(|e| Err(StoreError::Unavailable(Box::new(e))))
}

/// An error and its causes, `a: b: c`, for one log line.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Read a user's profile the way the projector stored it.
pub async fn stored_profile(
    store: &dyn Store,
    user_id: &UserId,
) -> Result<Option<Profile>, StoreError> {
    match store.get_read_model(PROFILE_READ_MODEL, user_id).await? {
        None => Ok(None),
        Some(model) => {
            Profile::from_fields(&model.fields)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    what: format!("profile of {user_id}"),
                    reason: e.to_string(),
                })
        }
    }
}
