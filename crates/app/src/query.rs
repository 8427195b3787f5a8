//! The query side, written once for every view: read models, waiting for a version (read your
//! own writes), the past folded from the stream, histories, and tallies.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use esr_kernel::View;
use esr_schema::{DomainEvent, EntityId, StoredEvent, StreamId};
use esr_store::{Store, StoreError};
use serde::Serialize;

use crate::projector::view::{LiveGenerations, stored_view_in};

pub struct QueryService {
    store: Arc<dyn Store>,
    /// The longest a `min_version` read waits for the projector.
    pub max_wait: Duration,
    generations: LiveGenerations,
}

/// A view read that had to reach a version.
#[derive(Debug)]
pub enum Fresh<V> {
    Reached(V),
    /// Waited `max_wait`; the read model is still behind (or absent: `None`).
    TimedOut(Option<V>),
}

/// An event as the history routes show it: envelope plus payload as JSON.
#[derive(Debug, Serialize)]
pub struct EventView {
    pub version: u64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u16,
    pub occurred_at: DateTime<Utc>,
    pub correlation_id: String,
    pub causation_id: String,
    /// Who caused it (`user:<subject>`, `system:<cause>`, `anonymous`); null for events
    /// stored before actors were recorded.
    pub actor: Option<String>,
    pub data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored event {version} of {stream} cannot be read: {reason}")]
    Corrupt {
        stream: StreamId,
        version: u64,
        reason: String,
    },
}

impl QueryService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            max_wait: Duration::from_secs(5),
            generations: LiveGenerations::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The stream's view, from the generation served (a rebuild's switch reaches this side
    /// within `GENERATION_TTL`).
    pub async fn view<V: View>(&self, id: &EntityId) -> Result<Option<V>, QueryError> {
        let name = self.generations.name(self.store.as_ref(), V::NAME).await?;
        Ok(stored_view_in::<V>(self.store.as_ref(), &name, id).await?)
    }

    /// Wait (polling, bounded by `max_wait`) until the read model reaches `min_version`:
    /// read-your-own-writes after a command answered with that version.
    pub async fn view_at_least<V: View>(
        &self,
        id: &EntityId,
        min_version: u64,
    ) -> Result<Fresh<V>, QueryError> {
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let view = self.view::<V>(id).await?;
            match view {
                Some(view) if view.version() >= min_version => return Ok(Fresh::Reached(view)),
                _ if tokio::time::Instant::now() + pause > deadline => {
                    return Ok(Fresh::TimedOut(view));
                }
                _ => {}
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The view as it was at `at`: the nearest checkpoint at or before `at`, then the
    /// stream's events after it up to `at` (not the read model).
    pub async fn view_as_of<V: View>(
        &self,
        id: &EntityId,
        at: DateTime<Utc>,
    ) -> Result<Option<V>, QueryError> {
        const PAGE: usize = 1000;
        let stream = StreamId::of::<V::Event>(id.clone());
        // From the nearest checkpoint at or before `at` (an unreadable one is skipped: it is
        // only a shortcut), so at most one checkpoint interval of events is folded.
        let name = self.generations.name(self.store.as_ref(), V::NAME).await?;
        let checkpoint = self.store.checkpoint_at(&name, &stream, at).await?;
        let (mut view, mut from) = match checkpoint.and_then(|c| {
            V::from_fields(id, &c.fields)
                .ok()
                .map(|view| (view, c.version))
        }) {
            Some((view, version)) if view.version() == version => (view, version + 1),
            _ => (V::empty(id), 1),
        };
        'pages: loop {
            let page = self.store.read_stream(&stream, from, PAGE).await?;
            for stored in &page {
                if stored.envelope.occurred_at > at {
                    break 'pages;
                }
                let event = decode::<V::Event>(stored)?;
                view.apply(&stored.envelope, &event);
            }
            if page.len() < PAGE {
                break;
            }
            from += PAGE as u64;
        }
        Ok((view.version() > 0).then_some(view))
    }

    /// Up to `limit` events of aggregate `E`'s stream `id` from version `from`, decoded.
    pub async fn events<E: DomainEvent>(
        &self,
        id: &EntityId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<EventView>, QueryError> {
        let stream = StreamId::of::<E>(id.clone());
        let stored = self.store.read_stream(&stream, from.max(1), limit).await?;
        stored
            .iter()
            .map(|s| {
                let event = decode::<E>(s)?;
                let e = &s.envelope;
                Ok(EventView {
                    version: e.version,
                    event_id: e.event_id.to_string(),
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    occurred_at: e.occurred_at,
                    correlation_id: e.correlation_id.clone(),
                    causation_id: e.causation_id.clone(),
                    actor: e.actor.clone(),
                    data: serde_json::to_value(&event).unwrap_or(serde_json::Value::Null),
                })
            })
            .collect()
    }

    pub async fn stream_version<E: DomainEvent>(&self, id: &EntityId) -> Result<u64, QueryError> {
        Ok(self
            .store
            .stream_version(&StreamId::of::<E>(id.clone()))
            .await?)
    }

    /// Up to `limit` keys of tally `name`, highest count first, then key ascending.
    pub async fn tally_top(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<(String, i64)>, QueryError> {
        Ok(self.store.tally_top(name, limit).await?)
    }

    pub async fn tally_count(&self, name: &str, key: &str) -> Result<i64, QueryError> {
        Ok(self.store.tally_count(name, key).await?)
    }
}

fn decode<E: DomainEvent>(stored: &StoredEvent) -> Result<E, QueryError> {
    stored.decode::<E>().map_err(|e| QueryError::Corrupt {
        stream: stored.envelope.stream.clone(),
        version: stored.envelope.version,
        reason: e.to_string(),
    })
}
