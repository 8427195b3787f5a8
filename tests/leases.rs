//! Projector processes dividing each group's partitions by lease, on a `redis-server` the test
//! starts: an instance killed or stalled loses its partitions to the others within the lease
//! time, one stalled past its lease writes nothing when it wakes, and one that joins takes
//! its share.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use esr_e2e::{Service, binary, free_port, wait_healthy};
use esr_redis::keys::Keys;
use esr_schema::{EntityId, StreamId, user::USER};
use esr_testkit::RedisServer;
use serde_json::json;

const PARTITIONS: u32 = 8;
const LEASE: Duration = Duration::from_millis(2000);
/// The longest a dead holder's partition can stay untaken: its lease runs out at most the
/// lease time after the kill, and the survivor looks every third of it.
const TAKEOVER_BOUND: Duration = Duration::from_millis(2000 + 2000 / 3);
/// Headroom for a loaded test machine (the measured times are printed).
const SLACK: Duration = Duration::from_millis(1000);
const GROUP: &str = "profile_projection";
const USERS: usize = 40;

fn env(server: &RedisServer) -> Vec<(&'static str, String)> {
    vec![
        ("REDIS_URL", server.url()),
        ("REDIS_PARTITIONS", PARTITIONS.to_string()),
        ("PROJECTOR_BLOCK_MS", "200".into()),
        ("PROJECTOR_CLAIM_IDLE_MS", "1000".into()),
        ("PROJECTOR_LEASE_MS", LEASE.as_millis().to_string()),
    ]
}

