//! The most-liked ranking with a long tail: 1,000,000 distinct objects (10,000 with
//! `--quick`), most liked once, counted through the tally's own writes over 16 partitions, on
//! one server and on a Cluster of 3 masters. Each row is the p99 of `tally_top(100)` beside
//! raw Redis reading one page of the same size (`ZRANGE 0 99 WITHSCORES`) from one sorted set
//! holding every object.

use std::time::Instant;

use esr_domain::MostLiked;
use esr_kernel::Tally;
use esr_redis::{RedisConfig, RedisStore};
use esr_schema::{EntityId, StreamId, user::USER};
use esr_store::{Tallies, TallyCount, TallyWrite};
use esr_testkit::RedisServer;

use crate::Scale;
use crate::measure::{elapsed_ms, percentile};
use crate::raw;
use crate::report::Row;

const PARTITIONS: u32 = 16;
const LIMIT: usize = 100;
const READS: usize = 500;
/// Objects counted per write, writes per `apply_tallies` call.
const PER_WRITE: usize = 100;
const WRITES_PER_CALL: usize = 100;

pub async fn rows(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let objects = if scale.quick { 10_000 } else { 1_000_000 };
    let raw_server = RedisServer::start_with(&["--appendonly", "no"]);
    let raw_p99 = raw_page_p99(&raw_server.url(), objects).await?;
    drop(raw_server);
    let mut rows = Vec::new();
    for masters in [1usize, 3] {
        let (_servers, topology) = crate::scaleout::Servers::start(masters);
        let mut config = RedisConfig::new(topology);
        config.partitions = PARTITIONS;
        let store = RedisStore::connect(config).await?;
        eprintln!("  top on {masters} master(s): counting {objects} objects ...");
        let counted = Instant::now();
        count_long_tail(&store, objects).await?;
        let count_secs = counted.elapsed().as_secs_f64();
        let mut samples = Vec::with_capacity(READS);
        for _ in 0..READS {
            let started = Instant::now();
            let top = store.tally_top(MostLiked::NAME, LIMIT).await?;
            samples.push(elapsed_ms(started));
            anyhow::ensure!(top.len() == LIMIT, "the top answered {} keys", top.len());
        }
        let p50 = percentile(&mut samples, 50.0);
        rows.push(Row::new(
            &format!("tally_top100_p99_{}", if masters == 1 { "single" } else { "cluster3" }),
            percentile(&mut samples, 99.0),
            "ms",
            Some(raw_p99),
            format!(
                "{objects} objects in {PARTITIONS} partitions on {masters} master(s), p50 {p50:.2} ms; \
                 counted in {count_secs:.1} s through the tally writes; raw: ZRANGE 0 99 of one set of {objects}"
            ),
        ));
    }
    Ok(rows)
}

/// Every object liked once by some user, plus a head liked more: the long tail a hostile
/// client grows, written as the projector writes it.
async fn count_long_tail(store: &RedisStore, objects: usize) -> anyhow::Result<()> {
    let mut writes = Vec::with_capacity(WRITES_PER_CALL);
    for (n, first) in (0..objects).step_by(PER_WRITE).enumerate() {
        let counts: Vec<TallyCount> = (first..(first + PER_WRITE).min(objects))
            .enumerate()
            .map(|(i, object)| TallyCount {
                version: i as u64 + 1,
                key: format!("object{object:07}"),
                // A head of 1,000 objects with more likes than the tail.
                amount: if object % 1000 == 0 { 5 } else { 1 },
            })
            .collect();
        writes.push(TallyWrite {
            source: StreamId::new(USER, EntityId::parse(&format!("liker{n}"))?),
            expected: 0,
            version: counts.len() as u64,
            counts,
        });
        if writes.len() == WRITES_PER_CALL {
            apply(store, std::mem::take(&mut writes)).await?;
        }
    }
    apply(store, writes).await
}

async fn apply(store: &RedisStore, writes: Vec<TallyWrite>) -> anyhow::Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    for outcome in store
        .apply_tallies(MostLiked::NAME, writes, &esr_store::Fence::Unfenced)
        .await?
    {
        outcome?;
    }
    Ok(())
}

/// Raw Redis: one sorted set of every object, one page read `READS` times.
async fn raw_page_p99(url: &str, objects: usize) -> anyhow::Result<f64> {
    let mut conn = raw::connect(url).await?;
    for first in (0..objects).step_by(10_000) {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg("raw_top");
        for object in first..(first + 10_000).min(objects) {
            cmd.arg(if object % 1000 == 0 { -5 } else { -1 })
                .arg(format!("object{object:07}"));
        }
        let _: i64 = cmd.query_async(&mut conn).await?;
    }
    let mut samples = Vec::with_capacity(READS);
    for _ in 0..READS {
        let started = Instant::now();
        let page: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg("raw_top")
            .arg(0)
            .arg(LIMIT - 1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await?;
        samples.push(elapsed_ms(started));
        anyhow::ensure!(page.len() == LIMIT, "raw page of {}", page.len());
    }
    Ok(percentile(&mut samples, 99.0))
}
