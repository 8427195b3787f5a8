//! What the `esr` admin tool reads and changes that the port does not cover: the server's
//! setup, every consumer group with its consumers, and the dead letters by id (shown, handed
//! back to their group, purged).

use esr_schema::Category;
use esr_store::{DeadLetter, EntryId, Result, StoreError};
use redis::Value;

use crate::keys::{self, Keys};
use crate::subscription::dead_letter;
use crate::{RedisStore, classify, corrupt, parse};

/// The consumer that redriven entries are parked under until a projector claims them.
pub const REDRIVE_CONSUMER: &str = "esr-redrive";

/// The server's version and the settings an event store depends on, per node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub versions: Vec<String>,
    /// The partition count stored when the store was created (`None`: never started).
    pub stored_partitions: Option<String>,
}

/// One group on one partition of one category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRow {
    pub group: String,
    pub category: String,
    pub partition: u32,
    pub lag: u64,
    pub lag_is_lower_bound: bool,
    pub pending: u64,
    /// Name, entries pending, idle milliseconds.
    pub consumers: Vec<(String, u64, u64)>,
}

/// A dead letter's address: its partition and its id in that partition's dead-letter stream,
/// written `<partition>/<id>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DeadLetterId {
    pub partition: u32,
    pub id: EntryId,
}

impl std::fmt::Display for DeadLetterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.partition, self.id)
    }
}

impl std::str::FromStr for DeadLetterId {
    type Err = StoreError;
    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            StoreError::Invalid(format!(
                "{text:?} is not a dead letter id (<partition>/<entry id>, as listed)"
            ))
        };
        let (partition, id) = text.split_once('/').ok_or_else(invalid)?;
        Ok(Self {
            partition: partition.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }
}

impl RedisStore {
    pub async fn server_facts(&self) -> Result<ServerFacts> {
        let info: Value = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let versions = crate::texts(&info)
            .iter()
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.strip_prefix("redis_version:"))
                    .map(|v| v.trim().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        let stored_partitions: Option<String> = redis::cmd("GET")
            .arg(keys::PARTITIONS)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(ServerFacts {
            versions,
            stored_partitions,
        })
    }

