//! Which partitions of a group this instance works on: the instances of a projector side
//! divide each group's partitions between them by lease.
//!
//! Every instance records itself as a live member of the group and renews its leases every
//! third of the lease time. The live members, sorted by name, give every instance the same
//! assignment: partition `p` to member `p mod n`. An instance takes the free partitions
//! assigned to it, keeps renewing those it holds, and gives up those assigned to another:
//! first it stops reading them, then, once a read started before can no longer bring their
//! entries (the read's block time and a margin), it releases the lease, and the new holder
//! takes over what is pending there. A member that dies or stalls stops renewing: its leases
//! and its membership run out after the lease time, and the others take its partitions.
//!
//! Each lease carries a fencing token ([`esr_store::Fence`]); the store refuses a write made
//! with a token that is no longer the partition's, so a stalled former holder that wakes up
//! writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use esr_store::{Fence, Store};
use tokio::time::Instant;

use crate::error_chain;

/// One group's leases as this instance sees them, shared by the group's reading loop and its
/// lease keeper.
pub struct GroupLeases {
    group: String,
    member: String,
    ttl: Duration,
    /// How long a partition given up stays held, unread, before its lease is released.
    release_after: Duration,
    state: Mutex<Held>,
    /// Woken when a partition is taken (or kept after all), so an idle reading loop starts at
    /// once.
    taken: tokio::sync::Notify,
}

#[derive(Default)]
struct Held {
    /// Partition to its token.
    tokens: BTreeMap<u32, u64>,
    /// Held partitions being given up, unread since then.
    releasing: BTreeMap<u32, Instant>,
    /// Taken since the reading loop last looked: what others left pending there is claimed.
    taken: BTreeSet<u32>,
}

impl Held {
    /// No longer held: lost, or handed over.
    fn forget(&mut self, partition: u32) {
        self.tokens.remove(&partition);
        self.releasing.remove(&partition);
    }
}

impl GroupLeases {
    pub fn new(group: &str, member: &str, ttl: Duration, release_after: Duration) -> Self {
        Self {
            group: group.to_owned(),
            member: member.to_owned(),
            ttl,
            release_after,
            state: Mutex::new(Held::default()),
            taken: tokio::sync::Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Held> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How often the keeper renews: a third of the lease time, so two renewals may fail.
    pub fn renew_every(&self) -> Duration {
        self.ttl / 3
    }

    /// The partitions to read: held and not being given up.
    pub fn reading(&self) -> Vec<u32> {
        let state = self.state();
        state
            .tokens
            .keys()
            .filter(|p| !state.releasing.contains_key(p))
            .copied()
            .collect()
    }

    /// The fence this instance's writes carry: the leases it holds now.
    pub fn fence(&self) -> Fence {
        Fence::held(&self.group, self.state().tokens.clone())
    }

    fn holds(&self, partition: u32) -> bool {
        self.state().tokens.contains_key(&partition)
    }

    /// Until a partition is taken (at once if one was since the last wait).
    pub async fn wait_taken(&self) {
        self.taken.notified().await;
    }

    /// Partitions taken since the last call.
    pub fn newly_taken(&self) -> Vec<u32> {
        std::mem::take(&mut self.state().taken)
            .into_iter()
            .collect()
    }

    /// One round: be counted alive, renew what is held, give up what is assigned elsewhere,
    /// take what is assigned here and free. A store that fails leaves things as they are:
    /// leases not renewed run out, and the store's fencing refuses the writes then.
    pub async fn keep(&self, store: &dyn Store) {
        if let Err(error) = self.try_keep(store).await {
            tracing::warn!(group = %self.group, error = %error_chain(&error), "leases not kept this round");
        }
    }

    async fn try_keep(&self, store: &dyn Store) -> Result<(), esr_store::StoreError> {
        let members = store.heartbeat(&self.group, &self.member, self.ttl).await?;
        let partitions = store.partition_count();
        let assigned: BTreeSet<u32> = match members.iter().position(|m| *m == self.member) {
            Some(me) => (0..partitions)
                .filter(|p| *p as usize % members.len() == me)
                .collect(),
            None => BTreeSet::new(),
        };
        let held: Vec<(u32, u64)> = self.state().tokens.iter().map(|(p, t)| (*p, *t)).collect();
        for (partition, token) in held {
            let kept = store
                .renew_lease(&self.group, partition, &self.member, token, self.ttl)
                .await?;
            let release = {
                let mut state = self.state();
                if !kept {
                    tracing::warn!(group = %self.group, partition, "lease lost: another instance holds the partition now");
                    state.forget(partition);
                    false
                } else if assigned.contains(&partition) {
                    // Assigned here again while being given up: read again.
                    if state.releasing.remove(&partition).is_some() {
                        self.taken.notify_one();
                    }
                    false
                } else {
                    let since = *state
                        .releasing
                        .entry(partition)
                        .or_insert_with(Instant::now);
                    since.elapsed() >= self.release_after
                }
            };
            if !release {
                continue;
            }
            store
                .release_lease(&self.group, partition, &self.member, token)
                .await?;
            self.state().forget(partition);
            tracing::info!(group = %self.group, partition, "partition handed over");
        }
        for partition in assigned {
            if self.holds(partition) {
                continue;
            }
            if let Some(token) = store
                .acquire_lease(&self.group, partition, &self.member, self.ttl)
                .await?
            {
                {
                    let mut state = self.state();
                    state.tokens.insert(partition, token);
                    state.taken.insert(partition);
                }
                self.taken.notify_one();
                tracing::info!(group = %self.group, partition, token, "partition taken");
            }
        }
        Ok(())
    }

    /// Give every lease up and leave the group (a clean stop): the others take over at their
    /// next round instead of after the lease time.
    pub async fn release_all(&self, store: &dyn Store) {
        let held: Vec<(u32, u64)> = {
            let mut state = self.state();
            let held = state.tokens.iter().map(|(p, t)| (*p, *t)).collect();
            state.tokens.clear();
            state.releasing.clear();
            held
        };
        for (partition, token) in held {
            if let Err(error) = store
                .release_lease(&self.group, partition, &self.member, token)
                .await
            {
                tracing::warn!(group = %self.group, partition, error = %error_chain(&error), "lease not released; it runs out");
            }
        }
        if let Err(error) = store.leave(&self.group, &self.member).await {
            tracing::warn!(group = %self.group, error = %error_chain(&error), "membership not removed; it runs out");
        }
    }
}
