//! The query side: profiles from the read model, the past from the user's stream.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use esr_domain::Profile;
use esr_schema::{StoredEvent, UserEvent, UserId};
use esr_store::{Store, StoreError};
use serde::Serialize;

use crate::projector::stored_profile;

pub struct QueryService {
    store: Arc<dyn Store>,
    /// The longest a `min_version` read waits for the projector.
    pub max_wait: Duration,
}

/// A profile read that had to reach a version.
#[derive(Debug)]
pub enum Fresh {
    Reached(Profile),
    /// Waited `max_wait`; the read model is still behind (or absent: `None`).
    TimedOut(Option<Profile>),
}

/// An event as the history route shows it: envelope plus payload as JSON.
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
    pub data: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored event {version} of {user_id} cannot be read: {reason}")]
    Corrupt {
        user_id: UserId,
        version: u64,
        reason: String,
    },
}

impl QueryService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            max_wait: Duration::from_secs(5),
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn profile(&self, user_id: &UserId) -> Result<Option<Profile>, QueryError> {
        Ok(stored_profile(self.store.as_ref(), user_id).await?)
    }

    /// Wait (polling, bounded by `max_wait`) until the read model reaches `min_version`:
    /// read-your-own-writes after a command answered with that version.
    pub async fn profile_at_least(
        &self,
        user_id: &UserId,
        min_version: u64,
    ) -> Result<Fresh, QueryError> {
        let deadline = tokio::time::Instant::now() + self.max_wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let profile = self.profile(user_id).await?;
            if profile.as_ref().is_some_and(|p| p.version >= min_version) {
                return Ok(Fresh::Reached(
                    profile.unwrap_or_else(|| Profile::empty(user_id.clone())),
                ));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Ok(Fresh::TimedOut(profile));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// The profile as it was at `at`, folded from the user's stream (not the read model).
    pub async fn profile_as_of(
        &self,
        user_id: &UserId,
        at: DateTime<Utc>,
    ) -> Result<Option<Profile>, QueryError> {
        const PAGE: usize = 1000;
        let mut profile = Profile::empty(user_id.clone());
        let mut from = 1;
        'pages: loop {
            let page = self.store.read_user(user_id, from, PAGE).await?;
            for stored in &page {
                if stored.envelope.occurred_at > at {
                    break 'pages;
                }
                let event = decode(stored)?;
                profile.apply(&stored.envelope, &event);
            }
            if page.len() < PAGE {
                break;
            }
            from += PAGE as u64;
        }
        Ok((profile.version > 0).then_some(profile))
    }

    /// Up to `limit` events from version `from`, decoded.
    pub async fn events(
        &self,
        user_id: &UserId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<EventView>, QueryError> {
        let stored = self.store.read_user(user_id, from.max(1), limit).await?;
        stored
            .iter()
            .map(|s| {
                let event = decode(s)?;
                let e = &s.envelope;
                Ok(EventView {
                    version: e.version,
                    event_id: e.event_id.to_string(),
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    occurred_at: e.occurred_at,
                    correlation_id: e.correlation_id.clone(),
                    causation_id: e.causation_id.clone(),
                    data: event_data(&event),
                })
            })
            .collect()
    }

    pub async fn user_version(&self, user_id: &UserId) -> Result<u64, QueryError> {
        Ok(self.store.user_version(user_id).await?)
    }
}

fn decode(stored: &StoredEvent) -> Result<UserEvent, QueryError> {
    stored.decode().map_err(|e| QueryError::Corrupt {
        user_id: stored.envelope.user_id.clone(),
        version: stored.envelope.version,
        reason: e.to_string(),
    })
}

/// The payload as JSON, field names as stored.
pub fn event_data(event: &UserEvent) -> serde_json::Value {
    let value = match event {
        UserEvent::Registered(p) => serde_json::to_value(p),
        UserEvent::PersonalInfoChanged(p) => serde_json::to_value(p),
        UserEvent::ActedOn(p) => serde_json::to_value(p),
        UserEvent::FriendAdded(p) => serde_json::to_value(p),
        UserEvent::FriendRemoved(p) => serde_json::to_value(p),
    };
    value.unwrap_or(serde_json::Value::Null)
}
