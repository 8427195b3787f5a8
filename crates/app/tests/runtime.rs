//! The command and projector runtimes on the in-memory store: concurrency, snapshots,
//! redelivery, dead letters.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use esr_app::command::{CommandError, CommandMeta};
use esr_app::{CommandService, CommandSettings, ProjectorSettings, Projectors};
use esr_domain::{Profile, User};
use esr_domain::{UserCommand, UserRejection};
use esr_kernel::Aggregate;
use esr_schema::{Category, UserId};
use esr_schema::{DomainEvent, StreamId, UserEvent};

fn stream(user: &UserId) -> StreamId {
    StreamId::of::<UserEvent>(user.clone())
}

async fn stored_profile(
    store: &dyn esr_store::Store,
    user: &UserId,
) -> Result<Option<Profile>, esr_store::StoreError> {
    esr_app::read_model::stored_view::<Profile>(store, user).await
}
use esr_store::{EventStore, MemoryStore, SnapshotStore, Store, Subscriptions};
use tokio::sync::watch;

mod common;
use common::{id, like, register, register_with_likes};

fn commands(store: &MemoryStore, snapshot_every: u64) -> Arc<CommandService<User>> {
    Arc::new(CommandService::<User>::new(
        Arc::new(store.clone()),
        CommandSettings {
            snapshot_every,
            ..CommandSettings::default()
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dozens_of_concurrent_commands_on_one_user_are_all_accepted() {
    let store = MemoryStore::new();
    let service = commands(&store, 10);
    let user = id("1");
    service
        .execute(
            &user,
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let (service, user) = (service.clone(), user.clone());
            tokio::spawn(async move {
                service
                    .execute(
                        &user,
                        like(&format!("o{i}")),
                        &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
                    )
                    .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap().unwrap().version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=65).collect::<Vec<_>>());
    assert_eq!(store.stream_version(&stream(&user)).await.unwrap(), 65);
}

#[tokio::test]
async fn a_snapshot_plus_later_events_equals_a_full_replay() {
    let store = MemoryStore::new();
    let with_snapshots = commands(&store, 3);
    let user = id("1");
    with_snapshots
        .execute(
            &user,
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    for i in 0..10 {
        with_snapshots
            .execute(
                &user,
                like(&format!("o{i}")),
                &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
            )
            .await
            .unwrap();
    }
    with_snapshots
        .execute(
            &user,
            UserCommand::ChangePersonalInfo {
                name: Some("Daffy".into()),
                surname: None,
                birth_date: None,
            },
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let snapshot = store
        .load_snapshot(&stream(&user))
        .await
        .unwrap()
        .expect("a snapshot was written");
    assert_eq!(snapshot.version, 12, "snapshot at the last multiple of 3");

    let (from_snapshot, started_at) = with_snapshots.load(&user).await.unwrap();
    assert_eq!(started_at, 12);
    let events: Vec<_> = store
        .read_stream(&stream(&user), 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.decode().unwrap())
        .collect();
    assert_eq!(from_snapshot, User::from_history(&events));
    assert_eq!(from_snapshot.version, 12);
    assert_eq!(from_snapshot.name, "Daffy");
}

#[tokio::test]
async fn a_conflict_with_if_match_is_a_precondition_failure() {
    let store = MemoryStore::new();
    let service = commands(&store, 0);
    let user = id("1");
    service
        .execute(
            &user,
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let meta = CommandMeta {
        if_match: Some(0),
        ..CommandMeta::new(None, esr_kernel::Actor::Anonymous)
    };
    let err = service.execute(&user, like("x"), &meta).await.unwrap_err();
    assert!(
        matches!(
            err,
            CommandError::PreconditionFailed {
                expected: 0,
                actual: 1
            }
        ),
        "{err:?}"
    );
    let err = service
        .execute(
            &id("2"),
            like("x"),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, CommandError::Rejected(UserRejection::NotRegistered)),
        "{err:?}"
    );
}

fn quick_settings(consumer: &str) -> ProjectorSettings {
    ProjectorSettings {
        consumer: consumer.into(),
        batch_size: 7,
        block: Duration::from_millis(20),
        claim_idle: Duration::from_millis(200),
        max_deliveries: 3,
        prune_idle: None,
        trim_every: None,
        lease: Duration::from_secs(2),
    }
}

async fn wait_until<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not met in 6 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn entries_a_dead_consumer_left_are_claimed_and_applied_exactly_once() {
    let store = MemoryStore::new();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let service = commands(&store, 0);
    let users: Vec<UserId> = (0..20).map(|i| id(&format!("u{i}"))).collect();
    register_with_likes(&service, &users, 5).await;
    // A consumer takes half the backlog and dies without acking.
    let projectors = Projectors::standard(dyn_store.clone(), service.clone(), quick_settings("a"));
    projectors.create_groups().await.unwrap();
    let taken = store
        .read_new(
            "profile_projection",
            "dead",
            UserEvent::CATEGORIES,
            60,
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 60);

    // Two live projectors share the group.
    let (stop, shutdown) = watch::channel(false);
    let mut running = Vec::new();
    for consumer in ["a", "b"] {
        let p = Arc::new(Projectors::standard(
            dyn_store.clone(),
            service.clone(),
            quick_settings(consumer),
        ));
        running.push(tokio::spawn(p.run(shutdown.clone())));
    }
    wait_until(|| {
        let store = store.clone();
        async move {
            store
                .group_stats("profile_projection", UserEvent::CATEGORIES)
                .await
                .unwrap()
                == Default::default()
        }
    })
    .await;
    stop.send(true).unwrap();
    for task in running {
        task.await.unwrap().unwrap();
    }
    for user in &users {
        let profile = stored_profile(&store, user).await.unwrap().unwrap();
        assert_eq!(profile.version, 6, "{user}");
        assert_eq!(
            profile.activity_count, 5,
            "{user}: every like applied exactly once"
        );
        assert_eq!(profile.liked.len(), 5);
    }
    assert!(store.dead_letters(10).await.unwrap().is_empty());
}

/// A projector SIGKILLed with entries in hand and restarted under its stable consumer name
/// takes them back at once, not after the idle time the claims wait (a minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_under_a_stable_name_resumes_its_pending_entries_at_once() {
    let store = MemoryStore::new();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let service = commands(&store, 0);
    register_with_likes(&service, &[id("1")], 3).await;
    let profile = esr_app::projector::ViewProjection::<Profile>::new(dyn_store.clone());
    let group = esr_app::projector::Handler::group(&profile).to_owned();
    store
        .create_group(&group, UserEvent::CATEGORIES)
        .await
        .unwrap();
    // The first life of "replica-0": takes everything, dies before acking.
    let taken = store
        .read_new(
            &group,
            "replica-0",
            UserEvent::CATEGORIES,
            100,
            Duration::from_millis(20),
        )
        .await
        .unwrap();
    assert_eq!(taken.len(), 4);
    let settings = ProjectorSettings {
        claim_idle: Duration::from_secs(60),
        ..quick_settings("replica-0")
    };
    let projectors = Arc::new(Projectors::new(
        dyn_store,
        vec![Arc::new(profile)],
        settings,
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.run(shutdown));
    let started = std::time::Instant::now();
    wait_until(|| {
        let store = store.clone();
        async move {
            stored_profile(&store, &id("1"))
                .await
                .unwrap()
                .is_some_and(|p| p.version == 4)
        }
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let stats = store
        .group_stats(&group, UserEvent::CATEGORIES)
        .await
        .unwrap();
    assert_eq!(stats.pending, 0);
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
}

/// Events from a newer build (a type this build does not know, a schema version above the one
/// it knows) are not poison: they stay pending, past the delivery limit, for a build that
/// knows them, and `health` reports them; the events around them are projected.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_from_a_newer_build_stay_pending_and_are_reported() {
    let store = MemoryStore::new();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let service = commands(&store, 0);
    service
        .execute(
            &id("1"),
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let written_by_a_newer_build = |event_type: &str, schema_version: u16, version: u64| {
        esr_schema::entry::to_fields(&esr_schema::StoredEvent {
            envelope: esr_schema::EventEnvelope {
                event_id: uuid::Uuid::now_v7(),
                stream: stream(&id("9")),
                version,
                event_type: event_type.into(),
                schema_version,
                occurred_at: chrono::Utc::now(),
                correlation_id: "newer".into(),
                causation_id: "newer".into(),
                actor: None,
            },
            payload: vec![0x80],
        })
    };
    store.append_foreign(
        &esr_schema::user::USER_ACTIVITY,
        written_by_a_newer_build("teleported", 1, 1),
    );
    store.append_foreign(
        &esr_schema::user::USER_ACTIVITY,
        written_by_a_newer_build("acted_on", 9, 2),
    );
    service
        .execute(
            &id("1"),
            like("after"),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let projectors = Arc::new(Projectors::new(
        dyn_store.clone(),
        vec![Arc::new(
            esr_app::projector::ViewProjection::<Profile>::new(dyn_store),
        )],
        quick_settings("a"),
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));
    wait_until(|| {
        let store = store.clone();
        async move {
            stored_profile(&store, &id("1"))
                .await
                .unwrap()
                .is_some_and(|p| p.version == 2)
        }
    })
    .await;
    // Several claim rounds: more deliveries than max_deliveries (3).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    let (groups, dead) = projectors.health().await.unwrap();
    assert_eq!(dead, 0);
    assert_eq!(
        (groups[0].pending, groups[0].from_newer_build),
        (2, 2),
        "{groups:?}"
    );
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_foreign_poison_entry_is_dead_lettered_and_the_projector_goes_on() {
    let store = MemoryStore::new();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let service = commands(&store, 0);
    store.append_foreign(
        &esr_schema::user::USER_UPDATES,
        vec![
            ("user_id".into(), b"1".to_vec()),
            ("command".into(), b"register".to_vec()),
        ],
    );
    service
        .execute(
            &id("1"),
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let projectors = Arc::new(Projectors::standard(
        dyn_store,
        service.clone(),
        quick_settings("a"),
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));
    wait_until(|| {
        let store = store.clone();
        async move { stored_profile(&store, &id("1")).await.unwrap().is_some() }
    })
    .await;
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].group, "profile_projection");
    assert!(
        letters[0].reason.contains("type"),
        "reason names the problem: {}",
        letters[0].reason
    );
    let (groups, dead) = projectors.health().await.unwrap();
    assert_eq!(dead, 1);
    assert!(groups.iter().all(|g| g.pending == 0));
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}

/// A handler whose effect never succeeds, as when a downstream system is down for good.
struct AlwaysFailing;

#[async_trait::async_trait]
impl esr_app::projector::Handler for AlwaysFailing {
    fn group(&self) -> &str {
        "always_failing"
    }

    fn categories(&self) -> &[Category] {
        const READS: &[Category] = &[esr_schema::user::USER_UPDATES];
        READS
    }

    async fn handle(
        &self,
        _: &esr_schema::StoredEvent,
    ) -> Result<(), esr_app::projector::HandlerError> {
        Err(esr_app::projector::HandlerError::Transient(
            "downstream is down".into(),
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_failing_more_than_max_deliveries_is_dead_lettered_with_its_count() {
    let store = MemoryStore::new();
    let service = commands(&store, 0);
    service
        .execute(
            &id("1"),
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let settings = ProjectorSettings {
        claim_idle: Duration::from_millis(40),
        max_deliveries: 3,
        ..quick_settings("a")
    };
    let projectors = Arc::new(Projectors::new(
        Arc::new(store.clone()),
        vec![Arc::new(AlwaysFailing)],
        settings,
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.run(shutdown));
    wait_until(|| {
        let store = store.clone();
        async move { !store.dead_letters(10).await.unwrap().is_empty() }
    })
    .await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].deliveries, 4,
        "dead-lettered on the delivery after the 3rd failure"
    );
    // That delivery was tried too (an event from a newer build must not be given up on
    // unseen), and its failure is the reason's last part.
    assert_eq!(letters[0].reason, "failed 4 deliveries: downstream is down");
    let stats = store
        .group_stats("always_failing", &[esr_schema::user::USER_UPDATES])
        .await
        .unwrap();
    assert_eq!(stats.pending, 0, "the dead letter was acked");
}

/// A handler whose store refuses writes (memory full, no replica): not the entry's fault.
struct StoreRefusing;

#[async_trait::async_trait]
impl esr_app::projector::Handler for StoreRefusing {
    fn group(&self) -> &str {
        "store_refusing"
    }

    fn categories(&self) -> &[Category] {
        const READS: &[Category] = &[esr_schema::user::USER_UPDATES];
        READS
    }

    async fn handle(
        &self,
        _: &esr_schema::StoredEvent,
    ) -> Result<(), esr_app::projector::HandlerError> {
        Err(
            esr_store::StoreError::Unavailable(Box::new(std::io::Error::other(
                "OOM command not allowed when used memory > 'maxmemory'",
            )))
            .into(),
        )
    }
}

/// However many deliveries a store outage costs, the entry stays pending for when the store
/// is back: an outage says nothing about the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_failing_because_the_store_is_unavailable_is_never_dead_lettered() {
    let store = MemoryStore::new();
    commands(&store, 0)
        .execute(
            &id("1"),
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let settings = ProjectorSettings {
        claim_idle: Duration::from_millis(20),
        max_deliveries: 2,
        ..quick_settings("a")
    };
    let projectors = Arc::new(Projectors::new(
        Arc::new(store.clone()),
        vec![Arc::new(StoreRefusing)],
        settings,
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.run(shutdown));
    let (group, reads) = ("store_refusing", [esr_schema::user::USER_UPDATES]);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    // Still pending, and delivered past the limit of 2 (a slow machine that got no further
    // fails here rather than passing unseen).
    let pending = store
        .claim_idle(group, "probe", &reads, Duration::ZERO, 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "left pending for when the store is back");
    assert!(pending[0].deliveries > 4, "{:?}", pending[0].deliveries);
}

#[tokio::test]
async fn two_instances_with_stale_caches_still_decide_on_the_current_state() {
    let store = MemoryStore::new();
    let (a, b) = (commands(&store, 0), commands(&store, 0));
    let meta = || CommandMeta::new(None, esr_kernel::Actor::Anonymous);
    for u in ["1", "2"] {
        a.execute(&id(u), register(), &meta()).await.unwrap();
    }
    let add = || UserCommand::AddFriend {
        friend_id: id("2"),
        reciprocal: false,
    };
    let remove = || UserCommand::RemoveFriend {
        friend_id: id("2"),
        reciprocal: false,
    };
    // A remembers user 1 with friend 2; B then removes the friend behind A's back.
    a.execute(&id("1"), add(), &meta()).await.unwrap();
    b.execute(&id("1"), remove(), &meta()).await.unwrap();
    // A's cache says "already friends": A must not refuse on that, but re-read and add.
    let added = a.execute(&id("1"), add(), &meta()).await.unwrap();
    assert_eq!(added.version, 4);
    // B's cache says "not a friend" is stale too: B re-reads and removes.
    let removed = b.execute(&id("1"), remove(), &meta()).await.unwrap();
    assert_eq!(removed.version, 5);
    // A's stale cache (version 4) meets the store at 5: a conflict, a reload, an accept.
    let liked = a.execute(&id("1"), like("x"), &meta()).await.unwrap();
    assert_eq!(liked.version, 6);
    let err = a.execute(&id("1"), remove(), &meta()).await.unwrap_err();
    assert!(
        matches!(err, CommandError::Rejected(UserRejection::NotFriends(_))),
        "{err:?}"
    );
    // If-Match is judged against the store, not a stale cache.
    let if_match = CommandMeta {
        if_match: Some(6),
        ..meta()
    };
    assert_eq!(
        b.execute(&id("1"), like("y"), &if_match)
            .await
            .unwrap()
            .version,
        7
    );
    let events: Vec<_> = store.read_stream(&stream(&id("1")), 1, 100).await.unwrap();
    assert_eq!(events.len(), 7);
}

/// A adds B, B removes A, A adds B again: the policy's instance still remembers B with friend
/// A from the first mirror, so "nothing to do" came from its cache and the mirror was lost.
/// Only the store's state may say a command changes nothing.
#[tokio::test]
async fn a_no_op_is_never_answered_from_a_stale_cache() {
    let store = MemoryStore::new();
    let (commands_side, policy_side) = (commands(&store, 0), commands(&store, 0));
    let meta = || CommandMeta::new(None, esr_kernel::Actor::Anonymous);
    for u in ["a", "b"] {
        commands_side
            .execute(&id(u), register(), &meta())
            .await
            .unwrap();
    }
    let mirror_add = || UserCommand::AddFriend {
        friend_id: id("a"),
        reciprocal: true,
    };
    // The policy mirrors A's first add on B: its cache now holds B with friend A.
    policy_side
        .execute(&id("b"), mirror_add(), &meta())
        .await
        .unwrap();
    // B removes A through the command side, behind the policy's back.
    commands_side
        .execute(
            &id("b"),
            UserCommand::RemoveFriend {
                friend_id: id("a"),
                reciprocal: false,
            },
            &meta(),
        )
        .await
        .unwrap();
    // A adds B again; the policy mirrors it on B.
    let mirrored = policy_side
        .execute(&id("b"), mirror_add(), &meta())
        .await
        .unwrap();
    assert_eq!(
        (mirrored.version, mirrored.appended),
        (4, 1),
        "{mirrored:?}"
    );
    let b = commands_side.load(&id("b")).await.unwrap().0;
    assert!(b.friends.contains(&id("a")), "B lists A again");

    // The same for a PATCH asking for the values a stale cache holds: the store decides.
    let patch = |name: &str| UserCommand::ChangePersonalInfo {
        name: Some(name.into()),
        surname: None,
        birth_date: None,
    };
    policy_side
        .execute(&id("a"), patch("Daffy"), &meta())
        .await
        .unwrap();
    commands_side
        .execute(&id("a"), patch("Duffy"), &meta())
        .await
        .unwrap();
    let again = policy_side
        .execute(&id("a"), patch("Daffy"), &meta())
        .await
        .unwrap();
    assert_eq!((again.version, again.appended), (4, 1), "{again:?}");
}

/// A batch holding only a user's later events (the earlier ones pending elsewhere) is folded
/// over the user's stream; handing the same batch again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_with_a_gap_is_filled_from_the_users_stream_and_applied_once() {
    use esr_app::projector::{Handler, ViewProjection};
    let store = MemoryStore::new();
    let service = commands(&store, 0);
    let (gappy, plain) = (id("gappy"), id("plain"));
    register_with_likes(&service, &[gappy.clone(), plain.clone()], 5).await;
    let decoded = |events: Vec<esr_schema::StoredEvent>| events;
    // gappy: versions 4..6 only; plain: all six, out of order.
    let mut batch = decoded(store.read_stream(&stream(&gappy), 4, 10).await.unwrap());
    let mut plain_events = decoded(store.read_stream(&stream(&plain), 1, 10).await.unwrap());
    plain_events.reverse();
    batch.extend(plain_events);
    let projection = ViewProjection::<Profile>::new(Arc::new(store.clone()));
    for round in 0..2 {
        let outcomes = projection
            .handle_batch(&batch, &esr_store::Fence::Unfenced)
            .await;
        assert!(
            outcomes.iter().all(Result::is_ok),
            "round {round}: {outcomes:?}"
        );
        for user in [&gappy, &plain] {
            let profile = stored_profile(&store, user).await.unwrap().unwrap();
            assert_eq!(
                (profile.version, profile.activity_count, profile.liked.len()),
                (6, 5, 5),
                "round {round}, {user}"
            );
            assert_eq!(
                profile.name, "Duffy",
                "the registration came from the stream"
            );
        }
    }
}

/// Stopping in the middle of a backlog (full batches, so each read runs ahead of the batch in
/// hand): the projector finishes what it read, acks it, and leaves nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stopping_mid_backlog_leaves_nothing_pending() {
    let store = MemoryStore::new();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let service = commands(&store, 0);
    let users: Vec<UserId> = (0..40).map(|u| id(&format!("s{u}"))).collect();
    register_with_likes(&service, &users, 49).await;
    let projectors = Arc::new(Projectors::standard(
        dyn_store.clone(),
        service.clone(),
        quick_settings("stopper"),
    ));
    projectors.create_groups().await.unwrap();
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.run(shutdown));
    // Stop as soon as some of the 2,000 entries are done.
    for _ in 0..5000 {
        let stats = store
            .group_stats("profile_projection", UserEvent::CATEGORIES)
            .await
            .unwrap();
        if stats.lag < 2000 {
            break;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
    let stats = store
        .group_stats("profile_projection", UserEvent::CATEGORIES)
        .await
        .unwrap();
    assert_eq!(stats.pending, 0, "{stats:?}");
    assert!(
        stats.lag > 0,
        "stopped before the end of the backlog: {stats:?}"
    );
    // Whatever was delivered is in the profiles: the events delivered add up to the versions
    // the profiles show.
    let mut applied = 0;
    for user in &users {
        if let Some(profile) = stored_profile(&store, user).await.unwrap() {
            applied += profile.version;
        }
    }
    assert_eq!(applied, 2000 - stats.lag, "{stats:?}");
}

/// Each projection process keeps the models it wrote last and writes over them without reading
/// them back; another process writing the same stream in between must cost a conflict and a
/// reload, never a lost or doubled event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_taking_turns_on_one_stream_both_fold_it_right() {
    use esr_app::projector::{Handler as _, ViewProjection};
    let store = MemoryStore::new();
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let service = commands(&store, 0);
    let user = id("turns");
    service
        .execute(
            &user,
            register(),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    for object in ["a", "b", "c", "d", "e"] {
        service
            .execute(
                &user,
                like(object),
                &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
            )
            .await
            .unwrap();
    }
    let history = store.read_stream(&stream(&user), 1, 100).await.unwrap();
    let (first, second) = (
        ViewProjection::<Profile>::new(shared.clone()),
        ViewProjection::<Profile>::new(shared.clone()),
    );
    // First takes 1-3 (and keeps version 3), second 4-5, first 6: its 3 is stale by then.
    for (projection, events) in [
        (&first, &history[0..3]),
        (&second, &history[3..5]),
        (&first, &history[5..6]),
    ] {
        for outcome in projection
            .handle_batch(events, &esr_store::Fence::Unfenced)
            .await
        {
            outcome.unwrap();
        }
    }
    let mut fold = Profile::empty(user.clone());
    for stored in &history {
        fold.apply(&stored.envelope, &stored.decode().unwrap());
    }
    assert_eq!(stored_profile(&store, &user).await.unwrap(), Some(fold));
}

/// Two handlers in one consumer group would take each other's entries and ack them unhandled:
/// the projector refuses to start instead.
#[tokio::test]
async fn two_handlers_with_one_group_are_refused_at_start() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let twice: Vec<Arc<dyn esr_app::projector::Handler>> = vec![
        Arc::new(esr_app::projector::ViewProjection::<Profile>::new(
            store.clone(),
        )),
        Arc::new(esr_app::projector::ViewProjection::<Profile>::new(
            store.clone(),
        )),
    ];
    let projectors = Arc::new(Projectors::new(store, twice, quick_settings("doubled")));
    let (_stop, shutdown) = watch::channel(false);
    let ended = tokio::time::timeout(Duration::from_secs(5), projectors.run(shutdown))
        .await
        .expect("the projector ran with two handlers in one group");
    let error = ended.expect_err("the projector reported success");
    assert!(
        error.to_string().contains("share the consumer group"),
        "{error:#}"
    );
}

/// During a rolling deploy an older projector meets a friendship change whose initiator's
/// stream already holds an event of a type only a newer build knows. It cannot mirror the
/// friendship yet, and must not dead-letter it (that would leave it one-sided for good): the
/// entry stays pending for a build that knows the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_friendship_whose_initiator_has_an_event_from_a_newer_build_stays_pending() {
    use esr_store::{AppendRequest, ExpectedVersion, NewEvent};
    let store = MemoryStore::new();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    let service = commands(&store, 0);
    let meta = || CommandMeta::new(None, esr_kernel::Actor::Anonymous);
    for user in ["1", "2"] {
        service
            .execute(&id(user), register(), &meta())
            .await
            .unwrap();
    }
    // A newer build recorded an event of 1 this build does not know, then 1 befriended 2.
    let encoded = esr_schema::codec::encode(&UserEvent::FriendAdded(esr_schema::FriendAdded {
        friend_id: id("2"),
        reciprocal: false,
    }))
    .unwrap();
    let new_event = |event_type: &str, payload: Vec<u8>| NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: event_type.into(),
        schema_version: 1,
        category: esr_schema::user::USER_FRIENDS,
        occurred_at: chrono::Utc::now(),
        correlation_id: "newer".into(),
        causation_id: "newer".into(),
        actor: Some("user:1".into()),
        payload,
    };
    store
        .append(AppendRequest {
            stream: stream(&id("1")),
            expected: ExpectedVersion::Exactly(1),
            events: vec![
                new_event("friend_muted", vec![0x80]),
                new_event(encoded.event_type, encoded.payload),
            ],
            idempotency: None,
        })
        .await
        .unwrap();
    let policy = esr_app::social::FriendshipPolicy::new(service.clone());
    let projectors = Arc::new(Projectors::new(
        dyn_store,
        vec![Arc::new(policy)],
        quick_settings("older-build"),
    ));
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));
    // Past the delivery limit (3) many times over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (groups, dead_letters) = projectors.health().await.unwrap();
    assert_eq!(dead_letters, 0, "{groups:?}");
    let policy_group = &groups[0];
    assert!(
        policy_group.pending > 0 && policy_group.from_newer_build > 0,
        "{groups:?}"
    );
    let _ = stop.send(true);
    running.await.unwrap().unwrap();
}
