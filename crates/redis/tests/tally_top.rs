//! The top of a tally is read in bounded work: a long tail of keys counted once (what anyone
//! who can like things can grow) costs the ranking nothing.

#![allow(clippy::unwrap_used)]

use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::{EntityId, StreamId, user::USER};
use esr_store::{Tallies, TallyCount, TallyWrite};
use esr_testkit::RedisServer;

const PARTITIONS: u32 = 16;
const TAIL: usize = 40_000;

async fn command_calls(url: &str, command: &str) -> u64 {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_top_of_a_long_tail_reads_one_page_per_partition() {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(Topology::Single(server.url()));
    config.partitions = PARTITIONS;
    let store = RedisStore::connect(config).await.unwrap();
    let keys: Vec<String> = (0..TAIL).map(|i| format!("object{i:06}")).collect();
    let writes = esr_store::contract::each_counted_once(&keys, 100);
    for batch in writes.chunks(50) {
        let outcomes = store
            .apply_tallies("liked", batch.to_vec(), &esr_store::Fence::Unfenced)
            .await
            .unwrap();
        assert!(outcomes.iter().all(Result::is_ok));
    }
    let popular = TallyWrite {
        source: StreamId::new(USER, EntityId::parse("fan").unwrap()),
        expected: 0,
        version: 1,
        counts: vec![TallyCount {
            version: 1,
            key: keys[TAIL - 1].clone(),
            amount: 1,
        }],
    };
    assert!(
        store
            .apply_tallies("liked", vec![popular], &esr_store::Fence::Unfenced)
            .await
            .unwrap()[0]
            .is_ok()
    );

    let reads_before = command_calls(&server.url(), "zrange").await;
    let scores_before = command_calls(&server.url(), "zmscore").await;
    let top = store.tally_top("liked", 100).await.unwrap();
    let reads = command_calls(&server.url(), "zrange").await - reads_before;
    let scores = command_calls(&server.url(), "zmscore").await - scores_before;

    assert_eq!(top.len(), 100);
    assert_eq!(top[0], (keys[TAIL - 1].clone(), 2));
    let rest: Vec<(String, i64)> = keys[..99].iter().map(|k| (k.clone(), 1)).collect();
    assert_eq!(top[1..], rest[..]);
    assert!(
        reads <= u64::from(PARTITIONS) && scores == 0,
        "the top read {reads} pages and scored {scores} times for {TAIL} keys"
    );
}
