//! The real binaries, started as processes, on the in-memory store (no Redis configured).

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use esr_e2e::{Service, binary, free_port, wait_healthy};
use serde_json::{Value, json};

#[test]
fn the_demo_plays_the_posts_scenario_and_exits_0() {
    let output = Command::new(binary("all-in-one"))
        .arg("demo")
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_NODES")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "Store: in-memory",
        "> XREAD STREAMS user_updates user_activity user_friends 0 0 0",
        "1) 1) \"user_updates\"",
        "2) 1) \"user_activity\"",
        "3) 1) \"user_friends\"",
        "\"Bugs face\"",
        "friendship is mutual: user 2's friends are [\"1\"]",
        "> GET /users/1",
        "> GET /users/2",
        // Who caused each event: the users themselves, and the friendship policy for 1.
        "\"user:1\"",
        "\"user:2\"",
        "\"system:user:1\"",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // Each category shows its entries with their readable type fields, in order.
    let types: Vec<&str> = stdout
        .lines()
        .zip(stdout.lines().skip(1))
        .filter(|(field, _)| field.trim_end().ends_with("\"type\""))
        .map(|(_, value)| value.trim().split('"').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "registered",
            "registered",
            "acted_on",
            "acted_on",
            "friend_added",
            "friend_added",
            "friend_removed",
            "friend_removed"
        ]
    );
}

struct AllInOne {
    service: Service,
    command: String,
    query: String,
    projector: String,
}

async fn serve_all_in_one() -> AllInOne {
    let (c, q, p) = (free_port(), free_port(), free_port());
    let service = Service::start(
        "all-in-one",
        &["serve"],
        &[
            ("COMMAND_LISTEN", format!("127.0.0.1:{c}")),
            ("QUERY_LISTEN", format!("127.0.0.1:{q}")),
            ("PROJECTOR_LISTEN", format!("127.0.0.1:{p}")),
            ("PROJECTOR_BLOCK_MS", "100".into()),
        ],
    );
    let app = AllInOne {
        service,
        command: format!("http://127.0.0.1:{c}"),
        query: format!("http://127.0.0.1:{q}"),
        projector: format!("http://127.0.0.1:{p}"),
    };
    for side in [&app.command, &app.query, &app.projector] {
        wait_healthy(&format!("{side}/healthz")).await;
    }
    app
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_contract_and_stops_cleanly_on_sigterm() {
    let mut app = serve_all_in_one().await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", app.command))
            .json(&body)
            .send()
    };

    let (status, body) = json_of(
        post(
            "/users",
            json!({"user_id": "1", "name": "Duffy", "surname": "Duck"}),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!((status, body), (201, json!({"user_id": "1", "version": 1})));
    post(
        "/users",
        json!({"user_id": "2", "name": "Bugs", "surname": "Bunny"}),
    )
    .await
    .unwrap();
    let (status, _) = json_of(
        post("/users/1/friends", json!({"friend_id": "2"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, profile) = json_of(
        http.get(format!("{}/users/2?min_version=2", app.query))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(
        profile["friends"],
        json!(["1"]),
        "the friendship shows on both users"
    );

    // Bad input gets a documented status and a JSON error, and the service stays up.
    assert!(esr_e2e::check_bad_input(&app.command, &app.query).await >= 25);

    let (status, health) = json_of(
        http.get(format!("{}/healthz", app.projector))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(health["dead_letters"], 0);
    let groups: Vec<&str> = health["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group"].as_str().unwrap())
        .collect();
    let declared: Vec<&str> = esr_app::social::module()
        .groups()
        .iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(groups, declared);

    assert!(
        app.service.terminate(Duration::from_secs(10)),
        "exits 0 within 10 s of SIGTERM"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_runs_alone_and_serves_healthz() {
    for (name, variable) in [
        ("command", "COMMAND_LISTEN"),
        ("query", "QUERY_LISTEN"),
        ("projector", "PROJECTOR_LISTEN"),
    ] {
        let port = free_port();
        let mut service = Service::start(name, &[], &[(variable, format!("127.0.0.1:{port}"))]);
        wait_healthy(&format!("http://127.0.0.1:{port}/healthz")).await;
        assert!(
            service.terminate(Duration::from_secs(10)),
            "{name} exits 0 on SIGTERM"
        );
    }
}

#[test]
fn an_unreachable_redis_is_reported_without_echoing_the_password() {
    let output = Command::new(binary("command"))
        .env("AUTH", "off")
        .env("REDIS_URL", "redis://app:s3cret-pw@127.0.0.1:1/")
        .env("COMMAND_LISTEN", format!("127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("REDIS_URL"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password leaked: {stderr}"
    );
}

#[test]
fn every_binary_says_its_version() {
    for name in ["all-in-one", "command", "query", "projector"] {
        let output = Command::new(binary(name))
            .arg("--version")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{name} --version failed");
        assert_eq!(
            stdout.trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION")),
            "{name}"
        );
    }
}

/// `LOG_FORMAT=json`: one JSON object per line, and each line a request writes carries the
/// request's correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_each_requests_correlation_id() {
    use std::io::{BufRead, BufReader};
    let port = free_port();
    let mut child = Command::new(binary("command"))
        .env_remove("REDIS_URL")
        .env_remove("REDIS_CLUSTER_NODES")
        .env("STORE", "memory")
        .env("AUTH", "off")
        .env("COMMAND_LISTEN", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&format!("{base}/livez")).await;
    let client = reqwest::Client::new();
    let registered = client
        .post(format!("{base}/users"))
        .header("X-Correlation-Id", "log-me-7")
        .json(&json!({"user_id": "j1", "name": "A", "surname": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let refused = client
        .post(format!("{base}/users"))
        .header("X-Correlation-Id", "log-me-8")
        .json(&json!({"user_id": "j1", "name": "A", "surname": "B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let stderr = child.stderr.take().unwrap();
    let lines: Vec<Value> = BufReader::new(stderr)
        .lines()
        .map(|line| {
            let line = line.unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect();
    let _ = child.wait();
    for (id, status) in [("log-me-7", 201), ("log-me-8", 409)] {
        let logged = lines
            .iter()
            .find(|line| line["span"]["correlation_id"] == id)
            .unwrap_or_else(|| panic!("no line with correlation id {id} in {lines:#?}"));
        assert_eq!(logged["fields"]["status"], status, "{logged}");
        assert_eq!(logged["span"]["route"], "/users", "{logged}");
    }
}
