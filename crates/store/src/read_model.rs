//! Read models kept per stream: flat field maps (Redis Hashes), each holding the version of
//! its stream it reflects.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use esr_schema::StreamId;

use crate::{Fence, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModel {
    /// The version of the stream's last event reflected here.
    pub version: u64,
    /// The stored fields. The store keeps `version` among them too (a Redis Hash field, so
    /// `HGETALL` shows it), overriding any `version` the writer put there.
    pub fields: BTreeMap<String, String>,
}

/// One conditioned write of [`ReadModels::put_read_models`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadModelWrite {
    pub stream: StreamId,
    /// The stored version this write replaces (0: none stored).
    pub expected: u64,
    pub model: ReadModel,
}

/// A read model as it stood at one version of its stream, kept so that the view as of a past
/// time is folded from the nearest checkpoint instead of from the stream's first event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub version: u64,
    /// When the event at `version` happened (times never go back within a stream, so a later
    /// version never has an earlier time).
    pub at: DateTime<Utc>,
    pub fields: BTreeMap<String, String>,
}

/// The name generation `generation` of read model `name` is stored under: the name itself for
/// the first (so models stored before rebuilds existed are generation 1), `<name>_gen<N>` after.
pub fn generation_name(name: &str, generation: u32) -> String {
    if generation <= 1 {
        name.to_owned()
    } else {
        format!("{name}_gen{generation}")
    }
}

/// The field holding a read model's version.
pub const VERSION_FIELD: &str = "version";

#[async_trait]
pub trait ReadModels: Send + Sync {
    async fn get_read_model(&self, name: &str, stream: &StreamId) -> Result<Option<ReadModel>>;

    /// Replace the read model only if its stored version is `expected` (0: none stored);
    /// otherwise nothing changes and the error is `Conflict` with the stored version. This is
    /// what keeps a duplicate or concurrent write from losing or doubling an update.
    async fn put_read_model(
        &self,
        name: &str,
        stream: &StreamId,
        expected: u64,
        model: &ReadModel,
    ) -> Result<()>;

    /// Keep checkpoints of read model `name`. A checkpoint is the fold of its stream up to
    /// its version, so saving one twice changes nothing.
    async fn save_checkpoints(
        &self,
        name: &str,
        checkpoints: Vec<(StreamId, Checkpoint)>,
        fence: &Fence,
    ) -> Result<()>;

    /// The checkpoint of `stream` with the latest time at or before `at`, if any.
    async fn checkpoint_at(
        &self,
        name: &str,
        stream: &StreamId,
        at: DateTime<Utc>,
    ) -> Result<Option<Checkpoint>>;

    /// Which generation of read model `name` is served: 1 until a rebuild switched to a newer
    /// one (stored under [`generation_name`]).
    async fn live_generation(&self, name: &str) -> Result<u32>;

    /// Serve `generation` of read model `name` from now on: one write, so every reader
    /// switches at once.
    async fn set_live_generation(&self, name: &str, generation: u32) -> Result<()>;

    /// The read models of several streams, in their order. By default one at a time; an adapter
    /// that can pipeline (Redis) answers in one round trip.
    async fn get_read_models(
        &self,
        name: &str,
        streams: &[StreamId],
    ) -> Result<Vec<Option<ReadModel>>> {
        let mut models = Vec::with_capacity(streams.len());
        for stream in streams {
            models.push(self.get_read_model(name, stream).await?);
        }
        Ok(models)
    }

    /// Several writes, each exactly as [`ReadModels::put_read_model`], one outcome each in
    /// order, each refused with `Fenced` unless `fence` holds its partition's lease. The outer
    /// error is for the store failing as a whole.
    async fn put_read_models(
        &self,
        name: &str,
        writes: Vec<ReadModelWrite>,
        fence: &Fence,
    ) -> Result<Vec<Result<()>>>;
}
