//! Faults and batches against real servers started by the test: a Redis crash in the middle of
//! a run, the script cache emptied by a restart, and batched appends.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::{EntityId, StreamId};

fn user(id: &str) -> StreamId {
    StreamId::new(esr_schema::user::USER, EntityId::parse(id).unwrap())
}
use esr_store::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, ReadModel, ReadModelWrite, ReadModels,
    StoreError,
};
use esr_testkit::RedisServer;
use uuid::Uuid;

fn kick() -> NewEvent {
    esr_store::contract::kick("Bugs")
}

fn append_to(user: &StreamId, expected: ExpectedVersion) -> AppendRequest {
    AppendRequest {
        stream: user.clone(),
        expected,
        events: vec![kick()],
        idempotency: None,
    }
}

async fn connect(server: &RedisServer) -> RedisStore {
    RedisStore::connect(RedisConfig::new(Topology::Single(server.url())))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_mid_run_loses_no_acknowledged_event_and_appends_resume() {
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = connect(&server).await;
    let users: Vec<StreamId> = (0..8).map(|i| user(&format!("u{i}"))).collect();
    let mut acknowledged: BTreeMap<StreamId, Vec<(u64, Uuid)>> = BTreeMap::new();
    let run_id = |server: &RedisServer| -> String {
        let info: String = server.query(redis::cmd("INFO").arg("server")).unwrap();
        info.lines()
            .find(|l| l.starts_with("run_id:"))
            .unwrap_or_default()
            .to_owned()
    };
    let first_run = run_id(&server);
    let (mut failures, mut crashed) = (0, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0usize;
    while acknowledged.values().map(Vec::len).sum::<usize>() < 400 {
        assert!(
            Instant::now() < deadline,
            "appends did not resume after the restart"
        );
        if !crashed && i == 150 {
            // SIGKILL: nothing gets a chance to flush; only what was fsynced survives.
            server.crash_and_restart();
            crashed = true;
        }
        let user = &users[i % users.len()];
        let request = append_to(user, ExpectedVersion::Any);
        let event_id = request.events[0].event_id;
        match store.append(request).await {
            Ok(outcome) => acknowledged
                .entry(user.clone())
                .or_default()
                .push((outcome.version, event_id)),
            Err(StoreError::Unavailable(_)) => {
                failures += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(other) => panic!("unexpected error: {other}"),
        }
        i += 1;
    }
    assert!(crashed);
    assert_ne!(
        run_id(&server),
        first_run,
        "a new server process answered after the crash"
    );
    for (user, acked) in &acknowledged {
        let stored = store.read_stream(user, 1, 10_000).await.unwrap();
        let versions: Vec<u64> = stored.iter().map(|e| e.envelope.version).collect();
        assert_eq!(
            versions,
            (1..=stored.len() as u64).collect::<Vec<_>>(),
            "{user}: versions without gaps"
        );
        for (version, event_id) in acked {
            let found = stored.iter().find(|e| e.envelope.event_id == *event_id);
            assert_eq!(
                found.map(|e| e.envelope.version),
                Some(*version),
                "{user}: acknowledged event {event_id} kept"
            );
        }
        assert_eq!(
            store.stream_version(user).await.unwrap(),
            stored.len() as u64
        );
    }
    eprintln!("appends failed while Redis was down: {failures}");
}

#[tokio::test]
async fn appends_survive_a_script_cache_flush() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let user = user("flushed");
    store
        .append(append_to(&user, ExpectedVersion::NoStream))
        .await
        .unwrap();
    // What a restart does to the script cache: the next EVALSHA gets NOSCRIPT.
    let _: String = server.query(redis::cmd("SCRIPT").arg("FLUSH")).unwrap();
    let outcome = store
        .append(append_to(&user, ExpectedVersion::Exactly(1)))
        .await
        .unwrap();
    assert_eq!(outcome.version, 2);
    let _: String = server.query(redis::cmd("SCRIPT").arg("FLUSH")).unwrap();
    let batch = store
        .append_batch(vec![append_to(&user, ExpectedVersion::Exactly(2))])
        .await
        .unwrap();
    assert_eq!(batch[0].as_ref().map(|o| o.version).ok(), Some(3));

    // The read-model script too, single and batched.
    let model = |version: u64| ReadModel {
        version,
        fields: [("name".to_owned(), format!("v{version}"))].into(),
    };
    let _: String = server.query(redis::cmd("SCRIPT").arg("FLUSH")).unwrap();
    store
        .put_read_model("profile", &user, 0, &model(1))
        .await
        .unwrap();
    let _: String = server.query(redis::cmd("SCRIPT").arg("FLUSH")).unwrap();
    let written = store
        .put_read_models(
            "profile",
            vec![ReadModelWrite {
                stream: user.clone(),
                expected: 1,
                model: model(2),
            }],
            &esr_store::Fence::Unfenced,
        )
        .await
        .unwrap();
    assert!(written[0].is_ok(), "{written:?}");
    let stored = store.get_read_model("profile", &user).await.unwrap();
    assert_eq!(stored.map(|m| m.version), Some(2));
}

#[tokio::test]
async fn a_batch_appends_for_many_users_and_reports_each_result() {
    let server = RedisServer::start();
    let mut config = RedisConfig::new(Topology::Single(server.url()));
    config.partitions = 4;
    let store = RedisStore::connect(config).await.unwrap();
    let users: Vec<StreamId> = (0..50).map(|i| user(&format!("b{i}"))).collect();
    let first = store
        .append_batch(
            users
                .iter()
                .map(|u| append_to(u, ExpectedVersion::NoStream))
                .collect(),
        )
        .await
        .unwrap();
    assert!(
        first
            .iter()
            .all(|r| r.as_ref().is_ok_and(|o| o.version == 1))
    );
    // A stale expectation fails alone; the rest of the batch goes through.
    let mut second: Vec<AppendRequest> = users
        .iter()
        .map(|u| append_to(u, ExpectedVersion::Exactly(1)))
        .collect();
    second[7].expected = ExpectedVersion::NoStream;
    let outcomes = store.append_batch(second).await.unwrap();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i == 7 {
            assert!(
                matches!(outcome, Err(StoreError::Conflict { actual: 1, .. })),
                "{outcome:?}"
            );
        } else {
            assert_eq!(
                outcome.as_ref().map(|o| o.version).ok(),
                Some(2),
                "user {i}"
            );
        }
    }
    assert_eq!(store.stream_version(&users[7]).await.unwrap(), 1);
}

/// More events than one script call takes, users repeated across calls, multi-event requests,
/// an invalid request and an idempotency key in the middle: each request gets its own outcome.
#[tokio::test]
async fn a_large_batch_spanning_several_script_calls_keeps_each_requests_outcome() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let users: Vec<StreamId> = (0..40).map(|i| user(&format!("big{i}"))).collect();
    // Round r appends 3 events to every user, expecting version 3 * r: 120 requests, 360 events.
    let mut batch = vec![];
    for round in 0..3u64 {
        for user in &users {
            let mut request = append_to(user, ExpectedVersion::Exactly(3 * round));
            if round == 0 {
                request.expected = ExpectedVersion::NoStream;
            }
            request.events = vec![kick(), kick(), kick()];
            batch.push(request);
        }
    }
    batch[45].events.clear();
    batch[50].idempotency = Some(esr_store::Idempotency {
        key: "once".into(),
        ttl: Duration::from_secs(60),
        fingerprint: "kick Bugs".into(),
    });
    let mut replay = batch[50].clone();
    replay.expected = ExpectedVersion::Any;
    batch.push(replay);
    let outcomes = store.append_batch(batch).await.unwrap();
    assert_eq!(outcomes.len(), 121);
    assert!(matches!(outcomes[45], Err(StoreError::Invalid(_))));
    // Request 45 was user 5's second round: its third round then expects 6 but finds 3.
    assert!(matches!(
        outcomes[85],
        Err(StoreError::Conflict { actual: 3, .. })
    ));
    for (i, outcome) in outcomes.iter().enumerate().take(120) {
        if i == 45 || i == 85 {
            continue;
        }
        let round = i as u64 / 40;
        assert_eq!(
            outcome.as_ref().map(|o| (o.version, o.duplicate)).ok(),
            Some((3 * round + 3, false)),
            "request {i}"
        );
    }
    assert_eq!(
        outcomes[120]
            .as_ref()
            .map(|o| (o.version, o.duplicate))
            .ok(),
        Some((6, true))
    );
    for (i, user) in users.iter().enumerate() {
        let expected = if i == 5 { 3 } else { 9 };
        assert_eq!(
            store.stream_version(user).await.unwrap(),
            expected,
            "user {i}"
        );
        let versions: Vec<u64> = store
            .read_stream(user, 1, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.envelope.version)
            .collect();
        assert_eq!(versions, (1..=expected).collect::<Vec<_>>(), "user {i}");
    }
}

