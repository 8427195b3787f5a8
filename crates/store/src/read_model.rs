//! Read models: flat field maps (Redis Hashes), each holding the version it reflects.

use std::collections::BTreeMap;

use async_trait::async_trait;
use esr_schema::UserId;

use crate::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModel {
    /// The version of the user's last event reflected here.
    pub version: u64,
    /// The stored fields. The store keeps `version` among them too (a Redis Hash field, so
    /// `HGETALL` shows it), overriding any `version` the writer put there.
    pub fields: BTreeMap<String, String>,
}

/// The field holding a read model's version.
pub const VERSION_FIELD: &str = "version";

#[async_trait]
pub trait ReadModels: Send + Sync {
    async fn get_read_model(&self, name: &str, user_id: &UserId) -> Result<Option<ReadModel>>;

    /// Replace the read model only if its stored version is `expected` (0: none stored);
    /// otherwise nothing changes and the error is `Conflict` with the stored version. This is
    /// what keeps a duplicate or concurrent write from losing or doubling an update.
    async fn put_read_model(
        &self,
        name: &str,
        user_id: &UserId,
        expected: u64,
        model: &ReadModel,
    ) -> Result<()>;
}
