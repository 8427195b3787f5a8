//! `esr partitions` and `esr partitions spread`: where each partition lives on a Cluster, and
//! moving partitions so that every master holds its share.

use esr_redis::RedisStore;
use esr_redis::placement::Placement;
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
    match placement.spread_moves().len() {
        0 => println!("spread evenly"),
        1 => println!("1 move would spread them evenly: esr partitions spread"),
        moves => println!("{moves} moves would spread them evenly: esr partitions spread"),
    }
}

pub async fn spread(store: &RedisStore, dry_run: bool) -> anyhow::Result<()> {
    let mut placement = store.placement().await?;
    let moves = placement.spread_moves();
    if moves.is_empty() {
        summary(&placement);
        return Ok(());
    }
    for step in moves {
        let what = format!(
            "partition {} (slot {}) from {} to {}",
            step.partition, step.slot, step.from, step.to
        );
        if dry_run {
            println!("would move {what}");
            continue;
        }
        let started = std::time::Instant::now();
        let keys = store.move_partition(&placement, &step).await.map_err(|e| {
            anyhow::anyhow!("moving {what}: {e} (run the same command again to finish it)")
        })?;
        println!(
            "moved {what}: {keys} keys in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        placement = store.placement().await?;
    }
    if !dry_run {
        summary(&placement);
    }
    Ok(())
}
