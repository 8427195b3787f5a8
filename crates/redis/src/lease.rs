//! Partition leases (`lua/lease.lua`) and group membership (`lua/heartbeat.lua`).

use std::time::Duration;

use async_trait::async_trait;
use esr_store::{Fence, LeaseHolder, Leases, Result, StoreError};

use crate::keys::Keys;
use crate::{RedisStore, classify, corrupt};

/// What a write script is given to check a fence: the partition's lease key and the token
/// (0: unfenced, not checked; the key is then only there to keep the call in the slot).
pub(crate) struct FenceArgs {
    pub lease: String,
    pub token: u64,
    partition: u32,
}

/// The lease key an unfenced write names (it is never read).
const UNFENCED: &str = "-";

impl FenceArgs {
    /// `Fenced` when the fence holds no lease on `partition`.
    pub fn of(fence: &Fence, partition: u32) -> Result<Self> {
        let (group, token) = fence.token(partition)?.unwrap_or((UNFENCED, 0));
        Ok(Self {
            lease: Keys::lease(group, partition),
            token,
            partition,
        })
    }

    /// Whether a script refused the call (its reply `{-1}`).
    pub fn refused(&self, reply: &[i64]) -> bool {
        reply == [-1]
    }

    pub fn error(&self) -> StoreError {
        StoreError::Fenced {
            partition: self.partition,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl RedisStore {
    async fn lease_call(
        &self,
        group: &str,
        partition: u32,
        op: &str,
        owner: &str,
        ttl: Duration,
        token: u64,
    ) -> Result<i64> {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.inner.lease.get_hash())
            .arg(2)
            .arg(Keys::lease(group, partition))
            .arg(Keys::lease_token(group, partition))
            .arg(op)
            .arg(owner)
            .arg(millis(ttl))
            .arg(token);
        let reply = self.query_script(&self.inner.lease, &cmd).await?;
        reply
            .first()
            .copied()
            .ok_or_else(|| corrupt("lease reply", "empty"))
    }
}

#[async_trait]
impl Leases for RedisStore {
    async fn heartbeat(&self, group: &str, member: &str, ttl: Duration) -> Result<Vec<String>> {
        self.inner
            .heartbeat
            .key(Keys::members(group))
            .arg(member)
            .arg(millis(ttl))
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)
    }

    async fn leave(&self, group: &str, member: &str) -> Result<()> {
        redis::cmd("ZREM")
            .arg(Keys::members(group))
            .arg(member)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(classify)
    }

    async fn acquire_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<u64>> {
        let token = self
            .lease_call(group, partition, "acquire", owner, ttl, 0)
            .await?;
        Ok(u64::try_from(token).ok().filter(|t| *t > 0))
    }

    async fn renew_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        token: u64,
        ttl: Duration,
    ) -> Result<bool> {
        let renewed = self
            .lease_call(group, partition, "renew", owner, ttl, token)
            .await?;
        Ok(renewed > 0)
    }

    async fn release_lease(
        &self,
        group: &str,
        partition: u32,
        owner: &str,
        token: u64,
    ) -> Result<()> {
        self.lease_call(group, partition, "release", owner, Duration::ZERO, token)
            .await
            .map(drop)
    }

    async fn lease_holders(&self, group: &str) -> Result<Vec<Option<LeaseHolder>>> {
        let mut holders = Vec::with_capacity(self.partitions() as usize);
        for partition in 0..self.partitions() {
            let key = Keys::lease(group, partition);
            let (owner, token): (Option<String>, Option<String>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("owner")
                .arg("token")
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            holders.push(match (owner, token) {
                (Some(owner), Some(token)) => Some(LeaseHolder {
                    owner,
                    token: token
                        .parse()
                        .map_err(|_| corrupt(&key, format!("token {token:?}")))?,
                }),
                _ => None,
            });
        }
        Ok(holders)
    }
}
