//! The projector runtime on a real `redis-server` started by the test: entries a dead consumer
//! left pending are claimed, and a poison entry XADDed by hand is dead-lettered while the
//! consumer goes on.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use esr_app::{CommandService, CommandSettings, ProjectorSettings, Projectors};
use esr_domain::{Profile, User};
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::UserId;
use esr_schema::{DomainEvent, UserEvent};

async fn stored_profile(
    store: &dyn esr_store::Store,
    user: &UserId,
) -> Result<Option<Profile>, esr_store::StoreError> {
    esr_app::read_model::stored_view::<Profile>(store, user).await
}
use esr_store::Store;
use esr_testkit::RedisServer;
use tokio::sync::watch;

mod common;
use common::{id, register_with_likes};

async fn store_on(server: &RedisServer, partitions: u32) -> Arc<dyn Store> {
    let mut config = RedisConfig::new(Topology::Single(server.url()));
    config.partitions = partitions;
    Arc::new(RedisStore::connect(config).await.unwrap())
}

fn settings(consumer: &str) -> ProjectorSettings {
    ProjectorSettings {
        consumer: consumer.into(),
        batch_size: 10,
        block: Duration::from_millis(50),
        claim_idle: Duration::from_millis(300),
        max_deliveries: 3,
        prune_idle: None,
        trim_every: None,
        lease: Duration::from_secs(2),
    }
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not reached in 10 s: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_left_pending_by_a_dead_consumer_are_claimed_and_nothing_is_lost() {
    let server = RedisServer::start();
    let store = store_on(&server, 4).await;
    let commands = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let users: Vec<UserId> = (0..20).map(|i| id(&format!("d{i}"))).collect();
    register_with_likes(&commands, &users, 5).await;

    let survivor = Arc::new(Projectors::standard(
        store.clone(),
        commands.clone(),
        settings("survivor"),
    ));
    survivor.create_groups().await.unwrap();
    // A consumer takes entries and dies before acking: they stay pending under its name.
    let taken = store
        .read_new(
            "profile_projection",
            "dead",
            UserEvent::CATEGORIES,
            40,
            Duration::from_millis(100),
        )
        .await
        .unwrap();
    assert!(!taken.is_empty());

    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(survivor.clone().run(shutdown));
    eventually("every pending entry claimed and acked", async || {
        let stats = store
            .group_stats("profile_projection", UserEvent::CATEGORIES)
            .await
            .unwrap();
        stats.pending == 0 && stats.lag == 0
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    for user in &users {
        let profile = stored_profile(store.as_ref(), user).await.unwrap().unwrap();
        assert_eq!(
            (profile.version, profile.activity_count),
            (6, 5),
            "{user}: every event applied once"
        );
    }
    let pending: redis::Value = server
        .query(
            redis::cmd("XPENDING")
                .arg("user_activity:{p0}")
                .arg("profile_projection"),
        )
        .unwrap();
    assert!(
        matches!(&pending, redis::Value::Array(parts) if parts.first() == Some(&redis::Value::Int(0))),
        "{pending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_entry_xadded_by_hand_is_dead_lettered_and_the_consumer_goes_on() {
    let server = RedisServer::start();
    let store = store_on(&server, 1).await;
    let commands = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.clone(),
        settings("p1"),
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));

    // A foreign producer: plain fields that look right, and a payload that is not MessagePack.
    let _: String = server
        .query(
            redis::cmd("XADD")
                .arg("user_updates:{p0}")
                .arg("*")
                .arg(&[
                    "type",
                    "registered",
                    "user_id",
                    "x",
                    "version",
                    "1",
                    "event_id",
                ])
                .arg("0193a4c0-0000-7000-8000-000000000000")
                .arg(&["occurred_at", "2020-01-01T00:00:00Z", "schema_version", "2"])
                .arg(&[
                    "correlation_id",
                    "c",
                    "causation_id",
                    "c",
                    "payload",
                    "\u{1}garbage",
                ]),
        )
        .unwrap();
    register_with_likes(&commands, &[id("after")], 2).await;

    eventually("the later user projected", async || {
        stored_profile(store.as_ref(), &id("after"))
            .await
            .unwrap()
            .is_some_and(|p| p.version == 3)
    })
    .await;
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].group, "profile_projection");
    assert!(
        letters[0].reason.contains("registered"),
        "{}",
        letters[0].reason
    );
    // Readable with a plain client, as an operator would.
    let raw: Vec<(String, Vec<(String, String)>)> = server
        .query(
            redis::cmd("XRANGE")
                .arg("dead_letters:{p0}")
                .arg("-")
                .arg("+"),
        )
        .unwrap();
    let fields: std::collections::HashMap<_, _> = raw[0].1.iter().cloned().collect();
    assert_eq!(fields.get("deliveries").map(String::as_str), Some("1"));
    assert_eq!(fields.get("field:user_id").map(String::as_str), Some("x"));
    let (_, dead) = projectors.health().await.unwrap();
    assert_eq!(dead, 1);
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

/// Bytes no writer of this store produces (field names and values that are not UTF-8) in an
/// entry between two good ones: the good ones are applied, the odd one dead-lettered alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_with_non_utf8_names_is_dead_lettered_alone() {
    let server = RedisServer::start();
    let store = store_on(&server, 1).await;
    let commands = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    register_with_likes(&commands, &[id("before")], 1).await;
    let _: String = server
        .query(
            redis::cmd("XADD")
                .arg("user_activity:{p0}")
                .arg("*")
                .arg(b"\xff\xfe".as_slice())
                .arg(b"\xc0".as_slice())
                .arg("type")
                .arg(b"\x80acted_on".as_slice()),
        )
        .unwrap();
    register_with_likes(&commands, &[id("after")], 1).await;
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.clone(),
        settings("p1"),
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));
    for user in ["before", "after"] {
        eventually(&format!("{user} projected"), async || {
            stored_profile(store.as_ref(), &id(user))
                .await
                .unwrap()
                .is_some_and(|p| p.version == 2)
        })
        .await;
    }
    // Once by each group that reads user_activity, and nothing else.
    eventually("the odd entry dead-lettered", async || {
        store.dead_letter_count().await.unwrap() >= 2
    })
    .await;
    let letters = store.dead_letters(10).await.unwrap();
    let mut groups: Vec<&str> = letters.iter().map(|l| l.group.as_str()).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["most_liked", "profile_projection"], "{letters:?}");
    assert!(
        letters.iter().all(|l| l.reason.contains("not UTF-8")),
        "{letters:?}"
    );
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

