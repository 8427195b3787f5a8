//! A view's stored form as both sides read it: which generation of a read model is served
//! (trusted for [`GENERATION_TTL`]), and a stored model decoded back into its view. The
//! projector writes through it and the query side reads through it; neither owns it.

use esr_kernel::View;
use esr_schema::{EntityId, StreamId};
use esr_store::{ReadModel, Store, StoreError};

/// How long a process trusts the served generation it read. After a switch, a projector
/// may write the old generation this long; the rebuild folds those events into the new one
/// after waiting longer (see `esr projection rebuild`).
pub const GENERATION_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Which generation of a read model to read or write.
pub enum Generation {
    /// The served one.
    Live(LiveGenerations),
    Pinned(u32),
}

impl Generation {
    pub fn live() -> Self {
        Self::Live(LiveGenerations::default())
    }

    /// The name read model `name` is stored under in this generation.
    pub async fn name(&self, store: &dyn Store, name: &str) -> Result<String, StoreError> {
        match self {
            Self::Pinned(generation) => Ok(esr_store::generation_name(name, *generation)),
            Self::Live(live) => live.name(store, name).await,
        }
    }
}

/// The served generation of each read model, read from the store at most every
/// [`GENERATION_TTL`].
#[derive(Default)]
pub struct LiveGenerations {
    read: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

impl LiveGenerations {
    /// The name the served generation of read model `name` is stored under.
    pub async fn name(&self, store: &dyn Store, name: &str) -> Result<String, StoreError> {
        let fresh = self
            .read
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .filter(|(_, at)| at.elapsed() < GENERATION_TTL)
            .map(|(generation, _)| *generation);
        let generation = match fresh {
            Some(generation) => generation,
            None => {
                let generation = store.live_generation(name).await?;
                self.read
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.to_owned(), (generation, std::time::Instant::now()));
                generation
            }
        };
        Ok(esr_store::generation_name(name, generation))
    }
}

/// A stored model as view `V` (an unreadable one is corrupt data, named).
pub(crate) fn decode<V: View>(stream: &StreamId, model: &ReadModel) -> Result<V, StoreError> {
    V::from_fields(&stream.id, &model.fields).map_err(|e| StoreError::Corrupt {
        what: format!("{} of {stream}", V::NAME),
        reason: e.to_string(),
    })
}

/// Read a stream's view the way the projector stored it, in the generation served.
pub async fn stored_view<V: View>(
    store: &dyn Store,
    id: &EntityId,
) -> Result<Option<V>, StoreError> {
    let name = esr_store::generation_name(V::NAME, store.live_generation(V::NAME).await?);
    stored_view_in::<V>(store, &name, id).await
}

/// Read a stream's view stored under `name` (a generation of `V`'s read model).
pub async fn stored_view_in<V: View>(
    store: &dyn Store,
    name: &str,
    id: &EntityId,
) -> Result<Option<V>, StoreError> {
    let stream = StreamId::of::<V::Event>(id.clone());
    match store.get_read_model(name, &stream).await? {
        None => Ok(None),
        Some(model) => decode::<V>(&stream, &model).map(Some),
    }
}
