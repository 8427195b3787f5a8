//! `esr check`: what an event store needs of its Redis, one line per finding.

use std::process::ExitCode;

use esr_redis::RedisStore;
use esr_store::Subscriptions as _;
use esr_wiring::StoreArgs;
use serde_json::json;

pub async fn run(args: &StoreArgs, json: bool) -> anyhow::Result<ExitCode> {
    match args.open_redis(&crate::modules()).await {
        Ok(store) => run_on(&store, json).await,
        // Unreachable, too old, another partition count: a problem like the others.
        Err(error) => Ok(report(&[], &[format!("{error:#}")], json)),
    }
}

pub async fn run_on(store: &RedisStore, json: bool) -> anyhow::Result<ExitCode> {
    let (mut fine, mut problems) = (Vec::new(), Vec::new());
    let facts = store.server_facts().await?;
    fine.push(format!(
        "Redis {} on {} node(s)",
        facts.versions.join(", "),
        facts.versions.len()
    ));
    problems.extend(store.warnings().iter().cloned());
    if store.warnings().is_empty() {
        fine.push("persistence on, eviction off (noeviction)".to_owned());
    }
    // Connecting refused any other count, so the two agree here.
    fine.push(format!(
        "partitions: {} stored, {} configured",
        facts.stored_partitions.as_deref().unwrap_or("none"),
        store.partitions()
    ));
    for group in crate::modules().groups() {
        if store.group_present(group.name, group.categories).await? {
            fine.push(format!("group {} present", group.name));
        } else {
            problems.push(format!(
                "group {} missing on some partition: start a projector, which creates it",
                group.name
            ));
        }
    }
    let dead = store.dead_letter_count().await?;
    if dead > 0 {
        problems.push(format!(
            "{dead} dead letter(s): see `esr dead-letters list`"
        ));
    }
    Ok(report(&fine, &problems, json))
}

fn report(fine: &[String], problems: &[String], json: bool) -> ExitCode {
    if json {
        println!(
            "{}",
            json!({"ok": fine, "problems": problems, "healthy": problems.is_empty()})
        );
    } else {
        for line in fine {
            println!("ok       {line}");
        }
        for line in problems {
            println!("problem  {line}");
        }
    }
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
