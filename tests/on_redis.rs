//! The real binaries as separate processes (command, query, projectors) on a `redis-server`
//! the test starts.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use esr_e2e::Stack;
use esr_testkit::RedisServer;
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};

/// XPENDING summary: count, smallest id, greatest id, (consumer, count) pairs.
type PendingSummary = (u64, Option<String>, Option<String>, Vec<(String, String)>);
/// XREAD: per stream, its entries as (id, fields).
type XreadReply = Vec<(String, Vec<(String, HashMap<String, Vec<u8>>)>)>;

struct Client {
    http: reqwest::Client,
}

impl Client {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (
            status,
            response.json().await.unwrap_or(Value::Null),
            headers,
        )
    }

    async fn post(&self, url: String, body: Value) -> (u16, Value) {
        let (status, body, _) = self.send(self.http.post(url).json(&body)).await;
        (status, body)
    }

    async fn get(&self, url: String) -> (u16, Value) {
        let (status, body, _) = self.send(self.http.get(url)).await;
        (status, body)
    }

    /// Register user 1, Duffy Duck (the post's first user), through the command side.
    async fn register_duffy(&self, command_url: &str) {
        let (status, body) = self
            .post(
                format!("{command_url}/users"),
                json!({"user_id": "1", "name": "Duffy", "surname": "Duck"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Poll until `check` holds, for at most `seconds`.
async fn eventually(what: &str, seconds: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not reached in {seconds} s: {what}");
}

/// Entries pending under the consumers of process `pid` (their names hold `-<pid>-`).
fn pending_of_process(server: &RedisServer, partitions: u32, pid: u32) -> u64 {
    let mut conn = redis(server);
    let mut held = 0;
    for partition in 0..partitions {
        for group in esr_app::social::module().groups() {
            for category in group.categories {
                let stream = format!("{category}:{{p{partition}}}");
                let group = group.name;
                let summary: redis::RedisResult<PendingSummary> = redis::cmd("XPENDING")
                    .arg(&stream)
                    .arg(group)
                    .query(&mut conn);
                let Ok((_, _, _, consumers)) = summary else {
                    continue;
                };
                held += consumers
                    .iter()
                    .filter(|(name, _)| name.contains(&format!("-{pid}-")))
                    .map(|(_, count)| count.parse::<u64>().unwrap_or(0))
                    .sum::<u64>();
            }
        }
    }
    held
}

fn redis(server: &RedisServer) -> redis::Connection {
    redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_posts_scenario_over_http_with_readable_streams_and_mutual_friendship() {
    let server = RedisServer::start();
    let stack = Stack::start(&server.url(), 1, 1).await;
    let client = Client::new();
    let c = &stack.command_url;
    for (id, name, surname) in [("1", "Duffy", "Duck"), ("2", "Bugs", "Bunny")] {
        let (status, _) = client
            .post(
                format!("{c}/users"),
                json!({"user_id": id, "name": name, "surname": surname}),
            )
            .await;
        assert_eq!(status, 201);
    }
    client
        .post(
            format!("{c}/users/1/activity"),
            json!({"action": "kick", "object": "Bugs"}),
        )
        .await;
    client
        .post(
            format!("{c}/users/1/activity"),
            json!({"action": "dislike", "object": "Bugs face"}),
        )
        .await;
    let (status, added) = client
        .post(format!("{c}/users/1/friends"), json!({"friend_id": "2"}))
        .await;
    assert_eq!((status, &added["version"]), (200, &json!(4)));

    let q = &stack.query_url;
    let (_, two) = client.get(format!("{q}/users/2?min_version=2")).await;
    assert_eq!(
        two["friends"],
        json!(["1"]),
        "the friendship shows on both users"
    );
    let (_, one) = client.get(format!("{q}/users/1?min_version=4")).await;
    assert_eq!(one["friends"], json!(["2"]));
    assert_eq!(
        (one["name"].as_str(), one["activity_count"].as_u64()),
        (Some("Duffy"), Some(2))
    );
    assert_eq!(one["last_activity"]["object"], "Bugs face");

    // A plain Redis client reads the category streams as the post does.
    let mut conn = redis(&server);
    let reply: XreadReply = redis::cmd("XREAD")
        .arg("STREAMS")
        .arg(&[
            "user_updates:{p0}",
            "user_activity:{p0}",
            "user_friends:{p0}",
            "0",
            "0",
            "0",
        ])
        .query(&mut conn)
        .unwrap();
    let mut seen: Vec<(String, String, String, String)> = Vec::new();
    for (stream, entries) in &reply {
        for (_, fields) in entries {
            let text = |name: &str| String::from_utf8_lossy(&fields[name]).into_owned();
            seen.push((
                stream.clone(),
                text("type"),
                text("user_id"),
                text("version"),
            ));
        }
    }
    let row = |s: &str, t: &str, u: &str, v: &str| {
        (s.to_owned(), t.to_owned(), u.to_owned(), v.to_owned())
    };
    assert_eq!(
        seen,
        [
            row("user_updates:{p0}", "registered", "1", "1"),
            row("user_updates:{p0}", "registered", "2", "1"),
            row("user_activity:{p0}", "acted_on", "1", "2"),
            row("user_activity:{p0}", "acted_on", "1", "3"),
            row("user_friends:{p0}", "friend_added", "1", "4"),
            row("user_friends:{p0}", "friend_added", "2", "2"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_commands_with_a_projector_killed_midway_are_each_applied_exactly_once() {
    const USERS: usize = 500;
    // Besides: 10 groups that every user joins (i % 10), sent with the other commands.
    const GROUPS: usize = 10;
    const FRIENDSHIPS: usize = 100;
    // 500 registrations + 4,400 likes + 100 friendships: 8 likes each, a 9th for the first 400.
    const LIKES: usize = 5_000 - USERS - FRIENDSHIPS;
    let likes_of = |i: usize| LIKES / USERS + usize::from(i < LIKES % USERS);
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let mut stack = Stack::start(&server.url(), 4, 2).await;
    let client = Client::new();
    let c = stack.command_url.clone();

    let user = |i: usize| format!("load{i}");
    let registered: Vec<u16> = stream::iter(0..USERS)
        .map(|i| {
            client.post(
                format!("{c}/users"),
                json!({"user_id": user(i), "name": "N", "surname": "S"}),
            )
        })
        .buffer_unordered(32)
        .map(|(status, _)| status)
        .collect()
        .await;
    assert!(registered.iter().all(|s| *s == 201));
    for g in 0..GROUPS {
        let (status, body) = client
            .post(
                format!("{c}/groups"),
                json!({"group_id": format!("g{g}"), "name": format!("Group {g}"), "capacity": 100}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    let mut commands: Vec<(String, Value)> = Vec::new();
    for round in 0..=LIKES / USERS {
        for i in (0..USERS).filter(|i| round < likes_of(*i)) {
            commands.push((
                format!("{c}/users/{}/activity", user(i)),
                json!({"action": "like", "object": format!("o{round}")}),
            ));
        }
    }
    for i in 0..FRIENDSHIPS {
        commands.push((
            format!("{c}/users/{}/friends", user(i)),
            json!({"friend_id": user(i + 1)}),
        ));
    }
    let total = USERS + commands.len();
    assert_eq!(total, 5_000);
    // The joins interleaved with the rest, so the kill falls among them too.
    let joins: Vec<(String, Value)> = (0..USERS)
        .map(|i| {
            (
                format!("{c}/groups/g{}/members", i % GROUPS),
                json!({"user_id": user(i)}),
            )
        })
        .collect();
    let commands: Vec<(String, Value)> = commands
        .chunks(commands.len() / USERS)
        .zip(joins)
        .flat_map(|(some, join)| some.iter().cloned().chain([join]))
        .collect();
    let (first_half, second_half) = commands.split_at(commands.len() / 2);
    let send_all = async |batch: &[(String, Value)]| {
        let statuses: Vec<u16> = stream::iter(batch.iter().cloned())
            .map(|(url, body)| client.post(url, body))
            .buffer_unordered(32)
            .map(|(status, _)| status)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 200), "every command accepted");
    };
    send_all(first_half).await;
    // SIGKILL one projector in the middle of the load: whatever it held stays pending.
    let killed_pid = stack.projectors[0].child.id();
    stack.projectors[0].kill();
    let held = pending_of_process(&server, 4, killed_pid);
    eprintln!("the killed projector (pid {killed_pid}) held {held} pending entries");
    send_all(second_half).await;
    let restarted = stack.start_projector().await;

    let projector = stack.projector_urls[restarted].clone();
    eventually(
        "all groups caught up with nothing pending",
        120,
        async || {
            let (status, health) = client.get(format!("{projector}/healthz")).await;
            status == 200
                && health["groups"]
                    .as_array()
                    .is_some_and(|groups| groups.iter().all(|g| g["lag"] == 0 && g["pending"] == 0))
        },
    )
    .await;

    let q = &stack.query_url;
    let mut mismatches = Vec::new();
    for i in 0..USERS {
        let (_, history) = client
            .get(format!("{q}/users/{}/events?limit=1", user(i)))
            .await;
        let (_, profile) = client.get(format!("{q}/users/{}", user(i))).await;
        let stream_version = history["version"].as_u64().unwrap();
        let befriended = usize::from(i < FRIENDSHIPS) + usize::from((1..=FRIENDSHIPS).contains(&i));
        let expected_friends = befriended;
        let ok = profile["version"].as_u64() == Some(stream_version)
            && profile["activity_count"].as_u64() == Some(likes_of(i) as u64)
            && profile["liked"].as_array().map(Vec::len) == Some(likes_of(i))
            && profile["friends"].as_array().map(Vec::len) == Some(expected_friends);
        if !ok {
            mismatches.push((user(i), stream_version, profile));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} profiles wrong, first: {:?}",
        mismatches.len(),
        mismatches.first()
    );

    // Every group's view: its 50 members, sorted, at the version of its stream.
    for g in 0..GROUPS {
        let (_, view) = client.get(format!("{q}/groups/g{g}")).await;
        let mut members: Vec<String> = (0..USERS).filter(|i| i % GROUPS == g).map(user).collect();
        members.sort();
        assert_eq!(view["members"], json!(members), "group g{g}");
        assert_eq!(view["member_count"], 50);
        assert_eq!(view["version"], 51, "created, then 50 joins");
    }
    // Most-liked: every like counted once. o0..o7 were liked by all 500 users, o8 by 400.
    let (_, top) = client.get(format!("{q}/objects/top?limit=20")).await;
    let mut expected: Vec<Value> = (0..8)
        .map(|o| json!({"object": format!("o{o}"), "likes": 500}))
        .collect();
    expected.push(json!({"object": "o8", "likes": 400}));
    assert_eq!(top, json!(expected));

    let mut conn = redis(&server);
    for partition in 0..4 {
        for group in esr_app::social::module().groups() {
            for category in group.categories {
                let stream = format!("{category}:{{p{partition}}}");
                let group = group.name;
                let summary: (u64, Option<String>, Option<String>, redis::Value) =
                    redis::cmd("XPENDING")
                        .arg(&stream)
                        .arg(group)
                        .query(&mut conn)
                        .unwrap();
                assert_eq!(summary.0, 0, "{stream} {group} has pending entries");
            }
        }
    }
    let dead: u64 = redis::cmd("XLEN")
        .arg("dead_letters:{p0}")
        .query(&mut conn)
        .unwrap();
    assert_eq!(dead, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_to_every_route_gets_its_status_and_a_json_error() {
    let server = RedisServer::start();
    let stack = Stack::start(&server.url(), 1, 1).await;
    let client = Client::new();
    client.register_duffy(&stack.command_url).await;
    let checked = esr_e2e::check_bad_input(&stack.command_url, &stack.query_url).await;
    assert!(checked >= 25);
    let history: (u16, Value) = client
        .get(format!("{}/users/1/events", stack.query_url))
        .await;
    assert_eq!(history.1["version"], 1, "bad input appended nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_idempotency_key_sent_twice_concurrently_appends_one_event() {
    let server = RedisServer::start();
    let stack = Stack::start(&server.url(), 1, 1).await;
    let client = Client::new();
    let c = &stack.command_url;
    client.register_duffy(c).await;
    let send = || {
        client.send(
            client
                .http
                .post(format!("{c}/users/1/activity"))
                .header("idempotency-key", "kick-once")
                .json(&json!({"action": "kick", "object": "Bugs"})),
        )
    };
    let (first, second) = tokio::join!(send(), send());
    assert_eq!((first.0, second.0), (200, 200));
    assert_eq!(first.1, second.1, "both answered with the first result");
    let replayed = [&first.2, &second.2]
        .iter()
        .filter(|h| h.get("idempotent-replayed").is_some())
        .count();
    assert_eq!(replayed, 1);
    let (_, history) = client
        .get(format!("{}/users/1/events", stack.query_url))
        .await;
    assert_eq!(history["version"], 2, "one event: {history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_version_returns_the_profile_with_the_command_just_answered() {
    let server = RedisServer::start();
    let stack = Stack::start(&server.url(), 2, 1).await;
    let client = Client::new();
    let c = &stack.command_url;
    client.register_duffy(c).await;
    for i in 0..20 {
        let object = format!("o{i}");
        let (status, answer) = client
            .post(
                format!("{c}/users/1/activity"),
                json!({"action": "like", "object": object}),
            )
            .await;
        assert_eq!(status, 200);
        let version = answer["version"].as_u64().unwrap();
        let (status, profile) = client
            .get(format!("{}/users/1?min_version={version}", stack.query_url))
            .await;
        assert_eq!(status, 200, "{profile}");
        assert!(profile["version"].as_u64().unwrap() >= version);
        assert!(
            profile["liked"]
                .as_array()
                .unwrap()
                .contains(&json!(object)),
            "{profile}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_entry_from_a_foreign_producer_is_dead_lettered_and_projection_goes_on() {
    let server = RedisServer::start();
    let mut stack = Stack::start(&server.url(), 1, 1).await;
    let client = Client::new();
    let mut conn = redis(&server);
    let _: String = redis::cmd("XADD")
        .arg("user_activity:{p0}")
        .arg("*")
        .arg(&[
            "type",
            "acted_on",
            "user_id",
            "1",
            "version",
            "2",
            "event_id",
            "not-a-uuid",
            "payload",
            "\u{ff}",
        ])
        .query(&mut conn)
        .unwrap();
    let c = &stack.command_url;
    client.register_duffy(c).await;
    client
        .post(
            format!("{c}/users/1/activity"),
            json!({"action": "kick", "object": "Bugs"}),
        )
        .await;
    let (status, profile) = client
        .get(format!("{}/users/1?min_version=2", stack.query_url))
        .await;
    assert_eq!(
        (status, profile["activity_count"].as_u64()),
        (200, Some(1)),
        "{profile}"
    );
    let projector = stack.projector_urls[0].clone();
    // Both groups reading user_activity (the profile and the most-liked tally) give it up.
    eventually("the dead letters counted", 10, async || {
        client.get(format!("{projector}/healthz")).await.1["dead_letters"] == 2
    })
    .await;
    let letters: Vec<(String, HashMap<String, String>)> = redis::cmd("XRANGE")
        .arg("dead_letters:{p0}")
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let mut groups: Vec<&str> = letters.iter().map(|(_, l)| l["group"].as_str()).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["most_liked", "profile_projection"]);
    for (_, letter) in &letters {
        assert_eq!(letter["stream"], "user_activity:{p0}");
        assert!(letter["reason"].contains("event_id"), "{letter:?}");
    }
    // SIGTERM: the projector finishes what it holds, acks, and exits 0.
    assert!(
        stack.projectors[0].terminate(Duration::from_secs(15)),
        "projector exits 0 on SIGTERM"
    );
    for group in ["profile_projection", "most_liked"] {
        let pending: (u64, Option<String>, Option<String>, redis::Value) = redis::cmd("XPENDING")
            .arg("user_activity:{p0}")
            .arg(group)
            .query(&mut conn)
            .unwrap();
        assert_eq!(pending.0, 0, "{group}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_requests_and_batches_but_never_the_redis_password() {
    let server =
        RedisServer::start_with(&["--user", "app", "on", ">pw-in-url-42", "~*", "&*", "+@all"]);
    let url = format!("redis://app:pw-in-url-42@127.0.0.1:{}/", server.port());
    let (c, p) = (esr_e2e::free_port(), esr_e2e::free_port());
    let spawn = |name: &str, listen: (&str, String)| {
        std::process::Command::new(esr_e2e::binary(name))
            .env("AUTH", "off")
            .env("REDIS_URL", &url)
            .env("RUST_LOG", "trace")
            .env("PROJECTOR_BLOCK_MS", "100")
            .env(listen.0, listen.1)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut command = spawn("command", ("COMMAND_LISTEN", format!("127.0.0.1:{c}")));
    let mut projector = spawn("projector", ("PROJECTOR_LISTEN", format!("127.0.0.1:{p}")));
    esr_e2e::wait_healthy(&format!("http://127.0.0.1:{c}/healthz")).await;
    esr_e2e::wait_healthy(&format!("http://127.0.0.1:{p}/healthz")).await;
    let client = Client::new();
    client
        .register_duffy(&format!("http://127.0.0.1:{c}"))
        .await;
    eventually("the projector applied the event", 10, async || {
        let mut conn = redis(&server);
        redis::cmd("HGET")
            .arg("profile:{p0}:1")
            .arg("version")
            .query::<Option<u64>>(&mut conn)
            .ok()
            .flatten()
            == Some(1)
    })
    .await;
    let mut logs = String::new();
    for child in [&mut command, &mut projector] {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let output = std::mem::replace(child, std::process::Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        logs.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    assert!(
        logs.contains("request") && logs.contains("status=201"),
        "a line per request:\n{logs}"
    );
    assert!(
        logs.contains("batch") && logs.contains("applied=1"),
        "a line per batch:\n{logs}"
    );
    assert!(
        !logs.contains("pw-in-url-42"),
        "the password leaked into the logs:\n{logs}"
    );
}

/// A adds B, B removes A, A adds B again, through separate processes: B lists A at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_friendship_added_removed_and_added_again_is_mirrored_each_time() {
    let server = RedisServer::start();
    let stack = Stack::start(&server.url(), 1, 1).await;
    let client = Client::new();
    let (c, q) = (&stack.command_url, &stack.query_url);
    for user in ["a", "b"] {
        let (status, body) = client
            .post(
                format!("{c}/users"),
                json!({"user_id": user, "name": "N", "surname": "S"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let friends_of = async |user: &str, min_version: u64| {
        let (status, profile) = client
            .get(format!("{q}/users/{user}?min_version={min_version}"))
            .await;
        assert_eq!(status, 200, "{profile}");
        profile["friends"].clone()
    };
    let (_, added) = client
        .post(format!("{c}/users/a/friends"), json!({"friend_id": "b"}))
        .await;
    assert_eq!(added["version"], 2);
    assert_eq!(friends_of("b", 2).await, json!(["a"]), "the first mirror");
    let removed = client
        .send(client.http.delete(format!("{c}/users/b/friends/a")))
        .await;
    assert_eq!(removed.0, 200, "{}", removed.1);
    assert_eq!(
        friends_of("a", 3).await,
        json!([]),
        "the removal mirrored on a"
    );
    let (status, again) = client
        .post(format!("{c}/users/a/friends"), json!({"friend_id": "b"}))
        .await;
    assert_eq!(
        (status, again["version"].as_u64()),
        (200, Some(4)),
        "{again}"
    );
    // b: registered, mirror add, remove, mirror add again.
    assert_eq!(friends_of("b", 4).await, json!(["a"]), "the second mirror");
}

/// Register 6 users with 1 partition, then start a side with 4: it refuses to start, saying
/// both numbers, and nothing is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_configured_with_another_partition_count_refuses_to_start() {
    let server = RedisServer::start();
    let stack = Stack::start(&server.url(), 1, 0).await;
    let client = Client::new();
    for i in 0..6 {
        let (status, body) = client
            .post(
                format!("{}/users", stack.command_url),
                json!({"user_id": format!("u{i}"), "name": "N", "surname": "S"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mut side = std::process::Command::new(esr_e2e::binary("command"))
        .env("AUTH", "off")
        .env("REDIS_URL", server.url())
        .env("REDIS_PARTITIONS", "4")
        .env(
            "COMMAND_LISTEN",
            format!("127.0.0.1:{}", esr_e2e::free_port()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = side.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = side.kill();
            panic!("the command side started with 4 partitions over a store made with 1");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut side.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("created with 1 partition") && stderr.contains("configured with 4"),
        "{stderr}"
    );
    let mut conn = redis(&server);
    let users: Vec<String> = redis::cmd("KEYS").arg("user:*").query(&mut conn).unwrap();
    assert_eq!(users.len(), 6, "{users:?}");
}
