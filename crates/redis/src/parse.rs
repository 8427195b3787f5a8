//! Reading stream replies out of `redis::Value`, keeping field order (a hash map would lose it).

use esr_schema::entry::Fields;
use esr_store::EntryId;
use redis::Value;

pub type Entry = (EntryId, Option<Fields>);

pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".to_owned()),
        _ => None,
    }
}

pub fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

fn items(value: &Value) -> Option<&[Value]> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// Like [`items`], taking the list out of the reply instead of borrowing it (no field copies).
fn owned_items(value: Value) -> Option<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Some(items),
        _ => None,
    }
}

/// A field name or value as bytes, moved out of the reply.
fn owned_bytes(value: Value) -> Option<Vec<u8>> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        other => text(&other).map(String::into_bytes),
    }
}

pub fn entry_id(value: &Value) -> Result<EntryId, String> {
    let raw = text(value).ok_or("entry id is not text")?;
    raw.parse().map_err(|_| format!("bad entry id {raw:?}"))
}

fn fields(value: Value) -> Result<Option<Fields>, String> {
    let flat: Vec<Value> = match value {
        // An entry deleted while pending is returned without fields.
        Value::Nil => return Ok(None),
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => owned_items(other).ok_or("entry fields are not a list")?,
    };
    if !flat.len().is_multiple_of(2) {
        return Err("odd number of field values".to_owned());
    }
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        // A name that is not UTF-8 (not written by this store) is kept, lossily, so that the
        // entry reaches the event parser and is refused alone, not the whole reply with it.
        let key = owned_bytes(k)
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .ok_or("field name is not a string")?;
        let bytes = owned_bytes(v).ok_or("field value is not a string")?;
        fields.push((key, bytes));
    }
    Ok(Some(fields))
}

/// An `XRANGE`-shaped list of entries.
pub fn entries(value: Value) -> Result<Vec<Entry>, String> {
    let list = match value {
        Value::Nil => return Ok(vec![]),
        other => owned_items(other).ok_or("entries are not a list")?,
    };
    list.into_iter()
        .map(|entry| {
            let mut parts = owned_items(entry).ok_or("entry is not a list")?.into_iter();
            let id = entry_id(&parts.next().ok_or("entry without id")?)?;
            let fields = fields(parts.next().unwrap_or(Value::Nil))?;
            Ok((id, fields))
        })
        .collect()
}

/// An `XREAD`/`XREADGROUP` reply: entries per stream.
pub fn streams(value: Value) -> Result<Vec<(String, Vec<Entry>)>, String> {
    match value {
        Value::Nil => Ok(vec![]),
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Ok((text(&k).ok_or("stream name is not text")?, entries(v)?)))
            .collect(),
        other => owned_items(other)
            .ok_or("stream reply is not a list")?
            .into_iter()
            .map(|stream| {
                let mut parts = owned_items(stream)
                    .ok_or("stream is not a list")?
                    .into_iter();
                let name = parts
                    .next()
                    .as_ref()
                    .and_then(text)
                    .ok_or("stream name is not text")?;
                Ok((name, entries(parts.next().unwrap_or(Value::Nil))?))
            })
            .collect(),
    }
}

/// An `XAUTOCLAIM` reply: next cursor and claimed entries (deleted ones are left out).
pub fn autoclaim(value: Value) -> Result<(String, Vec<Entry>), String> {
    let mut parts = owned_items(value)
        .ok_or("XAUTOCLAIM reply is not a list")?
        .into_iter();
    let cursor = parts.next().as_ref().and_then(text).ok_or("no cursor")?;
    let claimed = entries(parts.next().unwrap_or(Value::Nil))?;
    Ok((cursor, claimed))
}

/// One group of `XINFO GROUPS`.
pub struct GroupInfo {
    pub name: String,
    pub pending: u64,
    /// Redis's own count: `None` when it cannot tell (after a restart, say).
    pub lag: Option<u64>,
    pub last_delivered: Option<EntryId>,
}

/// `XINFO GROUPS`: each group.
pub fn groups(value: &Value) -> Result<Vec<GroupInfo>, String> {
    records(value, "XINFO GROUPS")?
        .into_iter()
        .map(|get| {
            let name = get("name").and_then(text).ok_or("group without name")?;
            let pending = get("pending").and_then(int).unwrap_or(0).max(0) as u64;
            let lag = get("lag").and_then(int).map(|l| l.max(0) as u64);
            let last_delivered = get("last-delivered-id").and_then(|v| entry_id(v).ok());
            Ok(GroupInfo {
                name,
                pending,
                lag,
                last_delivered,
            })
        })
        .collect()
}

/// `XINFO CONSUMERS`: (name, pending, idle ms) per consumer.
pub fn consumers(value: &Value) -> Result<Vec<(String, u64, u64)>, String> {
    records(value, "XINFO CONSUMERS")?
        .into_iter()
        .map(|get| {
            let name = get("name").and_then(text).ok_or("consumer without name")?;
            let pending = get("pending").and_then(int).unwrap_or(0).max(0) as u64;
            let idle = get("idle").and_then(int).unwrap_or(0).max(0) as u64;
            Ok((name, pending, idle))
        })
        .collect()
}

/// An `XINFO` list of records (maps in RESP3, flat name/value lists in RESP2), each as a
/// look-up by field name.
fn records<'a>(
    value: &'a Value,
    what: &str,
) -> Result<Vec<impl Fn(&str) -> Option<&'a Value> + 'a>, String> {
    let list = items(value).ok_or(format!("{what} reply is not a list"))?;
    list.iter()
        .map(|record| {
            let pairs: Vec<(&Value, &Value)> = match record {
                Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
                other => {
                    let flat = items(other).ok_or(format!("{what} record is not a list"))?;
                    flat.chunks(2)
                        .filter_map(|c| Some((c.first()?, c.get(1)?)))
                        .collect()
                }
            };
            Ok(move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| text(k).as_deref() == Some(name))
                    .map(|(_, v)| *v)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    // Tests: a failed unwrap is a failed assertion.
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn bulk(bytes: &[u8]) -> Value {
        Value::BulkString(bytes.to_vec())
    }

    proptest! {
        /// Any bytes as field names and values: every entry comes back, in order, with its
        /// fields (names that are not UTF-8 lossily), so one odd entry never hides the others.
        #[test]
        fn every_entry_of_a_reply_comes_back_whatever_its_bytes(
            entries_bytes in vec(vec((vec(any::<u8>(), 0..12), vec(any::<u8>(), 0..12)), 0..6), 1..6)
        ) {
            let reply = Value::Array(
                entries_bytes
                    .iter()
                    .enumerate()
                    .map(|(i, fields)| {
                        Value::Array(vec![
                            bulk(format!("{}-0", i + 1).as_bytes()),
                            Value::Array(fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect()),
                        ])
                    })
                    .collect(),
            );
            let parsed = entries(reply).unwrap();
            prop_assert_eq!(parsed.len(), entries_bytes.len());
            for (i, ((id, fields), sent)) in parsed.iter().zip(&entries_bytes).enumerate() {
                prop_assert_eq!(id.to_string(), format!("{}-0", i + 1));
                let fields = fields.as_ref().unwrap();
                prop_assert_eq!(fields.len(), sent.len());
                for ((name, value), (sent_name, sent_value)) in fields.iter().zip(sent) {
                    prop_assert_eq!(value, sent_value);
                    prop_assert_eq!(name, &String::from_utf8_lossy(sent_name).into_owned());
                }
            }
        }
    }
}