/// A Redis restarted without persistence comes back without the consumer groups: reads answer
/// NOGROUP. The projector recreates its groups and goes on, instead of failing for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_lost_with_a_restart_are_created_again() {
    let server = RedisServer::start();
    let store = store_on(&server, 1).await;
    let commands = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.clone(),
        settings("survivor"),
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.run(shutdown));
    register_with_likes(&commands, &[id("before")], 1).await;
    eventually("the first user projected", async || {
        stored_profile(store.as_ref(), &id("before"))
            .await
            .unwrap()
            .is_some()
    })
    .await;
    // What a restart without persistence leaves: nothing, groups included.
    let _: () = server.query(&redis::cmd("FLUSHALL")).unwrap();
    register_with_likes(&commands, &[id("after")], 2).await;
    eventually("the user registered after the loss projected", async || {
        stored_profile(store.as_ref(), &id("after"))
            .await
            .unwrap()
            .is_some_and(|p| p.version == 3)
    })
    .await;
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
}

/// A projector that cannot create its groups (here a key of the wrong type where a category
/// stream belongs) must not keep serving a healthy `/healthz`: the side ends with the error,
/// and the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_side_that_cannot_create_its_groups_stops_with_the_error() {
    let server = RedisServer::start();
    let store = store_on(&server, 1).await;
    let _: () = server
        .query(
            redis::cmd("SET")
                .arg("user_friends:{p0}")
                .arg("not a stream"),
        )
        .unwrap();
    let commands = Arc::new(esr_app::Commands::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_stop, shutdown) = watch::channel(false);
    let side = esr_app::sides::projector_side(
        commands,
        esr_app::social::module().into(),
        settings("doomed"),
        listener,
        esr_app::config::HttpLimits::default(),
        shutdown,
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), side)
        .await
        .expect("the projector side kept running without its groups");
    let error = ended.expect_err("the side reported success");
    assert!(
        esr_app::error_chain(error.as_ref()).contains("WRONGTYPE"),
        "{error:#}"
    );
}

