//! `esr` against a real redis-server: each subcommand as an operator runs it.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esr_app::command::CommandMeta;
use esr_app::{CommandSettings, Commands, ProjectorSettings, Projectors};
use esr_domain::UserCommand;
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::{Action, DomainEvent as _, UserId};
use esr_store::{Store, Subscriptions};
use esr_testkit::RedisServer;
use serde_json::Value;
use tokio::sync::watch;

fn esr(server: &RedisServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(args)
        .env("REDIS_URL", server.url())
        .env_remove("REDIS_CLUSTER_NODES")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}{}",
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

async fn connect(server: &RedisServer) -> RedisStore {
    RedisStore::connect(RedisConfig::new(Topology::Single(server.url())))
        .await
        .unwrap()
}

/// A 3-master Cluster, its node URLs and a store on it.
async fn cluster_store() -> (esr_testkit::RedisCluster, Vec<String>, RedisStore) {
    let cluster = esr_testkit::RedisCluster::start(3);
    let nodes = cluster.urls();
    let redis = RedisStore::connect(RedisConfig::new(Topology::Cluster(nodes.clone())))
        .await
        .unwrap();
    (cluster, nodes, redis)
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

/// Users `a` and `b`, friends, `a` liking three objects.
async fn some_history(store: &Arc<dyn Store>) -> Arc<Commands> {
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let meta = CommandMeta::new(None, esr_kernel::Actor::Anonymous);
    for id in ["a", "b"] {
        let register = UserCommand::Register {
            name: "Duffy".into(),
            surname: "Duck".into(),
            birth_date: None,
        };
        commands
            .of::<esr_domain::User>()
            .execute(&user(id), register, &meta)
            .await
            .unwrap();
    }
    for object in ["o1", "o2", "o3"] {
        let like = UserCommand::Act {
            action: Action::Like,
            object: object.into(),
            text: None,
        };
        commands
            .of::<esr_domain::User>()
            .execute(&user("a"), like, &meta)
            .await
            .unwrap();
    }
    let friend = UserCommand::AddFriend {
        friend_id: user("b"),
        reciprocal: false,
    };
    commands
        .of::<esr_domain::User>()
        .execute(&user("a"), friend, &meta)
        .await
        .unwrap();
    commands
}

/// The standard projectors under `consumer`, until the returned sender says stop.
fn run_projectors(
    store: &Arc<dyn Store>,
    commands: &Commands,
    consumer: &str,
) -> watch::Sender<bool> {
    let settings = ProjectorSettings {
        consumer: consumer.into(),
        block: Duration::from_millis(50),
        claim_idle: Duration::from_millis(200),
        max_deliveries: 1,
        ..ProjectorSettings::default()
    };
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.of::<esr_domain::User>(),
        settings,
    ));
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(projectors.run(shutdown));
    stop
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_names_each_problem_and_passes_a_sound_setup() {
    // No persistence (the test server saves nothing), no groups yet: two kinds of problem.
    let bare = RedisServer::start();
    let output = esr(&bare, &["check"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    let text = stdout(&output);
    assert!(text.contains("ok       Redis 7."), "{text}");
    assert!(
        text.contains("ok       partitions: 1 stored, 1 configured"),
        "{text}"
    );
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("problem")).collect();
    assert!(problems.iter().any(|l| l.contains("persist")), "{text}");
    assert!(
        problems
            .iter()
            .any(|l| l.contains("group profile_projection missing")),
        "{text}"
    );

    // Persistence on, groups created: nothing to report.
    let sound = RedisServer::start_with(&["--appendonly", "yes"]);
    let store: Arc<dyn Store> = Arc::new(connect(&sound).await);
    let commands = Commands::new(store.clone(), CommandSettings::default());
    Projectors::standard(
        store,
        commands.of::<esr_domain::User>(),
        ProjectorSettings::default(),
    )
    .create_groups()
    .await
    .unwrap();
    let output = esr(&sound, &["check", "--json"]);
    let report = json(&output);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    assert_eq!(report["healthy"], true);

    // Another partition count than the store was created with: refused, said why.
    let output = Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(["check"])
        .env("REDIS_URL", sound.url())
        .env("REDIS_PARTITIONS", "4")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("problem  cannot use the Redis given by REDIS_URL"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains("created with 1 partition"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_prints_a_streams_history_decoded() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(connect(&server).await);
    some_history(&store).await;

    let text = stdout(&esr(&server, &["events", "user", "a"]));
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("VERSION"), "{text}");
    assert_eq!(lines.len(), 1 + 5, "{text}");
    assert!(
        lines[1].starts_with("1 ") && lines[1].contains("registered"),
        "{text}"
    );
    assert!(
        lines[2].contains("acted_on") && lines[2].contains("o1"),
        "{text}"
    );
    assert!(lines[5].contains("friend_added"), "{text}");

    let events = json(&esr(
        &server,
        &["events", "user", "a", "--from", "4", "--json"],
    ));
    let versions: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [4, 5]);
    assert_eq!(events[1]["type"], "friend_added");

    let unknown = esr(&server, &["events", "planet", "a"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no aggregate \"planet\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_follows_a_category_live() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(connect(&server).await);
    let commands = some_history(&store).await;
    let mut tail = Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(["tail", "user_activity"])
        .env("REDIS_URL", server.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Following starts now: the history before is not shown.
    let mut said = String::new();
    let mut stderr = BufReader::new(tail.stderr.take().unwrap());
    stderr.read_line(&mut said).unwrap();
    let rest_of_stderr = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    assert!(said.starts_with("following user_activity"), "{said}");
    let like = UserCommand::Act {
        action: Action::Like,
        object: "live-object".into(),
        text: None,
    };
    commands
        .of::<esr_domain::User>()
        .execute(
            &user("b"),
            like,
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let out = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let _ = lines_tx.send(line.unwrap_or_default());
        }
    });
    let line = lines_rx.recv_timeout(Duration::from_secs(10));
    let _ = Command::new("kill")
        .args(["-INT", &tail.id().to_string()])
        .status();
    let stopped = tail.wait().unwrap();
    let line = line.unwrap_or_else(|e| panic!("{e}: {}", rest_of_stderr.join().unwrap()));
    assert!(
        line.contains("live-object") && line.contains("\"user b\""),
        "{line}"
    );
    assert!(!line.contains("\"o1\""), "{line}");
    assert!(stopped.success(), "Ctrl-C ends it normally: {stopped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_list_lag_pending_consumers_and_prune_removes_the_idle() {
    let server = RedisServer::start();
    let redis = connect(&server).await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    let commands = some_history(&store).await;
    let stop = run_projectors(&store, &commands, "worker-1");
    until("caught up", async || {
        redis
            .group_stats("profile_projection", esr_schema::UserEvent::CATEGORIES)
            .await
            .is_ok_and(|s| s.lag == 0 && s.pending == 0)
    })
    .await;

    let rows = json(&esr(&server, &["groups", "--json"]));
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "profile_projection" && r["category"] == "user_activity")
        .unwrap_or_else(|| panic!("{rows:#}"));
    assert_eq!(
        (
            row["partition"].as_u64(),
            row["lag"].as_u64(),
            row["pending"].as_u64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(row["consumers"][0]["name"], "worker-1", "{row}");
    // The running worker holds the partition's lease.
    assert_eq!(row["owner"]["name"], "worker-1", "{row}");
    assert!(
        row["owner"]["token"].as_u64().is_some_and(|t| t >= 1),
        "{row}"
    );
    let text = stdout(&esr(&server, &["groups"]));
    assert!(text.starts_with("GROUP"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("friendship_policy") && l.contains("worker-1")),
        "{text}"
    );

    // The worker gone, its consumer idles with nothing pending: pruned from every group it
    // read entries in (the history has no group events: Redis names no consumer there).
    stop.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pruned = json(&esr(
        &server,
        &["consumers", "prune", "--idle", "0", "--json"],
    ));
    for group in ["profile_projection", "most_liked", "friendship_policy"] {
        assert!(
            pruned["removed"][group].as_u64().unwrap_or(0) >= 1,
            "{group}: {pruned}"
        );
    }
    let rows = json(&esr(&server, &["groups", "--json"]));
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["consumers"] == serde_json::json!([])),
        "{rows:#}"
    );
}

struct DeadLettered {
    server: RedisServer,
    redis: RedisStore,
    store: Arc<dyn Store>,
    commands: Arc<Commands>,
    /// `esr dead-letters list --json`'s answer.
    letters: Vec<Value>,
}

/// Some history, and an entry no build can read in a category three groups read, handled
/// until it is dead-lettered; the projectors stopped.
async fn dead_lettered() -> DeadLettered {
    let server = RedisServer::start();
    let redis = connect(&server).await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    let commands = some_history(&store).await;
    // An entry no build can read, in a category three groups read.
    redis
        .append_foreign(
            &esr_schema::user::USER_ACTIVITY,
            0,
            &vec![("junk".to_owned(), b"not an event".to_vec())],
        )
        .await
        .unwrap();
    let stop = run_projectors(&store, &commands, "worker-1");
    until("dead-lettered", async || {
        redis.dead_letter_count().await.unwrap_or(0) >= 2
    })
    .await;
    stop.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let letters = json(&esr(&server, &["dead-letters", "list", "--json"]));
    let letters = letters.as_array().unwrap().clone();
    DeadLettered {
        server,
        redis,
        store,
        commands,
        letters,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_redriven_and_purged() {
    let DeadLettered {
        server,
        redis,
        store,
        commands,
        letters,
    } = dead_lettered().await;
    let profile = letters
        .iter()
        .find(|l| l["group"] == "profile_projection")
        .unwrap_or_else(|| panic!("{letters:#?}"));
    let id = profile["id"].as_str().unwrap().to_owned();
    assert!(
        profile["reason"].as_str().unwrap().contains("not an event"),
        "{profile}"
    );
    let table = stdout(&esr(&server, &["dead-letters", "list"]));
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");

    let shown = json(&esr(&server, &["dead-letters", "show", &id, "--json"]));
    assert_eq!(shown["fields"]["junk"], "not an event");
    assert!(shown["event"]["not_an_event"].is_string(), "{shown}");

    // Redriven: out of the dead letters, back on the group's pending list, recorded.
    let redriven = esr(&server, &["dead-letters", "redrive", &id]);
    assert!(
        redriven.status.success(),
        "{}",
        String::from_utf8_lossy(&redriven.stderr)
    );
    assert!(stdout(&redriven).contains("handed back to profile_projection"));
    let left = json(&esr(&server, &["dead-letters", "list", "--json"]));
    assert_eq!(left.as_array().unwrap().len(), letters.len() - 1);
    let pending: Value = server
        .query::<redis::Value>(
            redis::cmd("XPENDING")
                .arg("user_activity:{p0}")
                .arg("profile_projection"),
        )
        .map(|v| serde_json::json!(format!("{v:?}")))
        .unwrap();
    assert!(
        pending.as_str().unwrap().contains("esr-redrive"),
        "{pending}"
    );
    let records: i64 = server
        .query(redis::cmd("XLEN").arg("redriven:{p0}"))
        .unwrap();
    assert_eq!(records, 1);
    let again = esr(&server, &["dead-letters", "redrive", &id]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a dead letter is redriven once"
    );

    // Handled once more: a projector claims it, and (still no event) dead-letters it again.
    let stop = run_projectors(&store, &commands, "worker-2");
    until("handled again", async || {
        redis.dead_letter_count().await.unwrap_or(0) == letters.len() as u64
    })
    .await;
    stop.send(true).unwrap();

    // Purging asks for --yes.
    let refused = esr(&server, &["dead-letters", "purge"]);
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(
        redis.dead_letter_count().await.unwrap(),
        letters.len() as u64
    );
    let purged = esr(&server, &["dead-letters", "purge", "--yes"]);
    assert!(stdout(&purged).contains(&format!("purged {} dead letter(s)", letters.len())));
    assert_eq!(redis.dead_letter_count().await.unwrap(), 0);
}

/// `esr projection rebuild` on a 3-master Cluster while commands keep arriving: interrupted
/// with Ctrl-C, resumed by the same command, switched; every profile served afterwards is the
/// fold of its stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_on_cluster_under_traffic_resumes_switches_and_equals_a_fresh_fold() {
    use esr_domain::Profile;
    use esr_store::ReadModels as _;

    let (_cluster, nodes, redis) = cluster_store().await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let users: Vec<UserId> = (0..200).map(|i| user(&format!("r{i}"))).collect();
    let meta = CommandMeta::new(None, esr_kernel::Actor::Anonymous);
    let register = || UserCommand::Register {
        name: "Duffy".into(),
        surname: "Duck".into(),
        birth_date: None,
    };
    let like = |n: usize| UserCommand::Act {
        action: Action::Like,
        object: format!("object-{}", n % 17),
        text: None,
    };
    // History: every user registers and likes 40 times, 16 writers at once.
    let mut writers = Vec::new();
    for chunk in users.chunks(users.len() / 16) {
        let (commands, chunk, meta) = (commands.clone(), chunk.to_vec(), meta.clone());
        writers.push(tokio::spawn(async move {
            for id in &chunk {
                commands
                    .of::<esr_domain::User>()
                    .execute(id, register(), &meta)
                    .await
                    .unwrap();
                for n in 0..40 {
                    commands
                        .of::<esr_domain::User>()
                        .execute(id, like(n), &meta)
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let stop_projectors = run_projectors(&store, &commands, "live-1");

    // Commands keep arriving during the rebuild.
    let keep_writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let traffic = tokio::spawn({
        let (commands, users, meta, keep_writing) = (
            commands.clone(),
            users.clone(),
            meta.clone(),
            keep_writing.clone(),
        );
        async move {
            let mut n = 0;
            while keep_writing.load(std::sync::atomic::Ordering::SeqCst) {
                commands
                    .of::<esr_domain::User>()
                    .execute(&users[n % users.len()], like(n), &meta)
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }
    });

    let rebuild = || {
        Command::new(env!("CARGO_BIN_EXE_esr"))
            .args(["projection", "rebuild", "profile"])
            .env("REDIS_CLUSTER_NODES", nodes.join(","))
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Interrupted after its first page.
    let mut first = rebuild();
    let mut progress = BufReader::new(first.stderr.take().unwrap());
    let mut line = String::new();
    progress.read_line(&mut line).unwrap();
    assert!(line.contains("entries/s") && line.contains("ETA"), "{line}");
    let _ = Command::new("kill")
        .args(["-INT", &first.id().to_string()])
        .status();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut progress, &mut rest).unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{line}{rest}");
    assert!(rest.contains("interrupted after"), "{rest}");
    assert_eq!(
        redis.live_generation("profile").await.unwrap(),
        1,
        "not switched yet"
    );

    // Resumed: finishes and switches.
    let second = rebuild().wait_with_output().unwrap();
    let (out, err) = (
        stdout(&second),
        String::from_utf8_lossy(&second.stderr).into_owned(),
    );
    assert!(second.status.success(), "{out}{err}");
    assert!(
        err.starts_with("resuming the rebuild of profile into generation 2 after"),
        "{err}"
    );
    assert!(err.lines().any(|l| l.contains("entries/s, ETA")), "{err}");
    assert!(
        err.contains("switched: profile now serves generation 2"),
        "{err}"
    );
    assert!(out.contains("rebuilt profile from"), "{out}");
    println!("first run:\n{line}{rest}\nsecond run:\n{err}{out}");
    assert_eq!(redis.live_generation("profile").await.unwrap(), 2);

    keep_writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let during = traffic.await.unwrap();
    assert!(during > 0, "commands arrived during the rebuild");
    until("caught up", async || {
        redis
            .group_stats("profile_projection", esr_schema::UserEvent::CATEGORIES)
            .await
            .is_ok_and(|s| s.lag == 0 && s.pending == 0)
    })
    .await;
    stop_projectors.send(true).unwrap();

    // Every profile served (generation 2) is the fold of its stream.
    for id in &users {
        let stream = esr_schema::StreamId::of::<esr_schema::UserEvent>(id.clone());
        let mut fold = Profile::empty(id.clone());
        for stored in store.read_stream(&stream, 1, 10_000).await.unwrap() {
            fold.apply(&stored.envelope, &stored.decode().unwrap());
        }
        let served = esr_app::read_model::stored_view::<Profile>(store.as_ref(), id)
            .await
            .unwrap();
        assert_eq!(served.as_ref(), Some(&fold), "{id}");
    }
}

#[test]
fn esr_says_its_version_and_refuses_without_a_redis() {
    let output = Command::new(env!("CARGO_BIN_EXE_esr"))
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&output).trim(),
        format!("esr {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(env!("CARGO_BIN_EXE_esr"))
        .arg("groups")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_NODES")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("set REDIS_URL or REDIS_CLUSTER_NODES"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Trimmed categories no longer hold the whole history: a rebuild from them is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_is_refused_once_categories_were_trimmed() {
    use esr_store::ReadModels as _;
    let server = RedisServer::start();
    let redis = connect(&server).await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    let commands = some_history(&store).await;
    let projectors = Projectors::standard(
        store.clone(),
        commands.of::<esr_domain::User>(),
        ProjectorSettings::default(),
    );
    projectors.create_groups().await.unwrap();
    let stop = run_projectors(&store, &commands, "worker-1");
    until("trimmed", async || {
        redis
            .trim_consumed(esr_schema::UserEvent::CATEGORIES)
            .await
            .unwrap_or(0)
            > 0
    })
    .await;
    stop.send(true).unwrap();
    let refused = esr(&server, &["projection", "rebuild", "profile"]);
    assert_eq!(refused.status.code(), Some(1));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("has been trimmed"), "{said}");
    assert_eq!(redis.live_generation("profile").await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_listed_and_spread_evenly_over_the_masters() {
    let (_cluster, nodes, redis) = cluster_store().await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    some_history(&store).await;
    let on_cluster = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_esr"))
            .args(args)
            .env("REDIS_CLUSTER_NODES", nodes.join(","))
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let per_master = |listing: &Value| -> Vec<u64> {
        listing["per_master"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .collect()
    };

    let before = json(&on_cluster(&["partitions", "--json"]));
    assert_eq!(before["partitions"].as_array().unwrap().len(), 16);
    assert_eq!(per_master(&before).iter().sum::<u64>(), 16);
    // `{p0}`..`{p15}` land 4, 5 and 7 on the three masters `redis-cli` sets up.
    let moves = before["moves_to_spread"].as_u64().unwrap();
    assert!(moves >= 1, "{before}");

    let dry = on_cluster(&["partitions", "spread", "--dry-run"]);
    assert!(dry.status.success());
    assert_eq!(stdout(&dry).matches("would move").count() as u64, moves);
    assert_eq!(json(&on_cluster(&["partitions", "--json"])), before);

    let spread = on_cluster(&["partitions", "spread"]);
    assert!(
        spread.status.success(),
        "{}{}",
        stdout(&spread),
        String::from_utf8_lossy(&spread.stderr)
    );
    let after = json(&on_cluster(&["partitions", "--json"]));
    let mut counts = per_master(&after);
    counts.sort();
    assert_eq!(counts, vec![5, 5, 6]);
    assert_eq!(after["moves_to_spread"], 0);
    // The history moved with its partitions: register, three likes, a friend.
    let events = json(&on_cluster(&["events", "user", "a", "--json"]));
    assert_eq!(events.as_array().map(Vec::len), Some(5), "{events}");

    // One server has no partitions to place.
    let server = RedisServer::start();
    let single = esr(&server, &["partitions"]);
    assert!(!single.status.success());
    assert!(
        String::from_utf8_lossy(&single.stderr).contains("not a Redis Cluster"),
        "{}",
        String::from_utf8_lossy(&single.stderr)
    );
}

/// A redrive that cannot hand the entry back (its group is gone) changes nothing: the dead
/// letter stays, and nothing is recorded as redriven.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_that_cannot_claim_keeps_the_dead_letter_and_records_nothing() {
    let DeadLettered {
        server, letters, ..
    } = dead_lettered().await;
    let tally = letters
        .iter()
        .find(|l| l["group"] == "most_liked")
        .unwrap_or_else(|| panic!("{letters:#?}"));
    let id = tally["id"].as_str().unwrap().to_owned();
    let destroyed: i64 = server
        .query(
            redis::cmd("XGROUP")
                .arg("DESTROY")
                .arg("user_activity:{p0}")
                .arg("most_liked"),
        )
        .unwrap();
    assert_eq!(destroyed, 1);

    let redriven = esr(&server, &["dead-letters", "redrive", &id]);
    assert_eq!(
        redriven.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&redriven.stderr)
    );
    let left = json(&esr(&server, &["dead-letters", "list", "--json"]));
    assert_eq!(left.as_array().unwrap().len(), letters.len(), "{left:#}");
    let records: i64 = server
        .query(redis::cmd("XLEN").arg("redriven:{p0}"))
        .unwrap();
    assert_eq!(records, 0, "recorded as redriven without being redriven");
}

/// A plain connection to `server`, for what a test does by hand.
async fn raw_connection(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Registers `id` (a user whose partition the caller chose).
async fn register(commands: &Commands, id: &str) {
    let register = UserCommand::Register {
        name: "Daisy".into(),
        surname: "Duck".into(),
        birth_date: None,
    };
    commands
        .of::<esr_domain::User>()
        .execute(
            &user(id),
            register,
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
}

/// The first id `u<n>` in `partition` of `partitions`.
fn id_in_partition(partition: u32, partitions: u32) -> String {
    (0..)
        .map(|n| format!("u{n}"))
        .find(|id| {
            esr_redis::keys::partition_of(&esr_schema::EntityId::parse(id).unwrap(), partitions)
                == partition
        })
        .unwrap()
}

/// Entry ids are made per stream (per master's clock on Cluster): a rebuild that had read
/// partition 0 up to an id, resumed, must still read an entry of partition 1 with a lower id.
/// Before, one position served every partition and that entry was never folded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_reads_each_partition_from_its_own_position() {
    use esr_store::ReadModels as _;
    let server = RedisServer::start();
    let mut config = RedisConfig::new(Topology::Single(server.url()));
    config.partitions = 2;
    let redis = RedisStore::connect(config).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    let commands = Commands::new(store.clone(), CommandSettings::default());
    let (late, early) = (id_in_partition(1, 2), id_in_partition(0, 2));
    register(&commands, &late).await;
    register(&commands, &early).await;
    // A rebuild into generation 2 that had folded partition 0 (`early`) and stopped.
    let position = redis
        .read_category_partition(
            &esr_schema::user::USER_UPDATES,
            0,
            esr_store::EntryId::ZERO,
            10,
        )
        .await
        .unwrap()
        .last()
        .unwrap()
        .id
        .to_string();
    let mut conn = raw_connection(&server).await;
    let _: () = redis::cmd("HSET")
        .arg(esr_redis::keys::Keys::rebuild("profile"))
        .arg("generation")
        .arg(2)
        .arg("done")
        .arg(1)
        // As the earlier build wrote it (one position for all) and as this one does.
        .arg("position:user_updates")
        .arg(&position)
        .arg("position:user_updates:0")
        .arg(&position)
        .query_async(&mut conn)
        .await
        .unwrap();

    let rebuilt = Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(["projection", "rebuild", "profile"])
        .env("REDIS_URL", server.url())
        .env("REDIS_PARTITIONS", "2")
        .env_remove("REDIS_CLUSTER_NODES")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert_eq!(redis.live_generation("profile").await.unwrap(), 2);
    let model = store
        .get_read_model(
            &esr_store::generation_name("profile", 2),
            &esr_schema::StreamId::new(
                esr_schema::user::USER,
                esr_schema::EntityId::parse(&late).unwrap(),
            ),
        )
        .await
        .unwrap();
    assert!(
        model.is_some(),
        "{late} (partition 1) is missing from generation 2"
    );
}

/// A store error while folding (here the new generation's key holds another type) used to be
/// skipped as poison, and the rebuild switched to a generation without that user. Now it stops
/// without switching, naming the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_that_cannot_fold_an_entry_stops_without_switching() {
    use esr_store::ReadModels as _;
    let server = RedisServer::start();
    let redis = connect(&server).await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    some_history(&store).await;
    let keys = esr_redis::keys::Keys { partitions: 1 };
    let mut conn = raw_connection(&server).await;
    let _: () = redis::cmd("SET")
        .arg(keys.read_model(
            &esr_store::generation_name("profile", 2),
            &esr_schema::StreamId::new(
                esr_schema::user::USER,
                esr_schema::EntityId::parse("a").unwrap(),
            ),
        ))
        .arg("not a hash")
        .query_async(&mut conn)
        .await
        .unwrap();
    let refused = esr(&server, &["projection", "rebuild", "profile"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{said}");
    assert!(said.contains("cannot be folded"), "{said}");
    assert_eq!(redis.live_generation("profile").await.unwrap(), 1);
}

/// Trimming that starts while a rebuild runs removes entries it may not have read: the
/// rebuild notices and stops without switching (before, it switched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_stops_without_switching_when_trimming_starts_meanwhile() {
    use esr_store::{EventStore as _, ReadModels as _};
    let server = RedisServer::start();
    let redis = connect(&server).await;
    let users: Vec<esr_schema::StreamId> = (0..100)
        .map(|n| {
            esr_schema::StreamId::new(
                esr_schema::user::USER,
                esr_schema::EntityId::parse(&format!("t{n}")).unwrap(),
            )
        })
        .collect();
    for round in 0..200 {
        let batch = users
            .iter()
            .map(|stream| esr_store::AppendRequest {
                stream: stream.clone(),
                expected: esr_store::ExpectedVersion::Exactly(round),
                events: vec![esr_store::contract::kick("Bugs")],
                idempotency: None,
            })
            .collect();
        for outcome in redis.append_batch(batch).await.unwrap() {
            outcome.unwrap();
        }
    }
    let mut rebuild = Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(["projection", "rebuild", "profile"])
        .env("REDIS_URL", server.url())
        .env_remove("REDIS_CLUSTER_NODES")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(rebuild.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("entries"), "{first}");
    let mut conn = raw_connection(&server).await;
    let _: i64 = redis::cmd("XTRIM")
        .arg("user_activity:{p0}")
        .arg("MAXLEN")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = rebuild.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("trimmed while the rebuild ran")),
        "{rest:?}"
    );
    assert_eq!(redis.live_generation("profile").await.unwrap(), 1);
}

/// A spread stopped halfway left a slot migrating (every append to its partition answered
/// `TRYAGAIN`) with some keys already on the target it chose. The next run finishes that move,
/// to that target, before spreading: no slot left migrating, no key left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_finishes_a_stopped_move_to_its_own_target() {
    let (_cluster, nodes, redis) = cluster_store().await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    let commands = some_history(&store).await;
    let placement = redis.placement().await.unwrap();
    let planned: Vec<u16> = placement.spread_moves().iter().map(|m| m.slot).collect();
    let place = placement
        .partitions
        .iter()
        .find(|p| !planned.contains(&p.slot))
        .unwrap()
        .clone();
    let id = id_in_partition(place.partition, 16);
    register(&commands, &id).await;
    let node = |address: &str| {
        let url = nodes.iter().find(|u| u.contains(address)).unwrap().clone();
        redis::Client::open(url).unwrap()
    };
    let node_id = |address: &str| -> String {
        let mut conn = node(address).get_connection().unwrap();
        redis::cmd("CLUSTER").arg("MYID").query(&mut conn).unwrap()
    };
    let source = place.master.clone();
    let target = placement
        .masters
        .iter()
        .find(|m| m.address != source)
        .unwrap()
        .address
        .clone();
    let (source_id, target_id) = (node_id(&source), node_id(&target));
    let mut source_conn = node(&source).get_connection().unwrap();
    let mut target_conn = node(&target).get_connection().unwrap();
    let setslot = |state: &str, id: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(place.slot).arg(state).arg(id);
        cmd
    };
    let () = setslot("IMPORTING", &source_id)
        .query(&mut target_conn)
        .unwrap();
    let () = setslot("MIGRATING", &target_id)
        .query(&mut source_conn)
        .unwrap();
    let keys: Vec<String> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(place.slot)
        .arg(1)
        .query(&mut source_conn)
        .unwrap();
    let (host, port) = target.rsplit_once(':').unwrap();
    let _: redis::Value = redis::cmd("MIGRATE")
        .arg(host)
        .arg(port)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(&keys)
        .query(&mut source_conn)
        .unwrap();

    let spread = Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(["partitions", "spread"])
        .env("REDIS_CLUSTER_NODES", nodes.join(","))
        .env_remove("REDIS_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        stdout(&spread),
        String::from_utf8_lossy(&spread.stderr)
    );
    assert!(spread.status.success(), "{said}");
    assert!(said.contains("finished moving"), "{said}");
    let after = redis.placement().await.unwrap();
    assert!(after.unfinished.is_empty(), "{after:?}");
    let owner = after
        .partitions
        .iter()
        .find(|p| p.slot == place.slot)
        .unwrap()
        .master
        .clone();
    for master in &after.masters {
        let mut conn = node(&master.address).get_connection().unwrap();
        let nodes_text: String = redis::cmd("CLUSTER").arg("NODES").query(&mut conn).unwrap();
        assert!(
            !nodes_text.contains('['),
            "{}: {nodes_text}",
            master.address
        );
        let held: u64 = redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(place.slot)
            .query(&mut conn)
            .unwrap();
        if master.address != owner {
            assert_eq!(
                held, 0,
                "keys of slot {} left on {}",
                place.slot, master.address
            );
        }
    }
    let events = Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(["events", "user", &id, "--json"])
        .env("REDIS_CLUSTER_NODES", nodes.join(","))
        .env_remove("REDIS_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(json(&events).as_array().map(Vec::len), Some(1));
}

/// `MIGRATE` moves a key whole and blocks both masters meanwhile: a partition whose category
/// stream is over `--max-key-mb` is not moved, and nothing is left half moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_refuses_to_move_a_category_stream_over_its_size_limit() {
    let (_cluster, nodes, redis) = cluster_store().await;
    let store: Arc<dyn Store> = Arc::new(redis.clone());
    let commands = some_history(&store).await;
    let before = redis.placement().await.unwrap();
    let first = before.spread_moves().first().unwrap().clone();
    register(&commands, &id_in_partition(first.partition, 16)).await;
    let spread = Command::new(env!("CARGO_BIN_EXE_esr"))
        .args(["partitions", "spread", "--max-key-mb", "0"])
        .env("REDIS_CLUSTER_NODES", nodes.join(","))
        .env_remove("REDIS_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&spread.stderr);
    assert_eq!(spread.status.code(), Some(1), "{said}");
    assert!(said.contains("blocks both masters"), "{said}");
    let after = redis.placement().await.unwrap();
    assert_eq!(after.partitions, before.partitions);
    assert!(after.unfinished.is_empty());
}

/// A team's domain this tool was not built with: tips in jars, and a view of each jar.
mod tips {
    use std::collections::BTreeMap;

    use esr_kernel::fields::{self, FieldError};
    use esr_kernel::{Aggregate, Context, Rejection, RejectionKind, View};
    use esr_schema::{AggregateType, Category, EntityId, EventEnvelope, EventPayload};
    use serde::{Deserialize, Serialize};

    pub const TIPS: Category = Category::declare("tips");

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Tipped {
        pub cents: u64,
        pub from: String,
    }
    impl EventPayload for Tipped {
        const TYPE: &'static str = "tipped";
        const CATEGORY: Category = TIPS;
    }

    esr_schema::domain_events! {
        pub enum JarEvent for AggregateType::declare("jar"), categories [TIPS] {
            Tipped(Tipped),
        }
    }

    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    pub struct Jar {
        version: u64,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    pub struct Never;
    impl Rejection for Never {
        fn kind(&self) -> RejectionKind {
            RejectionKind::Conflict
        }
        fn code(&self) -> &'static str {
            "never"
        }
    }

    impl Aggregate for Jar {
        type Event = JarEvent;
        type Command = Tipped;
        type Rejection = Never;
        fn version(&self) -> u64 {
            self.version
        }
        fn decide(&self, _: &EntityId, tip: &Tipped, _: &Context) -> Result<Vec<JarEvent>, Never> {
            Ok(vec![tip.clone().into()])
        }
        fn evolve(&mut self, _: &JarEvent) {
            self.version += 1;
        }
    }

    #[derive(Debug, Clone, Serialize)]
    pub struct JarPage {
        version: u64,
    }
    impl View for JarPage {
        type Event = JarEvent;
        const NAME: &'static str = "jar_page";
        fn empty(_: &EntityId) -> Self {
            Self { version: 0 }
        }
        fn version(&self) -> u64 {
            self.version
        }
        fn apply(&mut self, envelope: &EventEnvelope, _: &JarEvent) {
            self.version = envelope.version;
        }
        fn to_fields(&self) -> BTreeMap<String, String> {
            BTreeMap::from([("version".into(), fields::json(&self.version))])
        }
        fn from_fields(
            _: &EntityId,
            stored: &BTreeMap<String, String>,
        ) -> Result<Self, FieldError> {
            Ok(Self {
                version: fields::Reader::new(stored).parse("version")?,
            })
        }
    }
}

/// `esr` (as `run` runs it) lists the group of a module it was not built with, and shows
/// that module's events by field names.
async fn undeclared_module_is_shown(store: Arc<dyn Store>, run: impl Fn(&[&str]) -> Output) {
    let module = esr_app::Module::new("tips")
        .aggregate::<tips::Jar>()
        .view::<tips::JarPage>();
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let tip = tips::Tipped {
        cents: 250,
        from: "ann".into(),
    };
    let meta = CommandMeta::new(None, esr_kernel::Actor::Anonymous);
    commands
        .of::<tips::Jar>()
        .execute(&user("jar-1"), tip, &meta)
        .await
        .unwrap();
    let projectors = Projectors::new(
        store.clone(),
        module.handlers(&commands),
        ProjectorSettings::default(),
    );
    projectors.create_groups().await.unwrap();

    let rows = json(&run(&["groups", "--json"]));
    let rows: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["group"] == "jar_page")
        .collect();
    assert!(!rows.is_empty(), "the undeclared group is not listed");
    assert!(
        rows.iter()
            .all(|r| r["category"] == "tips" && r["module"] == "undeclared"),
        "{rows:#?}"
    );
    let lag: u64 = rows.iter().map(|r| r["lag"].as_u64().unwrap()).sum();
    assert_eq!(lag, 1, "{rows:#?}");
    let events = json(&run(&["events", "jar", "jar-1", "--json"]));
    assert_eq!(
        events[0]["data"],
        serde_json::json!({"cents": 250, "from": "ann"}),
        "{events}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_events_of_a_module_this_tool_does_not_declare_are_shown() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(connect(&server).await);
    undeclared_module_is_shown(store, |args| esr(&server, args)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_of_an_undeclared_module_are_found_on_cluster_too() {
    let (_cluster, nodes, redis) = cluster_store().await;
    let store: Arc<dyn Store> = Arc::new(redis);
    undeclared_module_is_shown(store, |args| {
        Command::new(env!("CARGO_BIN_EXE_esr"))
            .args(args)
            .env("REDIS_CLUSTER_NODES", nodes.join(","))
            .env_remove("REDIS_URL")
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await;
}
