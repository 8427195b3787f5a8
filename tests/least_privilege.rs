//! Least privilege in Redis: each side runs as its own ACL user, made from the lines
//! `esr acl` prints, and the whole flow works with no command or key refused; the query
//! side's user cannot write; a projector whose user loses a permission while running keeps
//! its entries pending (a store fault, never a dead letter) and catches up once it is given
//! back; a side whose user lacks what it needs refuses to start and says what is missing.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use esr_e2e::{Service, binary, free_port, wait_healthy};
use esr_testkit::RedisServer;
use serde_json::{Value, json};

/// Apply every line `esr acl` prints; the users' passwords, by user name.
fn create_users(redis: &RedisServer) -> BTreeMap<String, String> {
    let output = Command::new(binary("esr")).arg("acl").output().unwrap();
    assert!(output.status.success());
    let mut passwords = BTreeMap::new();
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[..2], ["ACL", "SETUSER"], "{line}");
        let mut cmd = redis::cmd("ACL");
        for word in &words[1..] {
            cmd.arg(*word);
        }
        let accepted: String = redis
            .query(&cmd)
            .unwrap_or_else(|e| panic!("Redis refused {line}: {e}"));
        assert_eq!(accepted, "OK");
        let password = words.iter().find_map(|w| w.strip_prefix('>')).unwrap();
        passwords.insert(words[2].to_owned(), password.to_owned());
    }
    assert_eq!(
        passwords.keys().collect::<Vec<_>>(),
        ["esr-admin", "esr-command", "esr-projector", "esr-query"]
    );
    passwords
}

fn url_as(redis: &RedisServer, passwords: &BTreeMap<String, String>, user: &str) -> String {
    format!(
        "redis://{user}:{}@127.0.0.1:{}/",
        passwords[user],
        redis.port()
    )
}