/// A projector named `name` (its consumer name, the leases' owner); its log, with the lease
/// events, goes to a file of `server`'s directory.
fn projector(server: &RedisServer, name: &str) -> (Child, std::path::PathBuf) {
    let log = server.dir().join(format!("{name}.log"));
    let mut command = Command::new(binary("projector"));
    command
        .env_remove("REDIS_CLUSTER_NODES")
        .env("AUTH", "off")
        .env("RUST_LOG", "info")
        .env("PROJECTOR_CONSUMER", name)
        .env("PROJECTOR_LISTEN", format!("127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (key, value) in env(server) {
        command.env(key, value);
    }
    (command.spawn().unwrap(), log)
}

/// The command side, to send commands through.
async fn command_side(server: &RedisServer) -> (Service, String) {
    let port = free_port();
    let mut env = env(server);
    env.push(("COMMAND_LISTEN", format!("127.0.0.1:{port}")));
    let service = Service::start("command", &[], &env);
    let url = format!("http://127.0.0.1:{port}");
    wait_healthy(&format!("{url}/healthz")).await;
    (service, url)
}

fn connection(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

/// Each partition's holder of `group`'s lease.
fn holders(conn: &mut redis::Connection, group: &str) -> Vec<Option<String>> {
    (0..PARTITIONS)
        .map(|p| {
            redis::cmd("HGET")
                .arg(Keys::lease(group, p))
                .arg("owner")
                .query(conn)
                .unwrap()
        })
        .collect()
}

/// How many partitions each instance holds.
fn shares(holders: &[Option<String>]) -> BTreeMap<String, usize> {
    let mut shares = BTreeMap::new();
    for holder in holders.iter().flatten() {
        *shares.entry(holder.clone()).or_default() += 1;
    }
    shares
}

/// Poll until `check` holds; how long it took. Fails after `within`.
async fn until(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    started.elapsed()
}

fn user_id(i: usize) -> String {
    format!("lease-{i}")
}

/// The profile's version as the projector stored it (0: none).
fn profile_version(conn: &mut redis::Connection, i: usize) -> u64 {
    let stream = StreamId::new(USER, EntityId::parse(&user_id(i)).unwrap());
    let key = Keys {
        partitions: PARTITIONS,
    }
    .read_model("profile", &stream);
    let version: Option<u64> = redis::cmd("HGET")
        .arg(key)
        .arg("version")
        .query(conn)
        .unwrap();
    version.unwrap_or(0)
}

/// Until every user's profile is at `version`: each command applied once, none lost.
async fn until_profiles_at(conn: &mut redis::Connection, version: u64) {
    until(
        &format!("every profile at version {version}"),
        Duration::from_secs(20),
        || (0..USERS).all(|i| profile_version(conn, i) == version),
    )
    .await;
}

/// Until the instances hold `expected` partitions each.
async fn until_shares(conn: &mut redis::Connection, expected: &[(&str, usize)], within: Duration) {
    let expected: BTreeMap<String, usize> = expected
        .iter()
        .map(|(name, n)| ((*name).to_owned(), *n))
        .collect();
    until(&format!("the partitions held {expected:?}"), within, || {
        shares(&holders(conn, GROUP)) == expected
    })
    .await;
}

const HALVES: &[(&str, usize)] = &[("instance-a", 4), ("instance-b", 4)];

/// One command per user: `path` after the user's id (`""`: registration), answered `status`.
async fn command_each(
    http: &reqwest::Client,
    command_url: &str,
    path: &str,
    body: impl Fn(usize) -> serde_json::Value,
    status: u16,
) {
    for i in 0..USERS {
        let url = if path.is_empty() {
            format!("{command_url}/users")
        } else {
            format!("{command_url}/users/{}/{path}", user_id(i))
        };
        let response = http.post(url).json(&body(i)).send().await.unwrap();
        assert_eq!(response.status(), status);
    }
}

async fn register_all(http: &reqwest::Client, command_url: &str) {
    let body = |i| json!({"user_id": user_id(i), "name": "Lease", "surname": "Holder"});
    command_each(http, command_url, "", body, 201).await;
}

async fn like_all(http: &reqwest::Client, command_url: &str, object: &str) {
    let body = |_| json!({"action": "like", "object": object});
    command_each(http, command_url, "activity", body, 200).await;
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two instances, each holding half of every group's partitions.
async fn two_balanced(server: &RedisServer) -> (Killed, Killed, std::path::PathBuf) {
    let (a, a_log) = projector(server, "instance-a");
    let (b, _) = projector(server, "instance-b");
    let mut conn = connection(server);
    until_shares(&mut conn, HALVES, Duration::from_secs(30)).await;
    (Killed(a), Killed(b), a_log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instances_partitions_are_taken_over_within_the_lease_time() {
    let server = RedisServer::start();
    let (_command, url) = command_side(&server).await;
    let http = reqwest::Client::new();
    let (mut a, _b, _) = two_balanced(&server).await;
    let mut conn = connection(&server);
    register_all(&http, &url).await;
    until_profiles_at(&mut conn, 1).await;

    a.0.kill().unwrap();
    let killed = Instant::now();
    until_shares(&mut conn, &[("instance-b", 8)], TAKEOVER_BOUND + SLACK).await;
    let took = killed.elapsed();
    eprintln!(
        "taken over {} ms after the kill (lease {} ms)",
        took.as_millis(),
        LEASE.as_millis()
    );

    // Instance b projects the users of a's former partitions too.
    like_all(&http, &url, "o1").await;
    until_profiles_at(&mut conn, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_instance_resumed_after_losing_its_leases_writes_nothing_and_rejoins() {
    let server = RedisServer::start();
    let (_command, url) = command_side(&server).await;
    let http = reqwest::Client::new();
    let (a, _b, a_log) = two_balanced(&server).await;
    let mut conn = connection(&server);
    register_all(&http, &url).await;

    // Stalled with work in hand, most likely: the likes are still arriving.
    like_all(&http, &url, "o1").await;
    signal(&a.0, "-STOP");
    let stopped = Instant::now();
    until_shares(&mut conn, &[("instance-b", 8)], TAKEOVER_BOUND + SLACK).await;
    eprintln!(
        "taken from the stalled instance after {} ms",
        stopped.elapsed().as_millis()
    );
    until_profiles_at(&mut conn, 2).await;

    // Woken: its first renewal finds the leases gone; whatever it had in hand is refused.
    signal(&a.0, "-CONT");
    let log = || std::fs::read_to_string(&a_log).unwrap_or_default();
    until(
        "instance-a sees its leases lost",
        Duration::from_secs(10),
        || log().contains("lease lost"),
    )
    .await;
    let applied_late = log()
        .lines()
        .filter(|l| l.contains("left to the partition's holder"))
        .count();
    eprintln!("instance-a's late writes refused: {applied_late} entries");

    // It rejoins: the partitions split again, and every later command is applied once.
    until_shares(&mut conn, HALVES, Duration::from_secs(30)).await;
    like_all(&http, &url, "o2").await;
    until_profiles_at(&mut conn, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_instance_takes_its_share() {
    let server = RedisServer::start();
    let (_command, url) = command_side(&server).await;
    let http = reqwest::Client::new();
    let (a, _) = projector(&server, "instance-a");
    let _a = Killed(a);
    let mut conn = connection(&server);
    until_shares(&mut conn, &[("instance-a", 8)], Duration::from_secs(30)).await;
    register_all(&http, &url).await;
    until_profiles_at(&mut conn, 1).await;

    let (b, b_log) = projector(&server, "instance-b");
    let _b = Killed(b);
    let joined = Instant::now();
    // Instance a gives a partition up a round after b joins, once its reads are done (the
    // block time and a second); b takes it at its next round.
    until_shares(&mut conn, HALVES, Duration::from_secs(15)).await;
    eprintln!(
        "balanced {} ms after the join",
        joined.elapsed().as_millis()
    );

    like_all(&http, &url, "o1").await;
    until_profiles_at(&mut conn, 2).await;
    // Instance b did project its share.
    let log = std::fs::read_to_string(&b_log).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("profile_projection") && l.contains("batch")),
        "{log}"
    );
}
