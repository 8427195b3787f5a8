//! A primary killed under load and its replica promoted, with every append waiting for one
//! replica's acknowledgement (`WAIT 1`): no acknowledged event is lost, versions stay
//! contiguous, and the writers recover by themselves. One server behind a switchable address
//! (what a virtual IP or Sentinel-managed DNS name gives), and a 3-master Cluster with a
//! replica each. Each test prints how long writes were refused.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use esr_redis::{RedisConfig, RedisStore, Topology, WaitForReplicas};
use esr_schema::{EntityId, StreamId};
use esr_store::{AppendRequest, EventStore, ExpectedVersion, NewEvent, StoreError};
use esr_testkit::{RedisCluster, RedisServer, TcpProxy};
use uuid::Uuid;

const WRITERS: usize = 8;

fn kick() -> NewEvent {
    esr_store::contract::kick("Bugs")
}

fn waiting(mut config: RedisConfig) -> RedisConfig {
    config.wait_for_replicas = Some(WaitForReplicas {
        replicas: 1,
        timeout: Duration::from_millis(500),
    });
    config.response_timeout = Duration::from_secs(2);
    config
}

/// What the writers were told: each acknowledged append's version, event id and time.
#[derive(Default)]
struct Acknowledged {
    by_user: BTreeMap<StreamId, Vec<(u64, Uuid, Instant)>>,
}

impl Acknowledged {
    fn total(&self) -> usize {
        self.by_user.values().map(Vec::len).sum()
    }

    /// Per user, every append acknowledged after `at`; at least `each` for every user.
    fn each_since(&self, at: Instant, each: usize) -> bool {
        self.by_user.len() == WRITERS
            && self
                .by_user
                .values()
                .all(|acks| acks.iter().filter(|(_, _, t)| *t > at).count() >= each)
    }

    /// The longest any user went without an acknowledgement from its last one before `at`
    /// on: how long writes were refused.
    fn longest_gap_from(&self, at: Instant) -> Duration {
        self.by_user
            .values()
            .flat_map(|acks| {
                let from = acks.iter().rposition(|(_, _, t)| *t <= at).unwrap_or(0);
                acks[from..].windows(2).map(|pair| pair[1].2 - pair[0].2)
            })
            .max()
            .unwrap_or_default()
    }
}

