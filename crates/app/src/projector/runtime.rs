//! The runtime: consumer groups feeding handlers, exactly once in effect.
//!
//! Each handler has its own group on the category streams. The instances of a projector side
//! divide each group's partitions by lease ([`super::lease`]): an instance reads only the
//! partitions it holds (`read_new_in` with BLOCK and COUNT), takes over what a former holder
//! left pending when it takes a partition, hands every decodable event to the handler with the
//! leases' fence, dead-letters poison entries, and acks a batch only after its effects are
//! stored. Handlers are idempotent (version-conditioned writes, idempotency keys), so a
//! redelivery changes nothing, and fenced, so a former holder's late write is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use esr_store::{Delivery, EntryRef, Store, StoreError};
use serde::Serialize;
use tokio::sync::watch;

use super::lease::GroupLeases;
use super::{Handler, HandlerError};
use crate::{error_chain, metrics};

#[derive(Debug, Clone)]
pub struct ProjectorSettings {
    /// Never shared by two live processes: pending entries are tracked per consumer. A stable
    /// name (one per replica) lets a restarted process resume its own pending entries at once.
    pub consumer: String,
    pub batch_size: usize,
    pub block: Duration,
    /// Entries pending longer than this are presumed abandoned and claimed.
    pub claim_idle: Duration,
    /// An entry delivered more often than this is poison.
    pub max_deliveries: u64,
    /// Consumers idle this long with nothing pending are removed from the groups (`None`:
    /// never), so the names of processes long gone do not pile up.
    pub prune_idle: Option<Duration>,
    /// Trim the category streams this often, below what every group has acked (`None`: never;
    /// the events stay in their aggregates' own streams either way).
    pub trim_every: Option<Duration>,
    /// A partition's lease runs out this long after its holder last renewed it (every third
    /// of it): an instance that dies or stalls loses its partitions to the others after this.
    pub lease: Duration,
}

impl Default for ProjectorSettings {
    fn default() -> Self {
        Self {
            consumer: unique_consumer_name(),
            batch_size: 100,
            block: Duration::from_millis(2000),
            claim_idle: Duration::from_secs(30),
            max_deliveries: 5,
            prune_idle: Some(Duration::from_secs(60 * 60)),
            trim_every: None,
            lease: Duration::from_secs(10),
        }
    }
}

/// `<host>-<pid>-<random>`: never shared between instances, readable in `XINFO CONSUMERS`.
pub fn unique_consumer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "projector".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

/// Health of one group, for `/healthz`.
#[derive(Debug, Clone, Serialize)]
pub struct GroupHealth {
    pub group: String,
    pub lag: u64,
    /// `lag` is only a lower bound (the store could not count further).
    pub lag_is_lower_bound: bool,
    pub pending: u64,
    /// Pending entries of a type or schema version this build does not know, seen lately.
    pub from_newer_build: u64,
}

/// Entries each group left pending for a newer build, with when this process last saw each
/// (they come back with every claim): reported while seen within a few claim rounds.
#[derive(Default)]
struct NewerBuildEntries {
    seen: std::sync::Mutex<HashMap<(String, EntryRef), std::time::Instant>>,
}

impl NewerBuildEntries {
    fn seen(&self, group: &str, entry: &EntryRef) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.insert((group.to_owned(), entry.clone()), std::time::Instant::now());
    }

    /// How many of `group`'s were seen within `window`; older ones are forgotten.
    fn count(&self, group: &str, window: Duration) -> u64 {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.retain(|_, at| at.elapsed() <= window);
        seen.keys().filter(|(g, _)| g == group).count() as u64
    }
}

/// Every handler's runtime.
pub struct Projectors {
    store: Arc<dyn Store>,
    handlers: Vec<Arc<dyn Handler>>,
    settings: ProjectorSettings,
    newer: NewerBuildEntries,
}

