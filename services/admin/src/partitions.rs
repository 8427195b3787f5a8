//! `esr partitions` and `esr partitions spread`: where each partition lives on a Cluster, and
//! moving partitions so that every master holds its share.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use esr_redis::RedisStore;
use esr_redis::placement::{Move, Placement};
use serde_json::json;

pub async fn list(store: &RedisStore, json: bool) -> anyhow::Result<()> {
    let placement = store.placement().await?;
    if json {
        let partitions: Vec<_> = placement
            .partitions
            .iter()
            .map(|p| json!({"partition": p.partition, "slot": p.slot, "master": p.master}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "partitions": partitions,
                "per_master": placement.per_master(),
                "moves_to_spread": placement.spread_moves().len(),
                "unfinished_moves": placement.unfinished.iter().map(|m| json!({
                    "partition": m.partition, "slot": m.slot, "from": m.from, "to": m.to,
                })).collect::<Vec<_>>(),
            }))?
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = placement
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                p.slot.to_string(),
                p.master.clone(),
            ]
        })
        .collect();
    crate::table(&["PARTITION", "SLOT", "MASTER"], &rows);
    println!();
    summary(&placement);
    Ok(())
}

fn summary(placement: &Placement) {
    for (master, held) in placement.per_master() {
        println!("{master}: {held} partitions");
    }
    for step in &placement.unfinished {
        println!(
            "partition {} (slot {}) is half moved from {} to {}: appends to it wait until \
             `esr partitions spread` finishes the move",
            step.partition, step.slot, step.from, step.to
        );
    }
    match placement.spread_moves().len() {
        0 => println!("spread evenly"),
        1 => println!("1 move would spread them evenly: esr partitions spread"),
        moves => println!("{moves} moves would spread them evenly: esr partitions spread"),
    }
}

/// Finish the moves a stopped run left half done (to the target it chose: its keys may be
/// there already), then move partitions until every master holds its share, planning again
/// after each move. Ctrl-C stops after the move in progress: a move left half done makes every
/// append to its partition wait.
pub async fn spread(store: &RedisStore, dry_run: bool, max_key_mb: u64) -> anyhow::Result<()> {
    let mut placement = store.placement().await?;
    if dry_run {
        for step in &placement.unfinished {
            println!("would finish moving {}", describe(step));
        }
        for step in placement.spread_moves() {
            println!("would move {}", describe(&step));
        }
        return Ok(());
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("Ctrl-C: stopping once the move in progress is finished");
                interrupted.store(true, Ordering::SeqCst);
            }
        }
    });
    // Each move changes the placement; more than one per partition (and unfinished one) means
    // the placement is not settling (another operator moving slots too?).
    for _ in 0..=placement.partitions.len() * 2 + placement.unfinished.len() {
        let (step, verb) = match placement.unfinished.first() {
            Some(step) => (step.clone(), "finished moving"),
            None => match placement.spread_moves().into_iter().next() {
                Some(step) => (step, "moved"),
                None => {
                    summary(&placement);
                    return Ok(());
                }
            },
        };
        if interrupted.load(Ordering::SeqCst) {
            summary(&placement);
            anyhow::bail!("interrupted; the same command goes on");
        }
        let what = describe(&step);
        // A move already started is finished whatever its size: half moved is worse.
        if verb == "moved" {
            refuse_large_keys(store, step.partition, max_key_mb).await?;
        }
        let started = std::time::Instant::now();
        let keys = store.move_partition(&placement, &step).await.map_err(|e| {
            anyhow::anyhow!("moving {what}: {e} (run the same command again to finish it)")
        })?;
        println!(
            "{verb} {what}: {keys} keys in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        placement = store.placement().await?;
    }
    summary(&placement);
    anyhow::bail!("the placement did not settle: is someone else moving slots?")
}

/// Refuse to start moving a partition whose category streams are larger than `max_mb`.
async fn refuse_large_keys(store: &RedisStore, partition: u32, max_mb: u64) -> anyhow::Result<()> {
    for category in &crate::modules().categories() {
        let key = esr_redis::keys::Keys::category_stream(category, partition);
        let bytes = store.memory_usage(&key).await?.unwrap_or(0);
        if bytes > max_mb.saturating_mul(1_000_000) {
            anyhow::bail!(
                "{key} is {} MB: moving it blocks both masters for about {} ms (MIGRATE moves a \
                 key whole); trim the categories (CATEGORY_TRIM_EVERY_MS) or pass \
                 --max-key-mb {}",
                bytes / 1_000_000,
                bytes * 27 / 10_000_000,
                bytes / 1_000_000 + 1
            );
        }
    }
    Ok(())
}

fn describe(step: &Move) -> String {
    format!(
        "partition {} (slot {}) from {} to {}",
        step.partition, step.slot, step.from, step.to
    )
}