async fn send(method: reqwest::Method, url: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(url: String, body: Value) -> (u16, Value) {
    send(reqwest::Method::POST, &url, Some(body)).await
}

async fn get(url: String) -> (u16, Value) {
    send(reqwest::Method::GET, &url, None).await
}

/// `ACL LOG`: every command or key refused so far, as Redis logged it.
fn refusals(redis: &RedisServer) -> Vec<String> {
    let log: Vec<Vec<redis::Value>> = redis.query(redis::cmd("ACL").arg("LOG")).unwrap();
    log.iter().map(|entry| format!("{entry:?}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_as_its_own_acl_user_runs_the_whole_flow_and_the_query_user_cannot_write() {
    let redis = RedisServer::start();
    let passwords = create_users(&redis);
    let (c, q, p) = (free_port(), free_port(), free_port());
    let side = |name: &str, user: &str, listen: (&'static str, String)| {
        Service::start(
            name,
            &[],
            &[
                ("REDIS_URL", url_as(&redis, &passwords, user)),
                ("PROJECTOR_BLOCK_MS", "100".into()),
                ("PROJECTOR_CLAIM_IDLE_MS", "300".into()),
                ("PROJECTOR_MAX_DELIVERIES", "2".into()),
                listen,
            ],
        )
    };
    // The command side first: it stores the partition count the read-only query side reads.
    let _command = side(
        "command",
        "esr-command",
        ("COMMAND_LISTEN", format!("127.0.0.1:{c}")),
    );
    let command = format!("http://127.0.0.1:{c}");
    wait_healthy(&format!("{command}/livez")).await;
    let _projector = side(
        "projector",
        "esr-projector",
        ("PROJECTOR_LISTEN", format!("127.0.0.1:{p}")),
    );
    let _query = side(
        "query",
        "esr-query",
        ("QUERY_LISTEN", format!("127.0.0.1:{q}")),
    );
    let query = format!("http://127.0.0.1:{q}");
    wait_healthy(&format!("http://127.0.0.1:{p}/healthz")).await;
    wait_healthy(&format!("{query}/readyz")).await;
    wait_healthy(&format!("{command}/readyz")).await;

    // The post's flow, groups and likes: every side's every use.
    for (id, name) in [("1", "Duffy"), ("2", "Bugs")] {
        let (status, body) = post(
            format!("{command}/users"),
            json!({"user_id": id, "name": name, "surname": "Looney"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let like = json!({"action": "like", "object": "carrots"});
    assert_eq!(
        post(format!("{command}/users/1/activity"), like).await.0,
        200
    );
    assert_eq!(
        post(
            format!("{command}/users/1/friends"),
            json!({"friend_id": "2"})
        )
        .await
        .0,
        200
    );
    let group = json!({"group_id": "g", "name": "G", "capacity": 3});
    assert_eq!(post(format!("{command}/groups"), group).await.0, 201);
    assert_eq!(
        post(
            format!("{command}/groups/g/members"),
            json!({"user_id": "2"})
        )
        .await
        .0,
        200
    );
    let (status, two) = get(format!("{query}/users/2?min_version=2")).await;
    assert_eq!((status, &two["friends"]), (200, &json!(["1"])), "{two}");
    let (status, one) = get(format!("{query}/users/1?min_version=3")).await;
    assert_eq!(status, 200, "{one}");
    let (status, group) = get(format!("{query}/groups/g?min_version=2")).await;
    assert_eq!((status, &group["members"]), (200, &json!(["2"])), "{group}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, top) = get(format!("{query}/objects/top")).await;
        if top == json!([{"object": "carrots", "likes": 1}]) {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {top}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, history) = get(format!("{query}/users/1/events")).await;
    assert_eq!(status, 200, "{history}");
    let (status, past) = get(format!("{query}/users/1?at=2020-01-01T00:00:00Z")).await;
    assert_eq!(status, 404, "{past}");
    assert_eq!(
        refusals(&redis),
        Vec::<String>::new(),
        "nothing was refused"
    );

    // The admin tool as its user.
    for args in [
        vec!["groups"],
        vec!["events", "user", "1"],
        vec!["dead-letters", "list"],
    ] {
        let output = Command::new(binary("esr"))
            .args(&args)
            .env("REDIS_URL", url_as(&redis, &passwords, "esr-admin"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "esr {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(
        refusals(&redis),
        Vec::<String>::new(),
        "nothing was refused"
    );

    // The query side's user reads only.
    let client = redis::Client::open(url_as(&redis, &passwords, "esr-query")).unwrap();
    let mut as_query = client.get_multiplexed_async_connection().await.unwrap();
    for cmd in [
        redis::cmd("XADD")
            .arg("user_activity:{p0}")
            .arg("*")
            .arg("f")
            .arg("v")
            .clone(),
        redis::cmd("HSET")
            .arg("profile:{p0}:1")
            .arg("name")
            .arg("Evil")
            .clone(),
        redis::cmd("DEL").arg("user:{p0}:1").clone(),
        redis::cmd("EVAL").arg("return 1").arg(0).clone(),
        redis::cmd("FLUSHALL").clone(),
    ] {
        let refused = cmd
            .query_async::<redis::Value>(&mut as_query)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Some("NOPERM"), "{refused}");
    }
    let (_, one_after) = get(format!("{query}/users/1")).await;
    assert_eq!(one_after["name"], "Duffy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_lost_while_running_dead_letters_nothing_and_a_side_without_one_does_not_start()
 {
    let redis = RedisServer::start();
    let passwords = create_users(&redis);
    let (c, q, p) = (free_port(), free_port(), free_port());
    let env = |user: &str, listen: (&'static str, String)| {
        vec![
            ("REDIS_URL", url_as(&redis, &passwords, user)),
            ("PROJECTOR_BLOCK_MS", "100".into()),
            ("PROJECTOR_CLAIM_IDLE_MS", "200".into()),
            ("PROJECTOR_MAX_DELIVERIES", "2".into()),
            listen,
        ]
    };
    let _command = Service::start(
        "command",
        &[],
        &env("esr-command", ("COMMAND_LISTEN", format!("127.0.0.1:{c}"))),
    );
    let command = format!("http://127.0.0.1:{c}");
    wait_healthy(&format!("{command}/livez")).await;

    // A projector started as the query side's user is refused at start, naming what it lacks.
    let output = Command::new(binary("projector"))
        .env("AUTH", "off")
        .envs(env(
            "esr-query",
            ("PROJECTOR_LISTEN", format!("127.0.0.1:{p}")),
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("esr acl") && stderr.contains("XREADGROUP") && stderr.contains("NOPERM"),
        "{stderr}"
    );

    let _projector = Service::start(
        "projector",
        &[],
        &env(
            "esr-projector",
            ("PROJECTOR_LISTEN", format!("127.0.0.1:{p}")),
        ),
    );
    let projector = format!("http://127.0.0.1:{p}");
    wait_healthy(&format!("{projector}/healthz")).await;
    let _query = Service::start(
        "query",
        &[],
        &env("esr-query", ("QUERY_LISTEN", format!("127.0.0.1:{q}"))),
    );
    let query = format!("http://127.0.0.1:{q}");
    wait_healthy(&format!("{query}/livez")).await;

    // The projector's user loses HSET: no read model can be written.
    let () = redis
        .query(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("esr-projector")
                .arg("-hset"),
        )
        .unwrap();
    let (status, body) = post(
        format!("{command}/users"),
        json!({"user_id": "1", "name": "Duffy", "surname": "Duck"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Many claims past the delivery limit of 2.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, health) = get(format!("{projector}/healthz")).await;
    assert_eq!(health["dead_letters"], 0, "{health}");
    let profile = health["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group"] == "profile_projection")
        .unwrap();
    assert!(profile["pending"].as_u64().unwrap() > 0, "{health}");
    assert_eq!(get(format!("{query}/users/1")).await.0, 404);

    // Given back, it catches up: nothing was lost.
    let () = redis
        .query(
            redis::cmd("ACL")
                .arg("SETUSER")
                .arg("esr-projector")
                .arg("+hset"),
        )
        .unwrap();
    let (status, one) = get(format!("{query}/users/1?min_version=1")).await;
    assert_eq!((status, &one["name"]), (200, &json!("Duffy")), "{one}");
    let (_, health) = get(format!("{projector}/healthz")).await;
    assert_eq!(health["dead_letters"], 0, "{health}");
}
