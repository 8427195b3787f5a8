//! Moving a partition between masters (`esr partitions spread`): a category stream is one key,
//! and `MIGRATE` moves a key whole, so both masters are blocked while it goes. Measured: a
//! partition whose category stream holds 1,000,000 entries (10,000 with `--quick`), shaped
//! like ours, moved between two masters of a 3-master Cluster, while another task pings each
//! master every millisecond: the longest ping is how long other partitions' clients waited.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_testkit::RedisCluster;

use crate::Scale;
use crate::raw;
use crate::report::Row;

pub async fn rows(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let entries: usize = if scale.quick { 10_000 } else { 1_000_000 };
    let cluster = RedisCluster::start(3);
    let urls = cluster.urls();
    let mut config = RedisConfig::new(Topology::Cluster(urls.clone()));
    config.partitions = 16;
    let store = RedisStore::connect(config).await?;
    let placement = store.placement().await?;
    let place = placement
        .partitions
        .first()
        .ok_or_else(|| anyhow::anyhow!("no partition"))?
        .clone();
    let to = placement
        .masters
        .iter()
        .find(|m| m.address != place.master)
        .ok_or_else(|| anyhow::anyhow!("one master"))?
        .address
        .clone();
    let url_of = |address: &str| -> anyhow::Result<String> {
        urls.iter()
            .find(|u| u.contains(address))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no url for {address}"))
    };
    let source = raw::connect(&url_of(&place.master)?).await?;
    eprintln!("  filling a category stream with {entries} entries ...");
    let key = format!("user_activity:{{p{}}}", place.partition);
    let payload = "x".repeat(60);
    for first in (0..entries).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in first..(first + 10_000).min(entries) {
            pipe.cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("event_id")
                .arg("0192f3a4-5b6c-7d8e-9fa0-b1c2d3e4f5a6")
                .arg("user_id")
                .arg(format!("u{}", i % 1000))
                .arg("version")
                .arg(i / 1000 + 1)
                .arg("event_type")
                .arg("acted_on")
                .arg("actor")
                .arg("user:t123")
                .arg("payload")
                .arg(&payload)
                .ignore();
        }
        let () = pipe.query_async(&mut source.clone()).await?;
    }
    let bytes: u64 = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(&key)
        .query_async(&mut source.clone())
        .await?;

    // Ping both masters every millisecond while the partition moves.
    let stop = Arc::new(AtomicBool::new(false));
    let longest_us = Arc::new(AtomicU64::new(0));
    let mut pingers = Vec::new();
    for address in [place.master.clone(), to.clone()] {
        let conn = raw::connect(&url_of(&address)?).await?;
        let (stop, longest_us) = (stop.clone(), longest_us.clone());
        pingers.push(tokio::spawn(async move {
            let mut conn = conn;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let _: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
                longest_us.fetch_max(sent.elapsed().as_micros() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let quiet_us = longest_us.swap(0, Ordering::Relaxed);
    let step = esr_redis::placement::Move {
        partition: place.partition,
        slot: place.slot,
        from: place.master.clone(),
        to,
    };
    let started = Instant::now();
    let keys = store.move_partition(&placement, &step).await?;
    let moved_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for pinger in pingers {
        let _ = pinger.await;
    }
    let blocked_ms = longest_us.load(Ordering::Relaxed) as f64 / 1000.0;
    Ok(vec![Row::new(
        "partition_move_blocked_ms",
        blocked_ms,
        "ms",
        None,
        format!(
            "longest PING to either master while a partition with a {entries}-entry category \
             stream ({:.0} MB) moved: {keys} keys in {moved_secs:.2} s; {:.1} ms before the move",
            bytes as f64 / 1e6,
            quiet_us as f64 / 1000.0
        ),
    )])
}
