//! `esr events` (a stream's history) and `esr tail` (a category, live): events decoded.

use std::sync::Arc;
use std::time::Duration;

use esr_app::query::QueryError;
use esr_app::{Modules, QueryService};
use esr_redis::RedisStore;
use esr_schema::{AggregateType, Category, EntityId, StoredEvent, StreamId};
use esr_store::{CategoryLog as _, EntryId, Store};
use serde_json::{Value, json};

const PAGE: usize = 1000;

pub async fn events(
    store: RedisStore,
    aggregate: &str,
    id: &str,
    from: u64,
    json: bool,
) -> anyhow::Result<()> {
    let id = EntityId::parse(id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let modules = crate::modules();
    // An aggregate no module of this tool declares is read all the same, its events decoded by
    // field names.
    let declared = modules.aggregate(aggregate);
    let unknown = || {
        let names: Vec<String> = modules
            .aggregates()
            .iter()
            .map(|a| a.aggregate.to_string())
            .collect();
        anyhow::anyhow!(
            "no aggregate {aggregate:?}: none declared by that name (one of {}) and no such \
             stream in Redis",
            names.join(", ")
        )
    };
    let aggregate_type = match &declared {
        Some(declared) => declared.aggregate.clone(),
        None => AggregateType::parse(aggregate).map_err(|_| unknown())?,
    };
    let stream = StreamId::new(aggregate_type, id.clone());
    let queries = QueryService::new(Arc::new(store) as Arc<dyn Store>);
    let mut all = Vec::new();
    let mut next = from.max(1);
    loop {
        let page = queries
            .history(&stream, next, PAGE, |stored| {
                modules.decode(stored).map_err(|e| QueryError::Corrupt {
                    stream: stream.clone(),
                    version: stored.envelope.version,
                    reason: e.to_string(),
                })
            })
            .await?;
        let full = page.len() == PAGE;
        next += page.len() as u64;
        all.extend(page);
        if !full {
            break;
        }
    }
    if declared.is_none() && all.is_empty() && queries.store().stream_version(&stream).await? == 0 {
        return Err(unknown());
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no events in {aggregate} {id} from version {from}");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|e| {
            vec![
                e.version.to_string(),
                e.occurred_at.to_rfc3339(),
                e.event_type.clone(),
                // Events stored before actors were recorded name nobody.
                e.actor.clone().unwrap_or_else(|| "-".into()),
                e.data.to_string(),
            ]
        })
        .collect();
    crate::table(&["VERSION", "OCCURRED_AT", "TYPE", "ACTOR", "DATA"], &rows);
    Ok(())
}

/// Print each new entry of `category` as it arrives, until Ctrl-C.
pub async fn tail(
    store: RedisStore,
    category: &str,
    from: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let modules = crate::modules();
    let mut known = modules.categories();
    known.extend(store.categories_found().await?);
    let Some(category) = known.iter().find(|c| c.as_str() == category).cloned() else {
        let names: Vec<&str> = known.iter().map(Category::as_str).collect();
        anyhow::bail!("no category {category:?}: one of {}", names.join(", "));
    };
    let mut after = match from.as_deref() {
        None => now_as_entry_id(),
        Some("0") => EntryId::ZERO,
        Some(id) => id
            .parse()
            .map_err(|_| anyhow::anyhow!("{id:?} is not an entry id (<ms>-<seq>, or 0)"))?,
    };
    // Listening for Ctrl-C from before the first line: a future made by `ctrl_c()` listens only
    // once polled, and `select!` may not poll it while reads are ready.
    let mut interrupt = interrupted()?;
    let stop = interrupt.recv();
    tokio::pin!(stop);
    if !json {
        eprintln!("following {category} after {after}; Ctrl-C to stop");
    }
    loop {
        let page = tokio::select! {
            page = store.read_category(&category, after, 100) => page?,
            _ = &mut stop => return Ok(()),
        };
        for entry in &page {
            after = after.max(entry.id);
            let line = match entry.event() {
                Ok(stored) => describe(&modules, &stored),
                Err(error) => json!({"not_an_event": error.to_string()}),
            };
            if json {
                println!(
                    "{}",
                    json!({"entry_id": entry.id.to_string(), "event": line})
                );
            } else {
                println!("{}  {}", entry.id, line);
            }
        }
        if page.is_empty() {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = &mut stop => return Ok(()),
            }
        }
    }
}

#[cfg(unix)]
fn interrupted() -> anyhow::Result<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    Ok(signal(SignalKind::interrupt())?)
}

#[cfg(not(unix))]
fn interrupted() -> anyhow::Result<tokio::signal::windows::CtrlC> {
    Ok(tokio::signal::windows::ctrl_c()?)
}

/// An event as one JSON value: stream, version, type, and its data, decoded by its type when
/// a module declares its aggregate (by field names otherwise).
pub fn describe(modules: &Modules, stored: &StoredEvent) -> Value {
    let e = &stored.envelope;
    let data = match modules.decode(stored) {
        Ok(data) => data,
        Err(error) => json!({"undecodable": error.to_string()}),
    };
    json!({
        "stream": e.stream.to_string(),
        "version": e.version,
        "type": e.event_type,
        "data": data,
    })
}

/// Entry ids start with their time in ms: just before every entry written from this
/// millisecond on (one written in this very millisecond included).
fn now_as_entry_id() -> EntryId {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    EntryId {
        ms: ms.saturating_sub(1),
        seq: u64::MAX,
    }
}
