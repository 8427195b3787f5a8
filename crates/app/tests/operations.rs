//! What operators read from every side over HTTP: liveness, readiness and Prometheus metrics.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use esr_app::config::HttpLimits;
use esr_app::{CommandSettings, Commands, ProjectorSettings, QueryService, sides};
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_store::{MemoryStore, Store};
use esr_testkit::RedisServer;
use serde_json::{Value, json};
use tokio::sync::watch;

struct Sides {
    command: SocketAddr,
    query: SocketAddr,
    stop: watch::Sender<bool>,
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// The command and query sides on `store` (no projector).
async fn command_and_query(store: Arc<dyn Store>) -> Sides {
    let (stop, shutdown) = watch::channel(false);
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let (command_listener, command) = listener().await;
    tokio::spawn(sides::command_side(
        commands,
        esr_app::social::module().into(),
        command_listener,
        HttpLimits::default(),
        esr_app::auth::Authentication::Off,
        shutdown.clone(),
    ));
    let (query_listener, query) = listener().await;
    tokio::spawn(sides::query_side(
        Arc::new(QueryService::new(store)),
        esr_app::social::module().into(),
        query_listener,
        HttpLimits::default(),
        esr_app::auth::Authentication::Off,
        shutdown,
    ));
    Sides {
        command,
        query,
        stop,
    }
}

/// A projector side on `store`; its address, and the sender that stops it.
async fn projector(store: Arc<dyn Store>) -> (SocketAddr, watch::Sender<bool>) {
    let (stop, shutdown) = watch::channel(false);
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let (projector_listener, address) = listener().await;
    let settings = ProjectorSettings {
        consumer: format!("ops-{}", address.port()),
        block: Duration::from_millis(50),
        ..ProjectorSettings::default()
    };
    tokio::spawn(sides::projector_side(
        commands,
        esr_app::social::module().into(),
        settings,
        projector_listener,
        HttpLimits::default(),
        shutdown,
    ));
    (address, stop)
}

async fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("http://{address}{path}"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn get_json(address: SocketAddr, path: &str) -> (u16, Value) {
    let (status, body) = get(address, path).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn post(address: SocketAddr, path: &str, body: Value) -> u16 {
    reqwest::Client::new()
        .post(format!("http://{address}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Poll `path` until it answers `status`, for up to 10 s; the last answer.
async fn until(address: SocketAddr, path: &str, status: u16) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = get_json(address, path).await;
        if answer.0 == status || Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_groups_the_store_and_shutdown() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(RedisConfig::new(Topology::Single(server.url())))
            .await
            .unwrap(),
    );
    let sides = command_and_query(store.clone()).await;
    for side in [sides.command, sides.query] {
        assert_eq!(
            get_json(side, "/livez").await,
            (200, json!({"status": "live"}))
        );
        let (status, body) = get_json(side, "/readyz").await;
        assert_eq!(
            (status, &body["error"]),
            (503, &json!("groups_missing")),
            "{body}"
        );
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("profile_projection"),
            "{body}"
        );
    }

    // A projector creates the groups: every side is ready.
    let (projector, stop_projector) = projector(store.clone()).await;
    for side in [projector, sides.command, sides.query] {
        let (status, body) = until(side, "/readyz", 200).await;
        assert_eq!((status, body), (200, json!({"status": "ready"})));
    }

    // Redis gone: not ready, yet alive.
    let mut server = server;
    server.kill();
    for side in [projector, sides.command, sides.query] {
        let (status, body) = until(side, "/readyz", 503).await;
        assert_eq!(
            (status, &body["error"]),
            (503, &json!("store_unavailable")),
            "{body}"
        );
        assert_eq!(get(side, "/livez").await.0, 200);
    }
    let _ = stop_projector.send(true);
    let _ = sides.stop.send(true);
}

/// Shutting down is not ready, while requests in hand still finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_shutting_down_is_not_ready() {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let projectors = esr_app::Projectors::standard(
        store.clone(),
        commands.of::<esr_domain::User>(),
        ProjectorSettings::default(),
    );
    projectors.create_groups().await.unwrap();
    let (stop, shutdown) = watch::channel(false);
    let router = esr_app::http::ops_router(esr_app::http::Ops::new(
        store,
        projectors.handlers(),
        shutdown,
    ));
    let ready = || async {
        let request = axum::http::Request::get("/readyz")
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice::<Value>(&body).unwrap())
    };
    assert_eq!(ready().await.0, 200);
    stop.send(true).unwrap();
    let (status, body) = ready().await;
    assert_eq!((status, &body["error"]), (503, &json!("shutting_down")));
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, l)) => (n, l),
                None => (series, ""),
            };
            let wanted = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            wanted.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    text.lines().any(|line| {
        line.starts_with(&format!("{name}{{"))
            && labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_series_move_under_traffic() {
    let store = Arc::new(MemoryStore::new());
    let shared: Arc<dyn Store> = store.clone();
    let sides = command_and_query(shared.clone()).await;
    // A second command side on the same store: its stale cache and concurrent writes to one
    // user make version conflicts.
    let other = command_and_query(shared.clone()).await;
    let (projector, stop_projector) = projector(shared.clone()).await;
    until(projector, "/readyz", 200).await;

    let before = get(sides.command, "/metrics").await.1;
    let activity = [
        ("side", "command"),
        ("route", "/users/{id}/activity"),
        ("method", "POST"),
        ("status", "200"),
    ];
    let activity_before = sample(&before, "esr_http_requests_total", &activity);

    assert_eq!(
        post(
            sides.command,
            "/users",
            json!({"user_id": "ops1", "name": "A", "surname": "B"})
        )
        .await,
        201
    );
    let mut writes = Vec::new();
    for i in 0..40 {
        let side = if i % 2 == 0 {
            sides.command
        } else {
            other.command
        };
        writes.push(tokio::spawn(post(
            side,
            "/users/ops1/activity",
            json!({"action": "like", "object": format!("o{i}")}),
        )));
    }
    for write in writes {
        assert_eq!(write.await.unwrap(), 200);
    }
    // The same command sent again with its Idempotency-Key is a replay.
    for _ in 0..2 {
        let status = reqwest::Client::new()
            .post(format!("http://{}/users/ops1/activity", sides.command))
            .header("Idempotency-Key", "ops-replay")
            .json(&json!({"action": "like", "object": "again"}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    // An entry that is not an event: dead-lettered by every group that reads its category.
    store.append_foreign(
        &esr_schema::user::USER_ACTIVITY,
        vec![("junk".to_owned(), b"1".to_vec())],
    );
    assert_eq!(get(sides.query, "/users/ops1?min_version=42").await.0, 200);

    let after = get(sides.command, "/metrics").await.1;
    // Requests by route pattern (never the raw path) and status, with a latency histogram.
    assert!(
        sample(&after, "esr_http_requests_total", &activity) >= activity_before + 21.0,
        "{after}"
    );
    assert!(
        !after.contains("/users/ops1/activity"),
        "raw paths are no labels"
    );
    assert!(
        sample(
            &after,
            "esr_http_request_duration_seconds_count",
            &[("side", "command"), ("route", "/users/{id}/activity")]
        ) >= 21.0
    );
    assert!(
        sample(
            &after,
            "esr_http_request_duration_seconds_bucket",
            &[("route", "/users/{id}/activity"), ("le", "+Inf")]
        ) >= 21.0
    );
    // The command runtime: appends timed, conflicts, replays. (Retries after a fresh load are
    // counted too, but two processes cannot be made to race into one here.)
    assert!(
        sample(
            &after,
            "esr_append_duration_seconds_count",
            &[("aggregate", "user")]
        ) >= 41.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "esr_command_conflicts_total",
            &[("aggregate", "user")]
        ) >= 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "esr_command_replays_total",
            &[("aggregate", "user")]
        ) >= 1.0,
        "{after}"
    );

    // The projector's: batches, events applied, claims, dead letters, lag and pending.
    let deadline = Instant::now() + Duration::from_secs(10);
    let scraped = loop {
        let (_, text) = get(projector, "/metrics").await;
        let done = sample(
            &text,
            "esr_projector_dead_lettered_total",
            &[("group", "profile_projection")],
        ) >= 1.0
            && sample(
                &text,
                "esr_projector_lag",
                &[("group", "profile_projection")],
            ) == 0.0;
        if done || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let profile = [("group", "profile_projection")];
    assert!(
        sample(&scraped, "esr_projector_events_applied_total", &profile) >= 42.0,
        "{scraped}"
    );
    assert!(
        sample(&scraped, "esr_projector_batch_size_count", &profile) >= 1.0,
        "{scraped}"
    );
    assert!(
        sample(
            &scraped,
            "esr_projector_batch_duration_seconds_count",
            &profile
        ) >= 1.0
    );
    assert!(
        sample(&scraped, "esr_projector_dead_lettered_total", &profile) >= 1.0,
        "{scraped}"
    );
    assert!(
        has_series(&scraped, "esr_projector_claimed_total", &profile),
        "{scraped}"
    );
    assert!(
        has_series(
            &scraped,
            "esr_projector_lag",
            &[("group", "friendship_policy"), ("partition", "0")]
        ),
        "{scraped}"
    );
    assert!(
        has_series(
            &scraped,
            "esr_projector_pending",
            &[("group", "most_liked"), ("partition", "0")]
        ),
        "{scraped}"
    );
    assert!(
        sample(&scraped, "esr_dead_letters", &[]) >= 1.0,
        "{scraped}"
    );
    let _ = stop_projector.send(true);
    let _ = sides.stop.send(true);
    let _ = other.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_its_correlation_id() {
    let sides = command_and_query(Arc::new(MemoryStore::new())).await;
    let client = reqwest::Client::new();
    let correlation = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-correlation-id")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    // Given by the client: answered back, on success and on errors alike.
    for (method, path, status) in [
        (reqwest::Method::POST, "/users", 201),
        (reqwest::Method::GET, "/users/nobody", 404),
        (reqwest::Method::GET, "/no/such/route", 404),
    ] {
        let address = if method == reqwest::Method::POST {
            sides.command
        } else {
            sides.query
        };
        let response = client
            .request(method, format!("http://{address}{path}"))
            .header("X-Correlation-Id", "trace-me-42")
            .json(&json!({"name": "A", "surname": "B"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        assert_eq!(
            correlation(&response).as_deref(),
            Some("trace-me-42"),
            "{path}"
        );
    }
    // Not given: a new one each time.
    let first = client
        .get(format!("http://{}/livez", sides.query))
        .send()
        .await
        .unwrap();
    let second = client
        .get(format!("http://{}/livez", sides.query))
        .send()
        .await
        .unwrap();
    let (first, second) = (correlation(&first).unwrap(), correlation(&second).unwrap());
    assert_ne!(first, second);
    assert!(uuid::Uuid::parse_str(&first).is_ok(), "{first}");
    let _ = sides.stop.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_a_route_does_not_serve_is_a_json_405_with_allow() {
    let sides = command_and_query(Arc::new(MemoryStore::new())).await;
    let response = reqwest::Client::new()
        .delete(format!("http://{}/users", sides.command))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert!(response.headers().contains_key("x-correlation-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "method_not_allowed", "{body}");
    let _ = sides.stop.send(true);
}

/// What the contract lists for each side: method, path, success status.
const COMMAND_ROUTES: &[(&str, &str, &str)] = &[
    ("post", "/users", "201"),
    ("patch", "/users/{id}", "200"),
    ("post", "/users/{id}/activity", "200"),
    ("post", "/users/{id}/friends", "200"),
    ("delete", "/users/{id}/friends/{friend_id}", "200"),
    ("post", "/groups", "201"),
    ("post", "/groups/{id}/members", "200"),
    ("delete", "/groups/{id}/members/{user_id}", "200"),
];
const QUERY_ROUTES: &[(&str, &str, &str)] = &[
    ("get", "/users/{id}", "200"),
    ("get", "/users/{id}/events", "200"),
    ("get", "/groups/{id}", "200"),
    ("get", "/groups/{id}/events", "200"),
    ("get", "/objects/top", "200"),
    ("get", "/objects/{object}", "200"),
];

fn keys(value: &Value) -> std::collections::BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

/// Every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => found.push(target.clone()),
                    _ => references(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

fn schema_properties(document: &Value, name: &str) -> std::collections::BTreeSet<String> {
    keys(&document["components"]["schemas"][name]["properties"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_documents_list_every_route_with_its_errors_and_true_bodies() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sides = command_and_query(store.clone()).await;
    let (_projector, stop_projector) = projector(store).await;
    let client = reqwest::Client::new();
    for (side, routes, errors) in [
        (
            sides.command,
            COMMAND_ROUTES,
            &[
                "400", "401", "403", "404", "409", "412", "413", "422", "503",
            ][..],
        ),
        (
            sides.query,
            QUERY_ROUTES,
            &["400", "401", "403", "404", "422", "503"][..],
        ),
    ] {
        let (status, document) = get_json(side, "/openapi.json").await;
        assert_eq!(status, 200);
        assert!(
            document["openapi"].as_str().unwrap().starts_with("3.1"),
            "{document}"
        );
        // Every route needs a bearer token.
        assert_eq!(
            document["components"]["securitySchemes"]["bearer"],
            json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
        );
        assert_eq!(document["security"], json!([{"bearer": []}]));
        let mut refs = Vec::new();
        references(&document, &mut refs);
        for target in refs {
            let name = target.trim_start_matches("#/components/schemas/");
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{target} is not in the document"
            );
        }
        let paths = document["paths"].as_object().unwrap();
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, routes.len(), "{:?}", paths.keys());
        for (method, path, success) in routes {
            let operation = &document["paths"][path][method];
            let statuses = keys(&operation["responses"]);
            assert!(statuses.contains(*success), "{method} {path}: {statuses:?}");
            for error in errors {
                assert!(
                    statuses.contains(*error),
                    "{method} {path} lacks {error}: {statuses:?}"
                );
                let body = &operation["responses"][error]["content"]["application/json"]["schema"];
                assert_eq!(
                    body["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {error}"
                );
            }
            // And the route is served: an answer of the route, never "no such route".
            let concrete = path
                .replace("{id}", "nobody")
                .replace("{friend_id}", "someone")
                .replace("{user_id}", "someone")
                .replace("{object}", "nothing");
            let response = client
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("http://{side}{concrete}"),
                )
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert!(
                status != 405 && body["error"] != "not_found",
                "{method} {path}: {status} {body}"
            );
        }
    }

    // The answers described are the answers given.
    let (_, command_doc) = get_json(sides.command, "/openapi.json").await;
    let (_, query_doc) = get_json(sides.query, "/openapi.json").await;
    let registered = client
        .post(format!("http://{}/users", sides.command))
        .json(&json!({"user_id": "doc1", "name": "A", "surname": "B"}))
        .send()
        .await
        .unwrap();
    let registered: Value = registered.json().await.unwrap();
    assert_eq!(
        keys(&registered),
        schema_properties(&command_doc, "UserAccepted")
    );
    post(
        sides.command,
        "/users/doc1/activity",
        json!({"action": "like", "object": "o"}),
    )
    .await;
    let (_, profile) = get_json(sides.query, "/users/doc1?min_version=2").await;
    assert_eq!(
        keys(&profile),
        schema_properties(&query_doc, "Profile"),
        "{profile}"
    );
    assert_eq!(
        keys(&profile["last_activity"]),
        schema_properties(&query_doc, "LastActivity")
    );
    let (_, page) = get_json(sides.query, "/users/doc1/events").await;
    assert_eq!(
        keys(&page),
        schema_properties(&query_doc, "UserEventsPage"),
        "{page}"
    );
    assert_eq!(
        keys(&page["events"][0]),
        schema_properties(&query_doc, "EventBody"),
        "{page}"
    );
    let (_, top) = get_json(sides.query, "/objects/top").await;
    assert_eq!(
        keys(&top[0]),
        schema_properties(&query_doc, "ObjectLikes"),
        "{top}"
    );
    let _ = stop_projector.send(true);
    let _ = sides.stop.send(true);
}

/// A client picks the method: the metrics must not keep a series per made-up one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_methods_do_not_grow_the_metrics() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let sides = command_and_query(store).await;
    let client = reqwest::Client::new();
    // The recorder is the process's, shared with the other tests running beside this one:
    // what is checked is that every method label is one of a fixed set.
    let made_up = |i: usize| reqwest::Method::from_bytes(format!("M{i}").as_bytes()).unwrap();
    for i in 1..=100 {
        for path in ["/users", "/nowhere"] {
            let answer = client
                .request(made_up(i), format!("http://{}{path}", sides.command))
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_client_error(), "{path}");
        }
    }
    let (_, metrics) = get(sides.command, "/metrics").await;
    let known = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE", "other",
    ];
    let methods: std::collections::BTreeSet<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("esr_http_request"))
        .filter_map(|line| line.split("method=\"").nth(1)?.split('"').next())
        .collect();
    assert!(methods.iter().all(|m| known.contains(m)), "{methods:?}");
    assert!(methods.contains("other"), "{metrics}");
    let _ = sides.stop.send(true);
}