#[tokio::test]
async fn acl_user_and_password_come_from_the_url_and_never_show_in_errors() {
    let server =
        RedisServer::start_with(&["--user", "app", "on", ">s3cret-pw", "~*", "&*", "+@all"]);
    let with = |credentials: &str| {
        Topology::Single(format!(
            "redis://{credentials}@127.0.0.1:{}/",
            server.port()
        ))
    };
    let store = RedisStore::connect(RedisConfig::new(with("app:s3cret-pw")))
        .await
        .unwrap();
    let user = user("acl");
    assert_eq!(
        store
            .append(append_to(&user, ExpectedVersion::NoStream))
            .await
            .unwrap()
            .version,
        1
    );
    let clients: String = server.query(redis::cmd("CLIENT").arg("LIST")).unwrap();
    assert!(
        clients.contains("user=app"),
        "connected as the ACL user: {clients}"
    );

    let refused = RedisStore::connect(RedisConfig::new(with("app:wrong-pw"))).await;
    let error = refused.err().expect("a wrong password is refused");
    let shown = format!("{error} {error:?}");
    assert!(
        !shown.contains("wrong-pw") && !shown.contains("s3cret-pw"),
        "{shown}"
    );
}

#[tokio::test]
async fn a_pending_entry_deleted_from_the_stream_leaves_the_pending_list_when_claimed() {
    use esr_store::Subscriptions;
    let server = RedisServer::start();
    let store = connect(&server).await;
    let user = user("deleted");
    for v in 0..3 {
        store
            .append(append_to(&user, ExpectedVersion::Exactly(v)))
            .await
            .unwrap();
    }
    let cats = [esr_schema::user::USER_ACTIVITY];
    store.create_group("g", &cats).await.unwrap();
    let taken = store
        .read_new("g", "dead", &cats, 10, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(taken.len(), 3);
    let deleted = &taken[1].entry;
    let _: i64 = server
        .query(
            redis::cmd("XDEL")
                .arg(&deleted.stream)
                .arg(deleted.id.to_string()),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    let claimed = store
        .claim_idle("g", "alive", &cats, Duration::from_millis(10), 10)
        .await
        .unwrap();
    let ids: Vec<_> = claimed.iter().map(|d| d.entry.id).collect();
    assert_eq!(
        ids,
        [taken[0].entry.id, taken[2].entry.id],
        "the deleted entry is not handed out"
    );
    assert!(claimed.iter().all(|d| d.deliveries == 2));
    assert_eq!(
        store.group_stats("g", &cats).await.unwrap().pending,
        2,
        "and no longer pending"
    );
}

/// The partition count is stored with the data on first start; a process configured with
/// another refuses to start (its streams would move and their histories split), and says both.
#[tokio::test]
async fn a_store_refuses_a_partition_count_other_than_the_one_it_was_created_with() {
    let server = RedisServer::start();
    let with = |partitions: u32| {
        let mut config = RedisConfig::new(Topology::Single(server.url()));
        config.partitions = partitions;
        config
    };
    let store = RedisStore::connect(with(1)).await.unwrap();
    for i in 0..6 {
        store
            .append(append_to(
                &user(&format!("u{i}")),
                ExpectedVersion::NoStream,
            ))
            .await
            .unwrap();
    }
    let refused = RedisStore::connect(with(4)).await;
    let Err(error) = refused else {
        panic!("4 partitions accepted over a store made with 1");
    };
    let message = error.to_string();
    assert!(
        message.contains("created with 1 partition") && message.contains("configured with 4"),
        "{message}"
    );
    // The count it was created with is still welcome, and every user is where it was.
    let again = RedisStore::connect(with(1)).await.unwrap();
    for i in 0..6 {
        assert_eq!(
            again.stream_version(&user(&format!("u{i}"))).await.unwrap(),
            1
        );
    }
}

/// Conditions the server says are passing (memory full, too few replicas) are `Unavailable`
/// (HTTP 503, entries left pending), never `Corrupt`; writes go through once they pass.
#[tokio::test]
async fn transient_server_conditions_are_unavailable_not_corrupt() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let who = user("oom");
    store
        .append(append_to(&who, ExpectedVersion::NoStream))
        .await
        .unwrap();
    let set = |name: &str, value: &str| {
        let _: () = server
            .query(redis::cmd("CONFIG").arg("SET").arg(name).arg(value))
            .unwrap();
    };
    for (name, full, cleared) in [("maxmemory", "1", "0"), ("min-replicas-to-write", "1", "0")] {
        set(name, full);
        let refused = store.append(append_to(&who, ExpectedVersion::Any)).await;
        assert!(
            matches!(refused, Err(StoreError::Unavailable(_))),
            "{name}: {refused:?}"
        );
        set(name, cleared);
        store
            .append(append_to(&who, ExpectedVersion::Any))
            .await
            .unwrap_or_else(|e| panic!("{name} cleared: {e}"));
    }
    assert_eq!(store.stream_version(&who).await.unwrap(), 3);
}

/// What the store says at start about a server set up to lose events: eviction of keys, and
/// no persistence at all. A server set up for an event log gets no warning.
#[tokio::test]
async fn startup_warns_of_eviction_and_missing_persistence() {
    let lossy = RedisServer::start_with(&["--maxmemory-policy", "allkeys-lru"]);
    let store = connect(&lossy).await;
    let warnings = store.warnings().join("\n");
    assert!(
        warnings.contains("maxmemory-policy is allkeys-lru"),
        "{warnings}"
    );
    assert!(warnings.contains("persistence is off"), "{warnings}");

    let durable = RedisServer::start_with(&["--appendonly", "yes"]);
    let store = connect(&durable).await;
    assert!(store.warnings().is_empty(), "{:?}", store.warnings());
}

/// Keys a write would fail on (another type under a category key, an entry past the counter
/// that this store did not write) refuse the request, naming the key, with nothing of it
/// written (the stream checked before the first write, a category key's type found by its
/// write failing and the request's writes taken back); the other requests of the batch are
/// written, and once the key is mended the stream takes appends again. A lost counter is taken
/// up again from the stream.
#[tokio::test]
async fn a_request_a_write_would_fail_on_is_refused_with_nothing_written() {
    let server = RedisServer::start();
    let store = connect(&server).await;
    let category_count = || -> usize {
        server
            .query(redis::cmd("XLEN").arg("user_activity:{p0}"))
            .unwrap()
    };

    // Another type under the category key: the stream is not written either.
    let () = server
        .query(redis::cmd("SET").arg("user_activity:{p0}").arg("x"))
        .unwrap();
    let first = user("wrongtype");
    let refused = store
        .append(append_to(&first, ExpectedVersion::NoStream))
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Corrupt { what, .. } if what == "user_activity:{p0}"),
        "{refused:?}"
    );
    assert_eq!(store.stream_version(&first).await.unwrap(), 0);
    assert!(store.read_stream(&first, 1, 10).await.unwrap().is_empty());
    let () = server
        .query(redis::cmd("DEL").arg("user_activity:{p0}"))
        .unwrap();
    let mended = store
        .append(append_to(&first, ExpectedVersion::NoStream))
        .await
        .unwrap();
    assert_eq!(mended.version, 1);

    // A stream with history, and a request whose second event's category key holds another
    // type: its first event's writes are taken back, and the stream appends on after.
    let () = server
        .query(redis::cmd("SET").arg("user_updates:{p0}").arg("x"))
        .unwrap();
    let mut updated = kick();
    updated.category = esr_schema::user::USER_UPDATES;
    let activity_before = category_count();
    let refused = store
        .append(AppendRequest {
            events: vec![kick(), updated],
            ..append_to(&first, ExpectedVersion::Exactly(1))
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Corrupt { what, .. } if what == "user_updates:{p0}"),
        "{refused:?}"
    );
    assert_eq!(store.stream_version(&first).await.unwrap(), 1);
    assert_eq!(store.read_stream(&first, 1, 10).await.unwrap().len(), 1);
    assert_eq!(
        category_count(),
        activity_before,
        "the first event's category entry"
    );
    let () = server
        .query(redis::cmd("DEL").arg("user_updates:{p0}"))
        .unwrap();
    let mended = store
        .append(AppendRequest {
            events: vec![kick(), kick()],
            ..append_to(&first, ExpectedVersion::Exactly(1))
        })
        .await
        .unwrap();
    assert_eq!(mended.version, 3);
    assert_eq!(store.read_stream(&first, 1, 10).await.unwrap().len(), 3);

    // An entry someone else added to a stream: that request is refused, its batch neighbours
    // are written once.
    let (stray, good) = (user("stray"), user("good"));
    let _: String = server
        .query(
            redis::cmd("XADD")
                .arg("user:{p0}:stray")
                .arg("*")
                .arg("who")
                .arg("me"),
        )
        .unwrap();
    let before = category_count();
    let outcomes = store
        .append_batch(vec![
            append_to(&good, ExpectedVersion::NoStream),
            append_to(&stray, ExpectedVersion::NoStream),
            append_to(&good, ExpectedVersion::Exactly(1)),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes[0].as_ref().map(|o| o.version).ok(), Some(1));
    assert!(
        matches!(&outcomes[1], Err(StoreError::Corrupt { what, .. }) if what == "user:{p0}:stray"),
        "{:?}",
        outcomes[1]
    );
    assert_eq!(outcomes[2].as_ref().map(|o| o.version).ok(), Some(2));
    assert_eq!(category_count(), before + 2);
    assert_eq!(store.stream_version(&good).await.unwrap(), 2);

    // A counter lost (evicted or deleted) while its stream stays: taken up from the stream.
    let () = server
        .query(redis::cmd("DEL").arg("version:{p0}:good"))
        .unwrap();
    let resumed = store
        .append(append_to(&good, ExpectedVersion::Exactly(2)))
        .await
        .unwrap();
    assert_eq!(resumed.version, 3);
    assert_eq!(store.read_stream(&good, 1, 10).await.unwrap().len(), 3);
}

