//! Partition leases: the instances of a projector side divide a group's partitions between
//! them, each partition held by one instance at a time.
//!
//! A lease names its holder and carries a fencing token, a number that grows with every new
//! holder of the partition. Every write a projection makes (read models, checkpoints, tally
//! counts and positions) carries the tokens of the leases its writer holds as a [`Fence`];
//! the store refuses a write whose token is not the partition's current one
//! ([`StoreError::Fenced`](crate::StoreError::Fenced)), so a holder that stalled past its
//! lease and wakes up writes nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{Result, StoreError};

/// Who holds a partition's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub owner: String,
    pub token: u64,
}

/// The leases a writer holds: what the store checks a projection's writes against.
#[derive(Debug, Clone, Default)]
pub enum Fence {
    /// Not checked: a writer that holds no leases on purpose (a rebuild, a test, a tool).
    #[default]
    Unfenced,
    /// The group's partitions this writer holds, with their tokens.
    Held(Arc<HeldLeases>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLeases {
    pub group: String,
    pub tokens: BTreeMap<u32, u64>,
}

impl Fence {
    pub fn held(group: &str, tokens: BTreeMap<u32, u64>) -> Self {
        Self::Held(Arc::new(HeldLeases {
            group: group.to_owned(),
            tokens,
        }))
    }

    /// Whether a write to `partition` may be made under this fence (unfenced: anywhere).
    pub fn holds(&self, partition: u32) -> bool {
        self.token(partition).is_ok()
    }

    /// The group and token a write to `partition` must carry: `None` when unfenced, `Fenced`
    /// when the writer holds no lease on that partition (nothing may be written there).
    pub fn token(&self, partition: u32) -> Result<Option<(&str, u64)>> {
        match self {
            Self::Unfenced => Ok(None),
            Self::Held(held) => match held.tokens.get(&partition) {
                Some(token) => Ok(Some((held.group.as_str(), *token))),
                None => Err(StoreError::Fenced { partition }),
            },
        }
    }
}

#[async_trait]
pub trait Leases: Send + Sync {
    /// Record `member` of `group` alive for `ttl` and forget members whose time ran out: the
    /// live members, sorted by name (every member computes the same assignment from them).
    async fn heartbeat(&self, group: &str, member: &str, ttl: Duration) -> Result<Vec<String>>;

    /// Remove `member` from `group` at once (a clean stop), so the others rebalance without
    /// waiting for its time to run out.
    async fn leave(&self, group: &str, member: &str) -> Result<()>;

    /// Take `partition`'s lease for `owner` for `ttl` when nobody holds it (or `owner` does):
    /// its fencing token, higher than any before on this partition; `None` when another holds
    /// it.
    async fn acquire_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<u64>>;

    /// Extend a lease `owner` holds with `token` by `ttl`: false when it is no longer held so
    /// (it expired, or another took it).
    async fn renew_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool>;

    /// Give a lease up (only the holder with this token can).
    async fn release_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        token: u64,
    ) -> Result<()>;

    /// Each partition's holder, in partition order (`None`: free); partitions are those of
    /// [`Subscriptions::partition_count`](crate::Subscriptions::partition_count).
    async fn lease_holders(&self, group: &str) -> Result<Vec<Option<LeaseHolder>>>;
}
