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

pub fn entry_id(value: &Value) -> Result<EntryId, String> {
    let raw = text(value).ok_or("entry id is not text")?;
    raw.parse().map_err(|_| format!("bad entry id {raw:?}"))
}

fn fields(value: &Value) -> Result<Option<Fields>, String> {
    if matches!(value, Value::Nil) {
        // An entry deleted while pending is returned without fields.
        return Ok(None);
    }
    let flat: Vec<&Value> = match value {
        Value::Map(pairs) => pairs.iter().flat_map(|(k, v)| [k, v]).collect(),
        other => items(other)
            .ok_or("entry fields are not a list")?
            .iter()
            .collect(),
    };
    flat.chunks(2)
        .map(|pair| match pair {
            [k, v] => {
                let key = text(k).ok_or("field name is not text")?;
                let bytes = match v {
                    Value::BulkString(b) => b.clone(),
                    other => text(other)
                        .ok_or("field value is not a string")?
                        .into_bytes(),
                };
                Ok((key, bytes))
            }
            _ => Err("odd number of field values".to_owned()),
        })
        .collect::<Result<Fields, String>>()
        .map(Some)
}

/// An `XRANGE`-shaped list of entries.
pub fn entries(value: &Value) -> Result<Vec<Entry>, String> {
    let Some(list) = items(value) else {
        return if matches!(value, Value::Nil) {
            Ok(vec![])
        } else {
            Err("entries are not a list".into())
        };
    };
    list.iter()
        .map(|entry| {
            let parts = items(entry).ok_or("entry is not a list")?;
            let id = entry_id(parts.first().ok_or("entry without id")?)?;
            let fields = fields(parts.get(1).unwrap_or(&Value::Nil))?;
            Ok((id, fields))
        })
        .collect()
}

/// An `XREAD`/`XREADGROUP` reply: entries per stream.
pub fn streams(value: &Value) -> Result<Vec<(String, Vec<Entry>)>, String> {
    match value {
        Value::Nil => Ok(vec![]),
        Value::Map(pairs) => pairs
            .iter()
            .map(|(k, v)| Ok((text(k).ok_or("stream name is not text")?, entries(v)?)))
            .collect(),
        other => items(other)
            .ok_or("stream reply is not a list")?
            .iter()
            .map(|stream| {
                let parts = items(stream).ok_or("stream is not a list")?;
                let name = parts
                    .first()
                    .and_then(text)
                    .ok_or("stream name is not text")?;
                Ok((name, entries(parts.get(1).unwrap_or(&Value::Nil))?))
            })
            .collect(),
    }
}

/// An `XAUTOCLAIM` reply: next cursor and claimed entries (deleted ones are left out).
pub fn autoclaim(value: &Value) -> Result<(String, Vec<Entry>), String> {
    let parts = items(value).ok_or("XAUTOCLAIM reply is not a list")?;
    let cursor = parts.first().and_then(text).ok_or("no cursor")?;
    let claimed = entries(parts.get(1).unwrap_or(&Value::Nil))?;
    Ok((cursor, claimed))
}

/// `XINFO GROUPS`: (name, pending, lag) per group; lag is `None` when Redis cannot tell.
pub fn groups(value: &Value) -> Result<Vec<(String, u64, Option<u64>)>, String> {
    let list = items(value).ok_or("XINFO GROUPS reply is not a list")?;
    list.iter()
        .map(|group| {
            let pairs: Vec<(&Value, &Value)> = match group {
                Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
                other => {
                    let flat = items(other).ok_or("group is not a list")?;
                    flat.chunks(2)
                        .filter_map(|c| Some((c.first()?, c.get(1)?)))
                        .collect()
                }
            };
            let get = |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| text(k).as_deref() == Some(name))
                    .map(|(_, v)| *v)
            };
            let name = get("name").and_then(text).ok_or("group without name")?;
            let pending = get("pending").and_then(int).unwrap_or(0).max(0) as u64;
            let lag = get("lag").and_then(int).map(|l| l.max(0) as u64);
            Ok((name, pending, lag))
        })
        .collect()
}