/// With `WAIT 1`, an append no replica acknowledged in time is answered unavailable (it is on
/// the primary only); sent again once a replica is in sync, it is answered as the duplicate it
/// is, and later appends go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_no_replica_acknowledged_is_unavailable_until_one_does() {
    // A replica that attaches is synced at once, not after the default 5 s delay.
    let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
    let mut config = RedisConfig::new(Topology::Single(primary.url()));
    config.wait_for_replicas = Some(esr_redis::WaitForReplicas {
        replicas: 1,
        timeout: Duration::from_millis(500),
    });
    let store = RedisStore::connect(config).await.unwrap();
    let (alone, batched) = (user("w1"), user("w2"));
    let first = append_to(&alone, ExpectedVersion::NoStream);
    let refused = store.append(first.clone()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    assert!(
        refused
            .to_string()
            .contains("acknowledged by 0 of 1 replicas"),
        "{refused}"
    );
    let outcomes = store
        .append_batch(vec![append_to(&batched, ExpectedVersion::NoStream)])
        .await
        .unwrap();
    assert!(
        matches!(outcomes[0], Err(StoreError::Unavailable(_))),
        "{outcomes:?}"
    );

    let _replica =
        RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port().to_string()]);
    primary.wait_for_replicas(1);
    let again = store.append(first).await.unwrap();
    assert_eq!((again.version, again.duplicate), (1, true));
    let next = store
        .append(append_to(&alone, ExpectedVersion::Exactly(1)))
        .await
        .unwrap();
    assert_eq!((next.version, next.duplicate), (2, false));
}