    /// Every category with a stream in partition 0 (where a projector creates each group's
    /// stream), declared by a module or not: what the admin tool lists beside the declared
    /// ones. It scans key names (`SCAN MATCH *:{p0} TYPE stream`) on the node holding partition
    /// 0, a page at a time: work in proportion to that node's keys, for an operator's command.
    pub async fn categories_found(&self) -> Result<Vec<Category>> {
        let mut conn = match self.conn() {
            crate::conn::Conn::Cluster(_) => {
                let placement = self.placement().await?;
                let master = placement
                    .partitions
                    .first()
                    .map(|p| p.master.clone())
                    .ok_or_else(|| corrupt("CLUSTER NODES", "no partition 0".to_owned()))?;
                let node = self.inner.connector.node(&master).await.map_err(classify)?;
                crate::conn::Conn::Dedicated(node)
            }
            single => single,
        };
        let pattern = format!("*:{}", Keys::tag(0));
        let dead_letters = Keys::dead_letters(0);
        let mut found = std::collections::BTreeSet::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("stream")
                .query_async(&mut conn)
                .await
                .map_err(classify)?;
            found.extend(
                keys.iter()
                    .filter(|key| **key != dead_letters)
                    .filter_map(|key| Keys::category_of_stream(key))
                    .map(|(category, _)| category),
            );
            if next == 0 {
                return Ok(found.into_iter().collect());
            }
            cursor = next;
        }
    }

    /// Every group on every partition of `categories`, with its consumers.
    pub async fn group_rows(&self, categories: &[Category]) -> Result<Vec<GroupRow>> {
        let mut rows = Vec::new();
        for category in categories {
            for partition in 0..self.partitions() {
                let stream = Keys::category_stream(category, partition);
                // No stream yet: no groups on it.
                let Some(groups) = self.stream_groups(&stream).await? else {
                    continue;
                };
                for info in groups {
                    let (lag, lag_is_lower_bound) = self.lag(&stream, &info).await?;
                    rows.push(GroupRow {
                        consumers: self.stream_consumers(&stream, &info.name).await?,
                        group: info.name,
                        category: category.to_string(),
                        partition,
                        lag,
                        lag_is_lower_bound,
                        pending: info.pending,
                    });
                }
            }
        }
        rows.sort_by(|a, b| {
            (&a.group, &a.category, a.partition).cmp(&(&b.group, &b.category, b.partition))
        });
        Ok(rows)
    }

    /// The groups on `categories`' streams, each with the categories it reads (names only:
    /// none of [`RedisStore::group_rows`]' counting).
    pub async fn groups_on(
        &self,
        categories: &[Category],
    ) -> Result<std::collections::BTreeMap<String, Vec<Category>>> {
        let mut found: std::collections::BTreeMap<String, Vec<Category>> = Default::default();
        for category in categories {
            for partition in 0..self.partitions() {
                let stream = Keys::category_stream(category, partition);
                for info in self.stream_groups(&stream).await?.unwrap_or_default() {
                    let reads = found.entry(info.name).or_default();
                    if !reads.contains(category) {
                        reads.push(category.clone());
                    }
                }
            }
        }
        Ok(found)
    }

    /// Every dead letter with its id, oldest first, up to `limit`.
    pub async fn dead_letters_with_ids(
        &self,
        limit: usize,
    ) -> Result<Vec<(DeadLetterId, DeadLetter)>> {
        let mut letters = Vec::new();
        for partition in 0..self.partitions() {
            let key = Keys::dead_letters(partition);
            for (id, fields) in self.xrange(&key, "-", limit).await? {
                letters.push((
                    DeadLetterId { partition, id },
                    dead_letter(&key, fields.unwrap_or_default())?,
                ));
            }
        }
        letters.sort_by_key(|(id, _)| (id.id, id.partition));
        letters.truncate(limit);
        Ok(letters)
    }

    pub async fn dead_letter_by_id(&self, id: DeadLetterId) -> Result<Option<DeadLetter>> {
        let key = Keys::dead_letters(id.partition);
        let reply: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(id.id.to_string())
            .arg(id.id.to_string())
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let entries = parse::entries(reply).map_err(|r| corrupt(&key, r))?;
        entries
            .into_iter()
            .next()
            .map(|(_, fields)| dead_letter(&key, fields.unwrap_or_default()))
            .transpose()
    }

    /// Hand a dead letter back to its group: its entry goes back on the group's pending list
    /// (under [`REDRIVE_CONSUMER`], idle long enough that the next claim of any projector takes
    /// it, its delivery count reset), the dead letter leaves the dead-letter stream, and a
    /// record of the redrive is added to `redriven:{pN}`, all in one transaction (one slot).
    /// An entry no longer in its stream cannot be redriven: refused, nothing changed.
    pub async fn redrive(&self, id: DeadLetterId) -> Result<DeadLetter> {
        let letter = self
            .dead_letter_by_id(id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("no dead letter {id}")))?;
        let entry = letter.entry.id.to_string();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // One script: the checks and the three writes together (see `lua/redrive.lua`).
        let outcome: i64 = self
            .inner
            .redrive
            .key(&letter.entry.stream)
            .key(Keys::dead_letters(id.partition))
            .key(Keys::redriven(id.partition))
            .arg(&letter.group)
            .arg(REDRIVE_CONSUMER)
            .arg(&entry)
            .arg(id.id.to_string())
            .arg("dead_letter")
            .arg(id.to_string())
            .arg("group")
            .arg(&letter.group)
            .arg("stream")
            .arg(&letter.entry.stream)
            .arg("entry_id")
            .arg(&entry)
            .arg("reason")
            .arg(&letter.reason)
            .arg("redriven_at_ms")
            .arg(now_ms)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let refused = |why: String| Err(StoreError::Invalid(format!("dead letter {id}: {why}")));
        match outcome {
            1 => Ok(letter),
            0 => refused("it was redriven or purged meanwhile".into()),
            -1 => refused(format!(
                "entry {entry} is no longer in {}; it cannot be redriven (purge it instead)",
                letter.entry.stream
            )),
            -2 => refused(format!(
                "group {} no longer reads {}; nothing was changed",
                letter.group, letter.entry.stream
            )),
            other => Err(corrupt("redrive reply", format!("unknown outcome {other}"))),
        }
    }

    /// Delete every dead letter; how many there were.
    pub async fn purge_dead_letters(&self) -> Result<u64> {
        let mut purged = 0;
        for partition in 0..self.partitions() {
            let key = Keys::dead_letters(partition);
            let (count, _): (u64, u64) = redis::pipe()
                .atomic()
                .cmd("XLEN")
                .arg(&key)
                .cmd("DEL")
                .arg(&key)
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            purged += count;
        }
        Ok(purged)
    }
}

/// A rebuild in progress (`rebuild:<read model>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildState {
    pub generation: u32,
    /// Category entries handled so far.
    pub done: u64,
    /// The last entry handled, per category and partition: entry ids are made per stream
    /// (and on Cluster by each master's clock), so one position for every partition would
    /// pass over an entry that arrived later in another partition with a lower id.
    pub positions: std::collections::BTreeMap<(String, u32), EntryId>,
}