/// The projector keeps a checkpoint of the profile every 1000 versions, and `?at=` folds from
/// the nearest one at or before the time asked: the same answer as folding the whole history,
/// read without the stream's first thousand entries (deleted here to prove it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_as_of_a_time_folds_from_the_nearest_checkpoint() {
    let server = RedisServer::start();
    let store = store_on(&server, 1).await;
    let commands = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    register_with_likes(&commands, &[id("long")], 1199).await;
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.clone(),
        ProjectorSettings {
            batch_size: 200,
            ..settings("p1")
        },
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));
    eventually("the profile projected", async || {
        stored_profile(store.as_ref(), &id("long"))
            .await
            .unwrap()
            .is_some_and(|p| p.version == 1200)
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();

    let queries = esr_app::QueryService::new(store.clone());
    let stream = esr_schema::StreamId::of::<UserEvent>(id("long"));
    let mut history = store.read_stream(&stream, 1, 1000).await.unwrap();
    history.extend(store.read_stream(&stream, 1001, 1000).await.unwrap());
    let time_of = |version: usize| history[version - 1].envelope.occurred_at;
    let mut expected = vec![];
    for version in [999, 1000, 1001, 1100, 1200] {
        let full = queries
            .view_as_of::<Profile>(&id("long"), time_of(version))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(full.version, version as u64);
        expected.push((version, full));
    }

    let deleted: usize = server
        .query(
            redis::cmd("XDEL")
                .arg("user:{p0}:long")
                .arg((1..=1000).map(|v| format!("{v}-0")).collect::<Vec<_>>()),
        )
        .unwrap();
    assert_eq!(deleted, 1000);
    for (version, full) in expected.into_iter().skip(1) {
        let from_checkpoint = queries
            .view_as_of::<Profile>(&id("long"), time_of(version))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(from_checkpoint, full, "as of version {version}");
        assert_eq!(from_checkpoint.name, "Duffy");
    }
}

/// With trimming on, the category streams keep only what some group still needs, while every
/// event stays in its user's stream and every profile is the fold of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_on_empties_consumed_categories_and_keeps_every_users_stream() {
    let server = RedisServer::start();
    let store = store_on(&server, 4).await;
    let commands = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let users: Vec<UserId> = (0..20).map(|i| id(&format!("t{i}"))).collect();
    register_with_likes(&commands, &users, 10).await;
    let mut trimming = settings("trimmer");
    trimming.trim_every = Some(Duration::from_millis(100));
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.clone(),
        trimming,
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));
    eventually("every category trimmed to nothing", async || {
        let mut left = 0;
        for category in UserEvent::CATEGORIES {
            left += store
                .read_category(category, esr_store::EntryId::ZERO, 1000)
                .await
                .unwrap()
                .len();
        }
        left == 0
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    for user in &users {
        let stream = esr_schema::StreamId::of::<UserEvent>(user.clone());
        let history = store.read_stream(&stream, 1, 100).await.unwrap();
        assert_eq!(history.len(), 11, "{user}: register and 10 likes, all kept");
        let mut fold = Profile::empty(user.clone());
        for stored in &history {
            fold.apply(&stored.envelope, &stored.decode().unwrap());
        }
        assert_eq!(
            stored_profile(store.as_ref(), user).await.unwrap(),
            Some(fold)
        );
    }
}

/// A projector trusts the models it wrote only for events it has not applied yet: an event
/// delivered again (after Redis lost the write, say) is checked against the store, which
/// restores the model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_restores_a_model_the_store_lost() {
    use esr_app::projector::{Handler as _, ViewProjection};
    let server = RedisServer::start();
    let store = store_on(&server, 1).await;
    let commands = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let user = id("lost");
    register_with_likes(&commands, std::slice::from_ref(&user), 2).await;
    let stream = esr_schema::StreamId::of::<UserEvent>(user.clone());
    let history = store.read_stream(&stream, 1, 100).await.unwrap();
    let projection = ViewProjection::<Profile>::new(store.clone());
    for outcome in projection
        .handle_batch(&history, &esr_store::Fence::Unfenced)
        .await
    {
        outcome.unwrap();
    }
    assert!(
        stored_profile(store.as_ref(), &user)
            .await
            .unwrap()
            .is_some()
    );
    // The write is lost (as an AOF `everysec` crash can), the entries are delivered again.
    let deleted: i64 = server
        .query(redis::cmd("DEL").arg("profile:{p0}:lost"))
        .unwrap();
    assert_eq!(deleted, 1);
    for outcome in projection
        .handle_batch(&history, &esr_store::Fence::Unfenced)
        .await
    {
        outcome.unwrap();
    }
    let mut fold = Profile::empty(user.clone());
    for stored in &history {
        fold.apply(&stored.envelope, &stored.decode().unwrap());
    }
    assert_eq!(
        stored_profile(store.as_ref(), &user).await.unwrap(),
        Some(fold)
    );
}

