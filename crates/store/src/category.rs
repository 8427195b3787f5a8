//! The category streams (`user_updates`, `group_membership`, ...): every stream's events of one
//! kind, in the order they were appended.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use esr_schema::entry::{self, Fields};
use esr_schema::{Category, EntryError, StoredEvent};

use crate::Result;

/// A stream entry id, `<milliseconds>-<sequence>` as in Redis: ids are times, so a category
/// can be read from a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct EntryId {
    pub ms: u64,
    pub seq: u64,
}

impl EntryId {
    /// Before every entry.
    pub const ZERO: EntryId = EntryId { ms: 0, seq: 0 };

    /// The position just before every entry added at or after `time`, for "read from then".
    pub fn before(time: DateTime<Utc>) -> EntryId {
        let ms = u64::try_from(time.timestamp_millis()).unwrap_or(0);
        match ms.checked_sub(1) {
            Some(prev) => EntryId {
                ms: prev,
                seq: u64::MAX,
            },
            None => EntryId::ZERO,
        }
    }

    pub fn time(self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(i64::try_from(self.ms).ok()?)
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stream entry id {0:?}")]
pub struct InvalidEntryId(pub String);

impl FromStr for EntryId {
    type Err = InvalidEntryId;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let invalid = || InvalidEntryId(s.to_owned());
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Ok(EntryId {
            ms: ms.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

/// One entry of a category stream, as stored. `fields` may come from a foreign producer, so
/// turning them into an event is fallible: see [`CategoryEntry::event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryEntry {
    /// The stream holding the entry: the category, or one of its partitions.
    pub stream: String,
    pub id: EntryId,
    pub fields: Fields,
}

impl CategoryEntry {
    pub fn event(&self) -> std::result::Result<StoredEvent, EntryError> {
        entry::from_fields(&self.fields)
    }
}

/// Reading category streams, as `XREAD` does in the post.
#[async_trait]
pub trait CategoryLog: Send + Sync {
    /// Up to `limit` entries with an id after `after`, across all the category's partitions,
    /// ordered by id. A page never ends between two entries with the same id, so it may hold a
    /// few more than `limit`; the last id of a page is the `after` of the next.
    async fn read_category(
        &self,
        category: &Category,
        after: EntryId,
        limit: usize,
    ) -> Result<Vec<CategoryEntry>>;
}