impl RedisStore {
    /// Up to `limit` entries of one partition of `category` after `after`, in id order.
    pub async fn read_category_partition(
        &self,
        category: &Category,
        partition: u32,
        after: EntryId,
        limit: usize,
    ) -> Result<Vec<esr_store::CategoryEntry>> {
        let stream = Keys::category_stream(category, partition);
        Ok(self
            .xrange(&stream, &format!("({after}"), limit)
            .await?
            .into_iter()
            .map(|(id, fields)| esr_store::CategoryEntry {
                stream: stream.clone(),
                id,
                fields: fields.unwrap_or_default(),
            })
            .collect())
    }

    /// The bytes `key` takes (`MEMORY USAGE`, sampled), `None` when it does not exist.
    pub async fn memory_usage(&self, key: &str) -> Result<Option<u64>> {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(key)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)
    }

    /// Entries in every partition of `category`.
    pub async fn category_length(&self, category: &Category) -> Result<u64> {
        let mut total = 0;
        for partition in 0..self.partitions() {
            let n: u64 = redis::cmd("XLEN")
                .arg(Keys::category_stream(category, partition))
                .query_async(&mut self.conn())
                .await
                .map_err(classify)?;
            total += n;
        }
        Ok(total)
    }

    /// Whether entries were ever removed from a partition of `category` (trimming on): its
    /// history then starts later than the first event.
    pub async fn category_trimmed(&self, category: &Category) -> Result<bool> {
        for partition in 0..self.partitions() {
            let key = Keys::category_stream(category, partition);
            let reply: redis::RedisResult<Vec<Value>> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&key)
                .query_async(&mut self.conn())
                .await;
            let fields = match reply {
                Ok(fields) => fields,
                // No such stream: nothing deleted from it.
                Err(e)
                    if e.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError) =>
                {
                    continue;
                }
                Err(e) => return Err(classify(e)),
            };
            // XTRIM leaves max-deleted-entry-id alone (7.0): more added than held says it.
            let number = |name: &str| {
                fields
                    .chunks_exact(2)
                    .find(|pair| crate::texts(&pair[0]).first().map(String::as_str) == Some(name))
                    .and_then(|pair| match &pair[1] {
                        Value::Int(n) => Some(*n),
                        _ => None,
                    })
            };
            if let (Some(added), Some(length)) = (number("entries-added"), number("length"))
                && added > length
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub async fn rebuild_state(&self, name: &str) -> Result<Option<RebuildState>> {
        let key = Keys::rebuild(name);
        let fields: std::collections::BTreeMap<String, String> = redis::cmd("HGETALL")
            .arg(&key)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let number = |field: &str| -> Result<u64> {
            fields
                .get(field)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| corrupt(&key, format!("no number in {field}")))
        };
        let mut positions = std::collections::BTreeMap::new();
        for (field, value) in &fields {
            // `position:<category>` without a partition (an earlier build's one position for
            // all) is not trusted: that category is read again from the start, which the
            // version-conditioned writes make harmless.
            let Some((category, partition)) = field
                .strip_prefix("position:")
                .and_then(|rest| rest.rsplit_once(':'))
                .and_then(|(c, p)| Some((c, p.parse::<u32>().ok()?)))
            else {
                continue;
            };
            let id = value
                .parse()
                .map_err(|_| corrupt(&key, format!("{value:?} is not an entry id")))?;
            positions.insert((category.to_owned(), partition), id);
        }
        Ok(Some(RebuildState {
            generation: u32::try_from(number("generation")?)
                .map_err(|_| corrupt(&key, "generation out of range"))?,
            done: number("done")?,
            positions,
        }))
    }

    /// Start recording a rebuild into `generation`, forgetting any earlier one.
    pub async fn start_rebuild(&self, name: &str, generation: u32) -> Result<()> {
        let key = Keys::rebuild(name);
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .cmd("HSET")
            .arg(&key)
            .arg("generation")
            .arg(generation)
            .arg("done")
            .arg(0)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(classify)
    }

    pub async fn save_rebuild_position(
        &self,
        name: &str,
        category: &Category,
        partition: u32,
        position: EntryId,
        done: u64,
    ) -> Result<()> {
        redis::cmd("HSET")
            .arg(Keys::rebuild(name))
            .arg(format!("position:{category}:{partition}"))
            .arg(position.to_string())
            .arg("done")
            .arg(done)
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(classify)
    }

    pub async fn finish_rebuild(&self, name: &str) -> Result<()> {
        redis::cmd("DEL")
            .arg(Keys::rebuild(name))
            .query_async::<()>(&mut self.conn())
            .await
            .map_err(classify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_ids_read_back_as_written() {
        let id: DeadLetterId = "3/1795755764271-1"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(id.partition, 3);
        assert_eq!(id.to_string(), "3/1795755764271-1");
        for bad in ["", "3", "x/1-1", "3/x", "3/1-1/2"] {
            assert!(bad.parse::<DeadLetterId>().is_err(), "{bad:?}");
        }
    }
}