/// `XINFO` calls Redis has answered so far (`INFO commandstats`).
fn xinfo_calls(server: &RedisServer) -> u64 {
    command_calls(server, "xinfo")
}

/// Calls of the commands whose name starts with `command` Redis has answered so far.
fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let stats: String = server
        .query(redis::cmd("INFO").arg("commandstats"))
        .unwrap();
    let prefix = format!("cmdstat_{command}");
    stats
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Probes read every group of every partition: a flood of them must not become a flood of
/// reads. 50 `/readyz` and 50 `/healthz` within a second cost one reading each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_probes_reads_the_store_once_a_second() {
    let server = RedisServer::start();
    let store = store_on(&server, 16).await;
    let commands = Arc::new(esr_app::Commands::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let side = tokio::spawn(esr_app::sides::projector_side(
        commands,
        esr_app::social::module().into(),
        settings("prober"),
        listener,
        esr_app::config::HttpLimits::default(),
        shutdown,
    ));
    let client = reqwest::Client::new();
    let probe = |path: &'static str| {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{address}{path}"))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    };
    // Up, groups created, and one reading of each done.
    for _ in 0..100 {
        if probe("/readyz").await.is_ok_and(|s| s == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(probe("/healthz").await.unwrap(), 200);
    let before = xinfo_calls(&server);
    let started = std::time::Instant::now();
    for _ in 0..50 {
        assert_eq!(probe("/readyz").await.unwrap(), 200);
        assert_eq!(probe("/healthz").await.unwrap(), 200);
    }
    let elapsed = started.elapsed();
    let per_reading = 4 * 16; // a group per handler and category partition, at least
    let calls = xinfo_calls(&server) - before;
    // At most one fresh reading of each per second elapsed (and one more at its edge).
    let readings = 2 * (elapsed.as_secs() + 2);
    assert!(
        calls <= readings * 3 * per_reading,
        "{calls} XINFO calls for 100 probes in {elapsed:?}"
    );
    assert!(calls < 50 * per_reading, "{calls}");
    let _ = stop.send(true);
    side.await.unwrap().unwrap();
}

/// `min_version` reads waiting on one read model share its reads: 200 reads waiting a second
/// for a version that never comes cost a read a round (and a few before and after each wait),
/// not a read per waiter every few milliseconds (4,600 reads before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_waiting_on_one_model_shares_its_reads() {
    let server = RedisServer::start();
    let store = store_on(&server, 1).await;
    let mut queries = esr_app::QueryService::new(store);
    queries.max_wait = Duration::from_secs(1);
    let queries = Arc::new(queries);
    let id = esr_schema::EntityId::parse("awaited").unwrap();
    let before = command_calls(&server, "hgetall");
    let started = std::time::Instant::now();
    let waits: Vec<_> = (0..200)
        .map(|_| {
            let (queries, id) = (queries.clone(), id.clone());
            tokio::spawn(async move { queries.view_at_least::<Profile>(&id, 99).await })
        })
        .collect();
    for wait in waits {
        assert!(matches!(
            wait.await.unwrap().unwrap(),
            esr_app::query::Fresh::TimedOut(None)
        ));
    }
    let elapsed = started.elapsed();
    let reads = command_calls(&server, "hgetall") - before;
    // A round every 5 ms for the second, plus three reads before and one after each wait.
    let bound = elapsed.as_millis() as u64 / 5 + 4 * 200 + 50;
    assert!(reads <= bound, "{reads} reads for 200 waits in {elapsed:?}");
}
