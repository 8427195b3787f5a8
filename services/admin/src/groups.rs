//! `esr groups` and `esr consumers prune`.

use std::collections::BTreeMap;
use std::time::Duration;

use esr_redis::RedisStore;
use esr_schema::Category;
use esr_store::{LeaseHolder, Leases as _, Subscriptions as _};
use serde_json::json;

/// The categories the modules declare, then any other found in Redis (a module this tool
/// was not built with wrote them): listed too, never skipped.
async fn categories(store: &RedisStore) -> anyhow::Result<Vec<Category>> {
    let mut categories = crate::modules().categories();
    for found in store.categories_found().await? {
        if !categories.contains(&found) {
            categories.push(found);
        }
    }
    Ok(categories)
}

/// The module that declares each group; `undeclared` for any other.
fn modules_of_groups() -> impl Fn(&str) -> &'static str {
    let declared: BTreeMap<&'static str, &'static str> = crate::modules()
        .iter()
        .flat_map(|m| m.groups().into_iter().map(move |g| (g.name, m.name())))
        .collect();
    move |group| declared.get(group).copied().unwrap_or("undeclared")
}

/// Each group's partition leases: who holds which partition now.
async fn owners(
    store: &RedisStore,
    groups: impl Iterator<Item = &String>,
) -> anyhow::Result<BTreeMap<(String, u32), LeaseHolder>> {
    let mut owners = BTreeMap::new();
    for group in groups {
        if owners.keys().any(|(g, _)| g == group) {
            continue;
        }
        for (partition, holder) in store.lease_holders(group).await?.into_iter().enumerate() {
            if let Some(holder) = holder {
                owners.insert((group.clone(), partition as u32), holder);
            }
        }
    }
    Ok(owners)
}

pub async fn list(store: &RedisStore, json: bool) -> anyhow::Result<()> {
    let rows = store.group_rows(&categories(store).await?).await?;
    let module_of = modules_of_groups();
    let owners = owners(store, rows.iter().map(|r| &r.group)).await?;
    let owner_of = |group: &str, partition: u32| owners.get(&(group.to_owned(), partition));
    let mut dead: BTreeMap<String, u64> = BTreeMap::new();
    for (_, letter) in store.dead_letters_with_ids(usize::MAX).await? {
        *dead.entry(letter.group).or_default() += 1;
    }
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "group": r.group,
                    "category": r.category,
                    "partition": r.partition,
                    "lag": r.lag,
                    "lag_is_lower_bound": r.lag_is_lower_bound,
                    "pending": r.pending,
                    "consumers": r.consumers.iter().map(|(name, pending, idle_ms)| {
                        json!({"name": name, "pending": pending, "idle_ms": idle_ms})
                    }).collect::<Vec<_>>(),
                    "dead_letters": dead.get(&r.group).copied().unwrap_or(0),
                    "module": module_of(&r.group),
                    "owner": owner_of(&r.group, r.partition).map(|h| {
                        json!({"name": h.owner, "token": h.token})
                    }),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no consumer groups yet: a projector creates them when it starts");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let consumers: Vec<String> = r
                .consumers
                .iter()
                .map(|(name, pending, idle_ms)| {
                    format!("{name} ({pending} pending, idle {})", idle(*idle_ms))
                })
                .collect();
            vec![
                r.group.clone(),
                r.category.clone(),
                r.partition.to_string(),
                if r.lag_is_lower_bound {
                    format!(">={}", r.lag)
                } else {
                    r.lag.to_string()
                },
                r.pending.to_string(),
                dead.get(&r.group).copied().unwrap_or(0).to_string(),
                owner_of(&r.group, r.partition).map_or_else(
                    || "-".to_owned(),
                    |h| format!("{} (token {})", h.owner, h.token),
                ),
                consumers.join(", "),
                module_of(&r.group).to_owned(),
            ]
        })
        .collect();
    crate::table(
        &[
            "GROUP",
            "CATEGORY",
            "PARTITION",
            "LAG",
            "PENDING",
            "DEAD",
            "OWNER",
            "CONSUMERS",
            "MODULE",
        ],
        &table,
    );
    Ok(())
}

fn idle(ms: u64) -> String {
    match ms {
        ms if ms < 10_000 => format!("{ms} ms"),
        ms if ms < 7_200_000 => format!("{} s", ms / 1000),
        ms => format!("{} h", ms / 3_600_000),
    }
}

/// Remove, from every group, consumers idle `idle` or longer with nothing pending.
pub async fn prune(store: &RedisStore, idle: Duration, json: bool) -> anyhow::Result<()> {
    let categories_of = store.groups_on(&categories(store).await?).await?;
    let mut removed = BTreeMap::new();
    for (group, categories) in &categories_of {
        // No consumer to keep: this process is none of theirs.
        let n = store.prune_consumers(group, categories, idle, "").await?;
        removed.insert(group.clone(), n);
    }
    if json {
        println!("{}", json!({"removed": removed}));
    } else {
        for (group, n) in &removed {
            println!("{group}: {n} consumer(s) removed");
        }
    }
    Ok(())
}