/// A group's stats once the store answers again after a restart (the first call may meet the
/// old connection's end).
async fn stats_once_back(
    store: &RedisStore,
    group: &str,
    categories: &[esr_schema::Category],
) -> esr_store::GroupStats {
    use esr_store::Subscriptions;
    let mut stats = store.group_stats(group, categories).await;
    for _ in 0..50 {
        if stats.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = store.group_stats(group, categories).await;
    }
    stats.unwrap()
}

/// Redis forgets how many entries a group has read when it restarts from its append-only
/// file (`XINFO GROUPS` then says the lag is unknown), and its count can drift after that: the
/// lag the store reports comes from the entry ids, so it is right either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_lag_survives_a_restart() {
    use esr_store::Subscriptions;
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = connect(&server).await;
    let activity = [esr_schema::user::USER_ACTIVITY];
    store.create_group("lagging", &activity).await.unwrap();
    let who = user("lag");
    for _ in 0..10 {
        store
            .append(append_to(&who, ExpectedVersion::Any))
            .await
            .unwrap();
    }
    let read = store
        .read_new("lagging", "c1", &activity, 4, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(read.len(), 4);
    store
        .ack(
            "lagging",
            &read.iter().map(|d| d.entry.clone()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();

    server.crash_and_restart();
    let stats = stats_once_back(&store, "lagging", &activity).await;
    assert_eq!((stats.lag, stats.pending), (6, 0));
    assert!(!stats.lag_is_lower_bound, "6 entries are counted exactly");
    let rest = store
        .read_new("lagging", "c1", &activity, 100, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(rest.len(), 6);
    store
        .ack(
            "lagging",
            &rest.iter().map(|d| d.entry.clone()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let stats = store.group_stats("lagging", &activity).await.unwrap();
    assert_eq!((stats.lag, stats.pending), (0, 0));
}

/// Past what the store counts one by one after such a restart, the lag it reports is marked a
/// lower bound (it read as an exact 1000 while tens of thousands were unread, and the soak
/// took a group catching up for a stalled one), until the group has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lag_too_long_to_count_after_a_restart_is_a_lower_bound() {
    use esr_store::Subscriptions;
    let mut server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let store = connect(&server).await;
    let activity = [esr_schema::user::USER_ACTIVITY];
    store.create_group("behind", &activity).await.unwrap();
    let who = user("behind");
    for _ in 0..1_200 {
        store
            .append(append_to(&who, ExpectedVersion::Any))
            .await
            .unwrap();
    }
    let first = store
        .read_new("behind", "c1", &activity, 10, Duration::from_millis(10))
        .await
        .unwrap();
    let entries: Vec<_> = first.iter().map(|d| d.entry.clone()).collect();
    store.ack("behind", &entries).await.unwrap();
    let stats = store.group_stats("behind", &activity).await.unwrap();
    assert_eq!((stats.lag, stats.lag_is_lower_bound), (1_190, false));

    server.crash_and_restart();
    let stats = stats_once_back(&store, "behind", &activity).await;
    assert!(stats.lag >= 1_000, "{stats:?}");
    assert!(stats.lag_is_lower_bound, "{stats:?}");

    let mut read = first.len();
    while read < 1_200 {
        let batch = store
            .read_new("behind", "c1", &activity, 500, Duration::from_millis(10))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "only {read} of 1200 delivered");
        read += batch.len();
        let entries: Vec<_> = batch.iter().map(|d| d.entry.clone()).collect();
        store.ack("behind", &entries).await.unwrap();
    }
    let stats = store.group_stats("behind", &activity).await.unwrap();
    assert_eq!(
        (stats.lag, stats.pending, stats.lag_is_lower_bound),
        (0, 0, false)
    );
}
