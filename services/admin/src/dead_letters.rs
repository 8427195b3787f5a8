//! `esr dead-letters list | show | redrive | purge`.

use esr_redis::RedisStore;
use esr_redis::admin::DeadLetterId;
use esr_schema::entry;
use esr_store::DeadLetter;
use serde_json::{Value, json};

fn as_json(id: DeadLetterId, letter: &DeadLetter) -> Value {
    json!({
        "id": id.to_string(),
        "group": letter.group,
        "stream": letter.entry.stream,
        "entry_id": letter.entry.id.to_string(),
        "deliveries": letter.deliveries,
        "reason": letter.reason,
    })
}

pub async fn list(store: &RedisStore, limit: usize, json: bool) -> anyhow::Result<()> {
    let letters = store.dead_letters_with_ids(limit).await?;
    if json {
        let all: Vec<Value> = letters.iter().map(|(id, l)| as_json(*id, l)).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    if letters.is_empty() {
        println!("no dead letters");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|(id, l)| {
            vec![
                id.to_string(),
                l.group.clone(),
                l.entry.stream.clone(),
                l.entry.id.to_string(),
                l.deliveries.to_string(),
                l.reason.clone(),
            ]
        })
        .collect();
    crate::table(
        &["ID", "GROUP", "STREAM", "ENTRY", "DELIVERIES", "REASON"],
        &rows,
    );
    Ok(())
}

pub async fn show(store: &RedisStore, id: &str, json: bool) -> anyhow::Result<()> {
    let id: DeadLetterId = id.parse()?;
    let letter = store
        .dead_letter_by_id(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no dead letter {id}"))?;
    let mut shown = as_json(id, &letter);
    shown["event"] = match entry::from_fields(&letter.fields) {
        Ok(stored) => crate::streams::describe(&crate::modules(), &stored),
        Err(error) => json!({"not_an_event": error.to_string()}),
    };
    shown["fields"] = letter
        .fields
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::from(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    if json {
        println!("{shown}");
    } else {
        println!("{}", serde_json::to_string_pretty(&shown)?);
    }
    Ok(())
}

/// Each id in turn; the first that cannot be redriven stops the run (those before it are).
pub async fn redrive(store: &RedisStore, ids: &[String]) -> anyhow::Result<()> {
    for id in ids {
        let id: DeadLetterId = id.parse()?;
        let letter = store.redrive(id).await?;
        println!(
            "redriven {id}: {} {} handed back to {}",
            letter.entry.stream, letter.entry.id, letter.group
        );
    }
    Ok(())
}

pub async fn purge(store: &RedisStore) -> anyhow::Result<()> {
    let purged = store.purge_dead_letters().await?;
    println!("purged {purged} dead letter(s)");
    Ok(())
}