/// One writer per user, each appending one event at a time with the version it last had
/// acknowledged; a refused append is sent again unchanged until it is answered.
fn start_writers(
    store: &RedisStore,
    users: &[StreamId],
    acknowledged: &Arc<Mutex<Acknowledged>>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    users
        .iter()
        .map(|user| {
            let (store, user) = (store.clone(), user.clone());
            let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
            tokio::spawn(async move {
                let mut version = 0;
                while !stop.load(Ordering::SeqCst) {
                    let event = kick();
                    let id = event.event_id;
                    let request = AppendRequest {
                        stream: user.clone(),
                        expected: match version {
                            0 => ExpectedVersion::NoStream,
                            v => ExpectedVersion::Exactly(v),
                        },
                        events: vec![event],
                        idempotency: None,
                    };
                    loop {
                        match store.append(request.clone()).await {
                            Ok(outcome) => {
                                assert_eq!(outcome.version, version + 1, "{user}");
                                version = outcome.version;
                                acknowledged
                                    .lock()
                                    .unwrap()
                                    .by_user
                                    .entry(user.clone())
                                    .or_default()
                                    .push((version, id, Instant::now()));
                                break;
                            }
                            Err(StoreError::Unavailable(_)) => {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Err(other) => panic!("{user}: {other}"),
                        }
                    }
                }
            })
        })
        .collect()
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not reached in {limit:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writers on `store` until 200 appends are acknowledged, then `fail_over`, then on until every
/// writer has had 20 more acknowledged (within `recover_within`): what they were told, and
/// when the fault began.
async fn through_a_failover(
    store: &RedisStore,
    recover_within: Duration,
    fail_over: impl AsyncFnOnce(),
) -> (Acknowledged, Instant) {
    let (acknowledged, stop) = (
        Arc::<Mutex<Acknowledged>>::default(),
        Arc::<AtomicBool>::default(),
    );
    let writers = start_writers(store, &users(), &acknowledged, &stop);
    wait_for("200 appends", Duration::from_secs(30), || {
        acknowledged.lock().unwrap().total() >= 200
    })
    .await;
    let killed = Instant::now();
    fail_over().await;
    wait_for("every writer acknowledged again", recover_within, || {
        acknowledged.lock().unwrap().each_since(killed, 20)
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    (acknowledged, killed)
}

/// Every acknowledged append is in the promoted store at its version, and each user's
/// versions run 1, 2, 3, ... without a gap.
async fn assert_nothing_acknowledged_was_lost(store: &RedisStore, acknowledged: &Acknowledged) {
    for (user, acks) in &acknowledged.by_user {
        let stored = store.read_stream(user, 1, 100_000).await.unwrap();
        for (i, event) in stored.iter().enumerate() {
            assert_eq!(
                event.envelope.version,
                i as u64 + 1,
                "{user}: versions contiguous"
            );
        }
        for (version, id, _) in acks {
            let event = stored
                .get(usize::try_from(*version).unwrap() - 1)
                .unwrap_or_else(|| panic!("{user}: acknowledged version {version} lost"));
            assert_eq!(event.envelope.event_id, *id, "{user} version {version}");
        }
    }
}

fn users() -> Vec<StreamId> {
    (0..WRITERS)
        .map(|i| {
            StreamId::new(
                esr_schema::user::USER,
                EntityId::parse(&format!("f{i}")).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_killed_under_load_loses_no_acknowledged_event() {
    let mut primary = RedisServer::start();
    let replicate = ["--replicaof", "127.0.0.1", &primary.port().to_string()];
    let (replica, spare) = (
        RedisServer::start_with(&replicate),
        RedisServer::start_with(&replicate),
    );
    primary.wait_for_replicas(2);
    let address = TcpProxy::start(primary.port());
    let store = RedisStore::connect(waiting(RedisConfig::new(Topology::Single(address.url()))))
        .await
        .unwrap();

    let (acknowledged, killed) = through_a_failover(&store, Duration::from_secs(30), async || {
        // The primary dies; 300 ms later (detection) the replica is promoted, the other replica
        // follows it, and the address moves to it.
        primary.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let () = replica
            .query(redis::cmd("REPLICAOF").arg("NO").arg("ONE"))
            .unwrap();
        let () = spare
            .query(redis::cmd("REPLICAOF").arg("127.0.0.1").arg(replica.port()))
            .unwrap();
        address.switch_to(replica.port());
    })
    .await;
    eprintln!(
        "one server: {} appends acknowledged; writes refused for at most {} ms across the \
         failover (primary killed, replica promoted 300 ms later)",
        acknowledged.total(),
        acknowledged.longest_gap_from(killed).as_millis()
    );
    let promoted = RedisStore::connect(RedisConfig::new(Topology::Single(replica.url())))
        .await
        .unwrap();
    assert_nothing_acknowledged_was_lost(&promoted, &acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_master_killed_under_load_loses_no_acknowledged_event() {
    let mut cluster = RedisCluster::start_with_replicas(3, 1);
    // A node that comes back as a replica is synced at once, not after the default 5 s
    // delay (which WAIT 1 on its shard would otherwise wait out too).
    for node in &cluster.nodes {
        let () = node
            .query(
                redis::cmd("CONFIG")
                    .arg("SET")
                    .arg("repl-diskless-sync-delay")
                    .arg(0),
            )
            .unwrap();
    }
    let store = RedisStore::connect(waiting(RedisConfig::new(Topology::Cluster(cluster.urls()))))
        .await
        .unwrap();
    // The master of the first user's partition, so that some writers lose their primary.
    let partitions = RedisConfig::new(Topology::Cluster(vec![])).partitions;
    let tag = esr_redis::keys::Keys::tag(esr_redis::keys::partition_of(&users()[0].id, partitions));
    let slot: u16 = cluster.nodes[0]
        .query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(&tag))
        .unwrap();
    let victim = cluster.node_of_slot(slot).unwrap();
    let heir = cluster.replica_of(victim).unwrap();
    let (acknowledged, killed) = through_a_failover(&store, Duration::from_secs(60), async || {
        // The master dies; 300 ms later its replica takes over, and the old master comes
        // back as a replica of it (so that WAIT 1 can be met on that shard again).
        cluster.nodes[victim].kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let () = cluster.nodes[heir]
            .query(redis::cmd("CLUSTER").arg("FAILOVER").arg("TAKEOVER"))
            .unwrap();
        cluster.nodes[victim].restart();
    })
    .await;
    eprintln!(
        "Cluster: {} appends acknowledged; writes refused for at most {} ms across the \
         failover (master killed, its replica took over 300 ms later)",
        acknowledged.total(),
        acknowledged.longest_gap_from(killed).as_millis()
    );
    cluster.wait_ok();
    let reader = RedisStore::connect(RedisConfig::new(Topology::Cluster(cluster.urls())))
        .await
        .unwrap();
    assert_nothing_acknowledged_was_lost(&reader, &acknowledged).await;
}

/// A retry of an append that was written on the primary but not acknowledged by a replica
/// (503) must not be answered as done before a replica has it, whether it meets the
/// idempotency record first (the command side's check before deciding) or the append script's
/// duplicate answer, and whichever instance (connection) it comes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_of_an_unreplicated_append_waits_for_replicas_too() {
    use esr_store::Idempotency;
    let primary = RedisServer::start();
    let primary_port = primary.port().to_string();
    let replica = RedisServer::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &primary_port,
        "--enable-debug-command",
        "local",
    ]);
    primary.wait_for_replicas(1);
    let connect = || async {
        RedisStore::connect(waiting(RedisConfig::new(Topology::Single(primary.url()))))
            .await
            .unwrap()
    };
    let (first, second) = (connect().await, connect().await);
    let user = StreamId::new(esr_schema::user::USER, EntityId::parse("late").unwrap());
    let request = AppendRequest {
        stream: user.clone(),
        expected: ExpectedVersion::NoStream,
        events: vec![kick()],
        idempotency: Some(Idempotency {
            key: "retry-me".into(),
            ttl: Duration::from_secs(60),
            fingerprint: "f".into(),
        }),
    };
    // The replica stops acknowledging for 3 s.
    let replica_port = replica.port();
    let asleep = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{replica_port}/")).unwrap();
        let mut conn = client.get_connection().unwrap();
        let _: () = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(3)
            .query(&mut conn)
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    let written = first.append(request.clone()).await;
    assert!(
        matches!(written, Err(StoreError::Unavailable(_))),
        "not acknowledged by the replica: {written:?}"
    );
    // The retries, through another instance, while the replica still sleeps.
    let checked = second.idempotent_outcome(&user, "retry-me", "f").await;
    assert!(
        matches!(checked, Err(StoreError::Unavailable(_))),
        "the idempotency record answered before a replica had the event: {checked:?}"
    );
    let resent = second.append(request.clone()).await;
    assert!(
        matches!(resent, Err(StoreError::Unavailable(_))),
        "the duplicate answered before a replica had the event: {resent:?}"
    );
    asleep.join().unwrap();
    // Once the replica has it, the retry is answered with the first result.
    let replayed = second.append(request).await.unwrap();
    assert_eq!((replayed.version, replayed.duplicate), (1, true));
    let replayed = second
        .idempotent_outcome(&user, "retry-me", "f")
        .await
        .unwrap();
    assert_eq!(replayed.map(|o| o.version), Some(1));
}