impl Projectors {
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
            newer: NewerBuildEntries::default(),
        }
    }

    pub fn handlers(&self) -> &[Arc<dyn Handler>] {
        &self.handlers
    }

    pub async fn create_groups(&self) -> Result<(), StoreError> {
        // Two handlers in one group would each take the other's entries and ack them unhandled.
        for (i, handler) in self.handlers.iter().enumerate() {
            if self.handlers[..i]
                .iter()
                .any(|h| h.group() == handler.group())
            {
                return Err(StoreError::Invalid(format!(
                    "two handlers share the consumer group {:?}: each handler needs its own",
                    handler.group()
                )));
            }
        }
        for handler in &self.handlers {
            self.store
                .create_group(handler.group(), handler.categories())
                .await?;
        }
        Ok(())
    }

    /// Create the groups, waiting out a store that is unavailable (starting, memory full):
    /// false when `shutdown` came first. Any other failure (a key of another type where a
    /// stream belongs) is returned: it will not mend itself.
    async fn create_groups_once_available(
        &self,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<bool, StoreError> {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.create_groups().await {
                Ok(()) => return Ok(true),
                Err(StoreError::Unavailable(error)) => {
                    tracing::warn!(error = %error_chain(error.as_ref()), "store unavailable: groups not created yet, retrying");
                }
                Err(other) => return Err(other),
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.wait_for(|stop| *stop) => return Ok(false),
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Run every handler until `shutdown` turns true; each finishes and acks its batch in hand.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) -> anyhow::Result<()> {
        if !self.create_groups_once_available(shutdown.clone()).await? {
            return Ok(());
        }
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(every) = self.settings.trim_every {
            let (this, shutdown) = (self.clone(), shutdown.clone());
            tasks.spawn(async move { this.trim(every, shutdown).await });
        }
        let mut all_leases = Vec::new();
        for handler in self.handlers.clone() {
            let leases = Arc::new(GroupLeases::new(
                handler.group(),
                &self.settings.consumer,
                self.settings.lease,
                // A blocked read started before a partition was given up brings its entries
                // back within its block time: only then may another instance take it.
                self.settings.block + Duration::from_secs(1),
            ));
            all_leases.push(leases.clone());
            let (this, keeper, stop) = (self.clone(), leases.clone(), shutdown.clone());
            tasks.spawn(async move { this.keep_leases(keeper, stop).await });
            let (this, shutdown) = (self.clone(), shutdown.clone());
            tasks.spawn(async move { this.run_handler(handler, leases, shutdown).await });
        }
        while let Some(done) = tasks.join_next().await {
            done?;
        }
        // Every batch in hand is done: hand the partitions over now, not after the lease time.
        for leases in all_leases {
            leases.release_all(self.store.as_ref()).await;
        }
        Ok(())
    }

    /// Keep one group's leases, a round every third of the lease time, until `shutdown`.
    async fn keep_leases(
        self: Arc<Self>,
        leases: Arc<GroupLeases>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            leases.keep(self.store.as_ref()).await;
            tokio::select! {
                () = tokio::time::sleep(leases.renew_every()) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    pub async fn health(&self) -> Result<(Vec<GroupHealth>, u64), StoreError> {
        let mut groups = Vec::new();
        for handler in &self.handlers {
            let stats = self
                .store
                .group_stats(handler.group(), handler.categories())
                .await?;
            groups.push(GroupHealth {
                group: handler.group().to_owned(),
                lag: stats.lag,
                lag_is_lower_bound: stats.lag_is_lower_bound,
                pending: stats.pending,
                from_newer_build: self
                    .newer
                    .count(handler.group(), self.settings.claim_idle * 3),
            });
        }
        let dead = self.store.dead_letter_count().await?;
        Ok((groups, dead))
    }

    /// Set the lag and pending gauges of every group and partition, and the dead-letter
    /// count, from the store (at each scrape of `/metrics`).
    pub async fn record_metrics(&self) -> Result<(), StoreError> {
        for handler in &self.handlers {
            let partitions = self
                .store
                .partition_stats(handler.group(), handler.categories())
                .await?;
            for (partition, stats) in partitions.iter().enumerate() {
                metrics::group_partition(
                    handler.group(),
                    partition as u32,
                    stats.lag,
                    stats.pending,
                );
            }
        }
        metrics::dead_letters(self.store.dead_letter_count().await?);
        Ok(())
    }

    async fn run_handler(
        self: Arc<Self>,
        handler: Arc<dyn Handler>,
        leases: Arc<GroupLeases>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let s = &self.settings;
        let mut failures: u32 = 0;
        let mut next_claim = tokio::time::Instant::now();
        let mut next_prune = tokio::time::Instant::now();
        // The next batch, read while the current one is processed: the read's round trip and
        // parsing overlap the handler's work. One read at a time per consumer, as before.
        let mut read_ahead: Option<tokio::task::JoinHandle<Result<Vec<Delivery>, StoreError>>> =
            None;
        while !*shutdown.borrow() {
            // A partition just taken: what its former holder left pending is this one's now.
            for partition in leases.newly_taken() {
                self.take_over(handler.as_ref(), &leases, partition).await;
            }
            let reading = leases.reading();
            if reading.is_empty() && read_ahead.is_none() {
                // Nothing held (more instances than partitions, or not yet assigned).
                tokio::select! {
                    () = leases.wait_taken() => {}
                    _ = shutdown.wait_for(|stop| *stop) => {}
                }
                continue;
            }
            let claim_due = tokio::time::Instant::now() >= next_claim;
            let batch = if let Some(reading) = read_ahead.take() {
                joined(reading.await)
            } else if claim_due {
                next_claim = tokio::time::Instant::now() + s.claim_idle / 2;
                if let Some(idle) = s.prune_idle
                    && tokio::time::Instant::now() >= next_prune
                {
                    next_prune = tokio::time::Instant::now() + (idle / 4).max(s.claim_idle);
                    self.prune(handler.as_ref(), idle).await;
                }
                self.store
                    .claim_idle_in(
                        handler.group(),
                        &s.consumer,
                        handler.categories(),
                        &reading,
                        s.claim_idle,
                        s.batch_size,
                    )
                    .await
                    .inspect(|claimed| metrics::claimed(handler.group(), claimed.len()))
            } else {
                self.read_new(handler.as_ref(), &reading).await
            };
            let result = match batch {
                Ok(batch) => {
                    // A full batch says more is waiting; an empty or short one does not.
                    if batch.len() >= s.batch_size && !claim_due && !*shutdown.borrow() {
                        let (this, handler) = (self.clone(), handler.clone());
                        let reading = leases.reading();
                        read_ahead = Some(tokio::spawn(async move {
                            this.read_new(handler.as_ref(), &reading).await
                        }));
                    }
                    self.process(handler.as_ref(), &leases, batch).await
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
                    // A Redis restarted without persistence lost the groups (NOGROUP): create
                    // them again. Creating an existing group is a no-op, so this costs nothing
                    // when the failure was something else.
                    if let Err(error) = self
                        .store
                        .create_group(handler.group(), handler.categories())
                        .await
                    {
                        tracing::debug!(group = handler.group(), error = %error_chain(&error), "groups not created");
                    }
                }
            }
        }
        // A batch read ahead is in hand too: finish it, so stopping leaves nothing pending.
        if let Some(reading) = read_ahead {
            let result = match joined(reading.await) {
                Ok(batch) => self.process(handler.as_ref(), &leases, batch).await,
                Err(e) => Err(e),
            };
            if let Err(error) = result {
                tracing::error!(group = handler.group(), error = %error_chain(&error), "last batch failed; claimed by another consumer later");
            }
        }
        tracing::info!(group = handler.group(), "stopped");
    }

    /// Claim and process everything pending on a partition just taken, whoever it was
    /// delivered to (its former holder, or this consumer before a restart under its stable
    /// name), batch by batch, until a claim brings nothing not seen (entries left pending on
    /// purpose come back) or a batch fails: the idle claims take the rest then.
    async fn take_over(&self, handler: &dyn Handler, leases: &GroupLeases, partition: u32) {
        let s = &self.settings;
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let claimed = self
                .store
                .claim_idle_in(
                    handler.group(),
                    &s.consumer,
                    handler.categories(),
                    &[partition],
                    Duration::ZERO,
                    s.batch_size,
                )
                .await;
            let fresh: Vec<Delivery> = match claimed {
                Ok(claimed) => claimed
                    .into_iter()
                    .filter(|d| seen.insert(d.entry.clone()))
                    .collect(),
                Err(error) => {
                    tracing::warn!(group = handler.group(), partition, error = %error_chain(&error), "pending entries not taken over; idle claims will take them");
                    return;
                }
            };
            if fresh.is_empty() {
                return;
            }
            let taken = fresh.len();
            metrics::claimed(handler.group(), taken);
            if let Err(error) = self.process(handler, leases, fresh).await {
                tracing::warn!(group = handler.group(), partition, error = %error_chain(&error), "taken-over batch failed; idle claims will take it");
                return;
            }
            tracing::info!(
                group = handler.group(),
                partition,
                taken,
                "pending entries taken over"
            );
        }
    }

    /// Every `every`, trim the categories the handlers read below what every group on them
    /// has acked; a failure only waits for next time.
    async fn trim(self: Arc<Self>, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut categories: Vec<esr_schema::Category> = Vec::new();
        for handler in &self.handlers {
            for category in handler.categories() {
                if !categories.contains(category) {
                    categories.push(category.clone());
                }
            }
        }
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            match self.store.trim_consumed(&categories).await {
                Ok(removed) => {
                    metrics::trimmed(removed);
                    tracing::debug!(removed, "category streams trimmed");
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "category streams not trimmed")
                }
            }
        }
    }

    /// Remove consumers idle `idle` with nothing pending; a failure only waits for next time.
    async fn prune(&self, handler: &dyn Handler, idle: Duration) {
        let pruned = self
            .store
            .prune_consumers(
                handler.group(),
                handler.categories(),
                idle,
                &self.settings.consumer,
            )
            .await;
        match pruned {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!(group = handler.group(), removed, "idle consumers removed")
            }
            Err(error) => {
                tracing::warn!(group = handler.group(), error = %error_chain(&error), "idle consumers not pruned")
            }
        }
    }

    async fn read_new(
        &self,
        handler: &dyn Handler,
        partitions: &[u32],
    ) -> Result<Vec<Delivery>, StoreError> {
        let s = &self.settings;
        self.store
            .read_new_in(
                handler.group(),
                &s.consumer,
                handler.categories(),
                partitions,
                s.batch_size,
                s.block,
            )
            .await
    }

    async fn process(
        &self,
        handler: &dyn Handler,
        leases: &GroupLeases,
        batch: Vec<Delivery>,
    ) -> Result<(), StoreError> {
        // Entries of partitions given up since they were read stay pending for their holder.
        let fence = leases.fence();
        let batch: Vec<Delivery> = batch
            .into_iter()
            .filter(|d| fence.holds(d.partition))
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        // First what the runtime itself can judge: entries that are not events; then the
        // handler gets the rest as one batch.
        let mut outcomes: Vec<Option<Result<(), HandlerError>>> = Vec::with_capacity(batch.len());
        let (mut handed, mut events) = (Vec::new(), Vec::new());
        for (i, delivery) in batch.iter().enumerate() {
            let judged = match delivery.event() {
                Err(e) => Some(Err(HandlerError::Poison(format!("not an event: {e}")))),
                Ok(stored) => {
                    handed.push(i);
                    events.push(stored);
                    None
                }
            };
            outcomes.push(judged);
        }
        let handled = handler.handle_batch(&events, &fence).await;
        for (i, outcome) in handed.into_iter().zip(handled) {
            outcomes[i] = Some(outcome);
        }

        let mut done = Vec::with_capacity(batch.len());
        let (mut dead, mut deferred, mut newer) = (0, 0, 0);
        let max = self.settings.max_deliveries;
        for (delivery, outcome) in batch.iter().zip(outcomes) {
            let outcome =
                outcome.unwrap_or_else(|| Err(HandlerError::Transient("not handled".into())));
            // Past the delivery limit, a transient failure is given up on (the handler had one
            // more try); an event from a newer build never is: it waits for a build that knows it.
            let outcome = match outcome {
                Err(HandlerError::Transient(reason)) if delivery.deliveries > max => {
                    Err(HandlerError::Poison(format!(
                        "failed {} deliveries: {reason}",
                        delivery.deliveries
                    )))
                }
                other => other,
            };
            match outcome {
                Ok(()) => done.push(delivery.entry.clone()),
                Err(HandlerError::Poison(reason)) => {
                    tracing::warn!(group = handler.group(), entry = %delivery.entry.id, %reason, "dead-lettering");
                    self.store
                        .dead_letter(handler.group(), delivery, &reason)
                        .await?;
                    dead += 1;
                }
                // Left pending: claimed again after the idle time, up to `max_deliveries`
                // (a store outage without limit).
                Err(HandlerError::Transient(reason) | HandlerError::StoreUnavailable(reason)) => {
                    tracing::warn!(group = handler.group(), entry = %delivery.entry.id, %reason, "will retry");
                    deferred += 1;
                }
                // The lease ran out while the batch was in hand: the new holder takes it over.
                Err(HandlerError::NotHeld(reason)) => {
                    tracing::info!(group = handler.group(), entry = %delivery.entry.id, %reason, "left to the partition's holder");
                    deferred += 1;
                }
                Err(HandlerError::FromNewerBuild(reason)) => {
                    tracing::warn!(group = handler.group(), entry = %delivery.entry.id, %reason, "left pending for a newer build");
                    self.newer.seen(handler.group(), &delivery.entry);
                    newer += 1;
                }
            }
        }
        self.store.ack(handler.group(), &done).await?;
        metrics::batch(&metrics::Batch {
            group: handler.group(),
            size: batch.len(),
            took: started.elapsed(),
            applied: done.len(),
            deferred: deferred + newer,
            dead_lettered: dead,
        });
        tracing::info!(
            group = handler.group(),
            applied = done.len(),
            dead_lettered = dead,
            deferred,
            from_newer_build = newer,
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
