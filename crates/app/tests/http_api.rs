//! The HTTP contract the README documents, in process: routes, statuses, JSON errors, `ETag`,
//! `If-Match`, `Idempotency-Key`, `min_version`, `at`, history paging, body limit, ids.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use esr_app::{CommandSettings, Commands, ProjectorSettings, Projectors, QueryService, http};
use esr_store::{MemoryStore, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

struct App {
    commands: Router,
    queries: Router,
    _stop: watch::Sender<bool>,
}

fn app() -> App {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let mut queries = QueryService::new(store.clone());
    queries.max_wait = Duration::from_millis(1500);
    let settings = ProjectorSettings {
        block: Duration::from_millis(20),
        ..ProjectorSettings::default()
    };
    let projectors = Arc::new(Projectors::standard(
        store,
        commands.of::<esr_domain::User>(),
        settings,
    ));
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(projectors.run(shutdown));
    App {
        commands: http::command_router(
            commands,
            &esr_app::social::module().into(),
            esr_app::auth::Authentication::Off,
        ),
        queries: http::query_router(
            Arc::new(queries),
            &esr_app::social::module().into(),
            esr_app::auth::Authentication::Off,
        ),
        _stop: stop,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

async fn send(
    router: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = match body {
        Some(text) => request
            .header("content-type", "application/json")
            .body(Body::from(text.to_owned())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
    Answer {
        status,
        headers,
        body,
    }
}

impl App {
    async fn post(&self, uri: &str, body: Value) -> Answer {
        send(
            &self.commands,
            Method::POST,
            uri,
            Some(&body.to_string()),
            &[],
        )
        .await
    }

    async fn get(&self, uri: &str) -> Answer {
        send(&self.queries, Method::GET, uri, None, &[]).await
    }

    async fn register(&self, id: &str) {
        let answer = self
            .post(
                "/users",
                json!({"user_id": id, "name": "Duffy", "surname": "Duck"}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    }
}

fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["error"], code, "{}", answer.body);
    assert!(
        answer.body["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn register_answers_201_with_version_etag_and_location() {
    let app = app();
    let answer = app
        .post(
            "/users",
            json!({"user_id": "1", "name": "Duffy", "surname": "Duck", "birth_date": "1937-04-17"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    assert_eq!(answer.body, json!({"user_id": "1", "version": 1}));
    assert_eq!(answer.headers["etag"], "\"1\"");
    assert_eq!(answer.headers["location"], "/users/1");
}

/// A client retrying a registration it sent without an id (the answer was lost) must not
/// register a second user: the same key gets the same generated id, and the first answer.
#[tokio::test]
async fn a_keyed_registration_without_an_id_registers_once() {
    let app = app();
    let body = r#"{"name": "Bugs", "surname": "Bunny"}"#;
    let keyed = |key: &'static str| {
        let app = &app;
        async move {
            send(
                &app.commands,
                Method::POST,
                "/users",
                Some(body),
                &[("idempotency-key", key)],
            )
            .await
        }
    };
    let first = keyed("signup-7").await;
    let retry = keyed("signup-7").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let other = keyed("signup-8").await;
    assert_ne!(other.body["user_id"], first.body["user_id"]);

    // Groups too.
    let group = r#"{"name": "Looney", "capacity": 3}"#;
    let create = async || {
        send(
            &app.commands,
            Method::POST,
            "/groups",
            Some(group),
            &[("idempotency-key", "team-1")],
        )
        .await
    };
    let (first, retry) = (create().await, create().await);
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(retry.body, first.body);
}

#[tokio::test]
async fn register_without_an_id_generates_one() {
    let app = app();
    let answer = app
        .post("/users", json!({"name": "Bugs", "surname": "Bunny"}))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED);
    let id = answer.body["user_id"].as_str().unwrap();
    assert!(esr_schema::UserId::parse(id).is_ok());
    let profile = app.get(&format!("/users/{id}?min_version=1")).await;
    assert_eq!(profile.body["name"], "Bugs");
}

#[tokio::test]
async fn every_command_route_works_and_the_profile_shows_it() {
    let app = app();
    app.register("1").await;
    app.register("2").await;
    let patch = send(
        &app.commands,
        Method::PATCH,
        "/users/1",
        Some(r#"{"name": "Daffy"}"#),
        &[],
    )
    .await;
    assert_eq!(patch.status, StatusCode::OK);
    assert_eq!(patch.body["version"], 2);
    let like = app
        .post(
            "/users/1/activity",
            json!({"action": "like", "object": "carrots"}),
        )
        .await;
    assert_eq!(like.body["version"], 3);
    let comment = app
        .post(
            "/users/1/activity",
            json!({"action": "comment", "object": "post-7", "text": "Hoo hoo!"}),
        )
        .await;
    assert_eq!(comment.status, StatusCode::OK);
    let add = app
        .post("/users/1/friends", json!({"friend_id": "2"}))
        .await;
    assert_eq!(add.body, json!({"user_id": "1", "version": 5}));

    let profile = app.get("/users/1?min_version=5").await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.headers["etag"], "\"5\"");
    let p = &profile.body;
    assert_eq!(
        (p["name"].as_str(), p["surname"].as_str()),
        (Some("Daffy"), Some("Duck"))
    );
    assert_eq!(p["friends"], json!(["2"]));
    assert_eq!(p["liked"], json!(["carrots"]));
    assert_eq!(p["activity_count"], 2);
    assert_eq!(p["last_activity"]["action"], "comment");
    assert_eq!(p["version"], 5);

    // The policy makes it mutual.
    let other = app.get("/users/2?min_version=2").await;
    assert_eq!(other.body["friends"], json!(["1"]));

    let remove = send(
        &app.commands,
        Method::DELETE,
        "/users/1/friends/2",
        None,
        &[],
    )
    .await;
    assert_eq!(remove.body["version"], 6);
    let other = app.get("/users/2?min_version=3").await;
    assert_eq!(other.body["friends"], json!([]));
}

#[tokio::test]
async fn domain_rules_answer_409_and_write_nothing() {
    let app = app();
    app.register("1").await;
    assert_error(
        &app.post(
            "/users",
            json!({"user_id": "1", "name": "A", "surname": "B"}),
        )
        .await,
        StatusCode::CONFLICT,
        "already_registered",
    );
    assert_error(
        &app.post("/users/1/friends", json!({"friend_id": "1"}))
            .await,
        StatusCode::CONFLICT,
        "friend_with_self",
    );
    assert_error(
        &app.post("/users/1/friends", json!({"friend_id": "nobody"}))
            .await,
        StatusCode::CONFLICT,
        "friend_not_registered",
    );
    let remove = send(
        &app.commands,
        Method::DELETE,
        "/users/1/friends/nobody",
        None,
        &[],
    )
    .await;
    assert_error(&remove, StatusCode::CONFLICT, "not_friends");
    let history = app.get("/users/1/events").await;
    assert_eq!(
        history.body["version"], 1,
        "nothing appended: {}",
        history.body
    );
}

#[tokio::test]
async fn unknown_users_answer_404_on_every_route() {
    let app = app();
    assert_error(
        &app.post(
            "/users/ghost/activity",
            json!({"action": "kick", "object": "x"}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
    assert_error(
        &app.post("/users/ghost/friends", json!({"friend_id": "x"}))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
    let patch = send(
        &app.commands,
        Method::PATCH,
        "/users/ghost",
        Some(r#"{"name": "X"}"#),
        &[],
    )
    .await;
    assert_error(&patch, StatusCode::NOT_FOUND, "unknown_user");
    let delete = send(
        &app.commands,
        Method::DELETE,
        "/users/ghost/friends/x",
        None,
        &[],
    )
    .await;
    assert_error(&delete, StatusCode::NOT_FOUND, "unknown_user");
    assert_error(
        &app.get("/users/ghost").await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
    assert_error(
        &app.get("/users/ghost/events").await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
    assert_error(
        &app.get("/users/ghost?at=2020-01-01T00:00:00Z").await,
        StatusCode::NOT_FOUND,
        "unknown_user",
    );
}

#[tokio::test]
async fn malformed_bodies_answer_400_and_wrong_types_422() {
    let app = app();
    app.register("1").await;
    let not_json = send(
        &app.commands,
        Method::POST,
        "/users",
        Some("{name: Duffy"),
        &[],
    )
    .await;
    assert_error(&not_json, StatusCode::BAD_REQUEST, "malformed_request");
    let wrong_type = send(
        &app.commands,
        Method::POST,
        "/users",
        Some(r#"{"name": 5, "surname": "Duck"}"#),
        &[],
    )
    .await;
    assert_error(
        &wrong_type,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    let missing = send(
        &app.commands,
        Method::POST,
        "/users/1/activity",
        Some(r#"{"action": "kick"}"#),
        &[],
    )
    .await;
    assert_error(&missing, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    // The post's spelling is refused, not silently dropped.
    let typo = send(
        &app.commands,
        Method::POST,
        "/users",
        Some(r#"{"name": "D", "surename": "Duck"}"#),
        &[],
    )
    .await;
    assert_error(&typo, StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert_error(
        &app.post(
            "/users/1/activity",
            json!({"action": "teleport", "object": "x"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    assert_error(
        &app.post(
            "/users",
            json!({"name": "D", "surname": "D", "birth_date": "17/04/1937"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    assert_error(
        &app.post("/users", json!({"name": "", "surname": "D"}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    let no_content_type = send(&app.commands, Method::POST, "/users/1/friends", None, &[]).await;
    assert_error(
        &no_content_type,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
}

#[tokio::test]
async fn a_body_over_the_limit_answers_413() {
    let app = app();
    let huge = json!({"name": "x".repeat(http::BODY_LIMIT_BYTES), "surname": "Duck"}).to_string();
    let answer = send(&app.commands, Method::POST, "/users", Some(&huge), &[]).await;
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
}

#[tokio::test]
async fn invalid_ids_answer_422_in_paths_and_bodies() {
    let app = app();
    app.register("1").await;
    let long = "x".repeat(65);
    for bad in ["a%7Bb%7D", long.as_str(), "a:b"] {
        assert_error(
            &app.get(&format!("/users/{bad}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_user_id",
        );
        assert_error(
            &app.post(
                &format!("/users/{bad}/activity"),
                json!({"action": "kick", "object": "x"}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_user_id",
        );
    }
    assert_error(
        &app.post(
            "/users",
            json!({"user_id": "a{b}", "name": "A", "surname": "B"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_user_id",
    );
    assert_error(
        &app.post("/users/1/friends", json!({"friend_id": long}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_user_id",
    );
}

#[tokio::test]
async fn if_match_answers_412_on_a_stale_version_and_accepts_the_current_one() {
    let app = app();
    app.register("1").await;
    let kick = r#"{"action": "kick", "object": "Bugs"}"#;
    let stale = send(
        &app.commands,
        Method::POST,
        "/users/1/activity",
        Some(kick),
        &[("if-match", "\"0\"")],
    )
    .await;
    assert_error(&stale, StatusCode::PRECONDITION_FAILED, "version_mismatch");
    let current = send(
        &app.commands,
        Method::POST,
        "/users/1/activity",
        Some(kick),
        &[("if-match", "\"1\"")],
    )
    .await;
    assert_eq!(current.status, StatusCode::OK);
    assert_eq!(current.headers["etag"], "\"2\"");
    let garbage = send(
        &app.commands,
        Method::POST,
        "/users/1/activity",
        Some(kick),
        &[("if-match", "soon")],
    )
    .await;
    assert_error(&garbage, StatusCode::BAD_REQUEST, "malformed_request");
}

#[tokio::test]
async fn the_same_idempotency_key_twice_appends_once_and_answers_the_same() {
    let app = app();
    app.register("1").await;
    let kick = r#"{"action": "kick", "object": "Bugs"}"#;
    let headers = [("idempotency-key", "kick-42")];
    let (first, second) = tokio::join!(
        send(
            &app.commands,
            Method::POST,
            "/users/1/activity",
            Some(kick),
            &headers
        ),
        send(
            &app.commands,
            Method::POST,
            "/users/1/activity",
            Some(kick),
            &headers
        ),
    );
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.body, second.body);
    let history = app.get("/users/1/events").await;
    assert_eq!(
        history.body["version"], 2,
        "one event appended: {}",
        history.body
    );
}

/// The same key with another body is the client's mistake, not a retry: 422, nothing appended,
/// and the key still answers its first request.
#[tokio::test]
async fn an_idempotency_key_sent_again_with_another_body_is_refused() {
    let app = app();
    app.register("1").await;
    let act = |object: &'static str| {
        let app = &app;
        async move {
            send(
                &app.commands,
                Method::POST,
                "/users/1/activity",
                Some(&json!({"action": "like", "object": object}).to_string()),
                &[("idempotency-key", "like-1")],
            )
            .await
        }
    };
    let first = act("carrots").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_error(
        &act("lettuce").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    );
    let retry = act("carrots").await;
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.headers["idempotent-replayed"], "true");
    let history = app.get("/users/1/events").await;
    assert_eq!(history.body["version"], 2, "{}", history.body);
}

/// A key names one request whatever its target: sent again for another user, it is refused
/// (422), and that user's stream is untouched.
#[tokio::test]
async fn an_idempotency_key_sent_again_for_another_user_is_refused() {
    let app = app();
    app.register("1").await;
    app.register("2").await;
    let act = |user: &'static str| {
        let app = &app;
        async move {
            send(
                &app.commands,
                Method::POST,
                &format!("/users/{user}/activity"),
                Some(&json!({"action": "like", "object": "carrots"}).to_string()),
                &[("idempotency-key", "like-once")],
            )
            .await
        }
    };
    let first = act("1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_error(
        &act("2").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    );
    let history = app.get("/users/2/events").await;
    assert_eq!(history.body["version"], 1, "{}", history.body);
}

#[tokio::test]
async fn correlation_ids_flow_from_the_request_into_the_events() {
    let app = app();
    let answer = send(
        &app.commands,
        Method::POST,
        "/users",
        Some(r#"{"user_id": "1", "name": "D", "surname": "D"}"#),
        &[("x-correlation-id", "trace-7")],
    )
    .await;
    assert_eq!(answer.headers["x-correlation-id"], "trace-7");
    let history = app.get("/users/1/events").await;
    assert_eq!(history.body["events"][0]["correlation_id"], "trace-7");
}

#[tokio::test]
async fn history_pages_with_from_and_limit() {
    let app = app();
    app.register("1").await;
    for i in 0..4 {
        app.post(
            "/users/1/activity",
            json!({"action": "like", "object": format!("o{i}")}),
        )
        .await;
    }
    let page = app.get("/users/1/events?from=2&limit=2").await;
    assert_eq!(page.status, StatusCode::OK);
    let versions: Vec<u64> = page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [2, 3]);
    assert_eq!(page.body["next_from"], 4);
    assert_eq!(page.body["events"][0]["type"], "acted_on");
    assert_eq!(page.body["events"][0]["data"]["object"], "o0");
    let last = app.get("/users/1/events?from=4&limit=10").await;
    assert_eq!(last.body["next_from"], Value::Null);
    assert_error(
        &app.get("/users/1/events?limit=0").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
    assert_error(
        &app.get("/users/1/events?from=minus").await,
        StatusCode::BAD_REQUEST,
        "malformed_request",
    );
}

#[tokio::test]
async fn at_shows_the_profile_as_it_was_then() {
    let app = app();
    app.register("1").await;
    app.post(
        "/users/1/activity",
        json!({"action": "like", "object": "carrots"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let between = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;
    app.post(
        "/users/1/activity",
        json!({"action": "dislike", "object": "carrots"}),
    )
    .await;
    let then = app
        .get(&format!("/users/1?at={}", between.replace('+', "%2B")))
        .await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.body);
    assert_eq!(then.body["liked"], json!(["carrots"]));
    assert_eq!(then.body["version"], 2);
    let now = app.get("/users/1?min_version=3").await;
    assert_eq!(now.body["liked"], json!([]));
    assert_error(
        &app.get("/users/1?at=yesterday").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
}

/// A version written but not yet projected (no projector runs here) is waited for, up to the
/// longest wait, then answered 504.
#[tokio::test]
async fn min_version_says_clearly_when_it_was_not_reached() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let mut queries = QueryService::new(store);
    queries.max_wait = Duration::from_millis(300);
    let queries = http::query_router(
        Arc::new(queries),
        &esr_app::social::module().into(),
        esr_app::auth::Authentication::Off,
    );
    let commands = http::command_router(
        commands,
        &esr_app::social::module().into(),
        esr_app::auth::Authentication::Off,
    );
    let registered = send(
        &commands,
        Method::POST,
        "/users",
        Some(r#"{"user_id": "1", "name": "D", "surname": "D"}"#),
        &[],
    )
    .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{}",
        registered.body
    );
    let answer = send(&queries, Method::GET, "/users/1?min_version=1", None, &[]).await;
    assert_error(
        &answer,
        StatusCode::GATEWAY_TIMEOUT,
        "min_version_not_reached",
    );
}

#[tokio::test]
async fn healthz_and_unknown_routes() {
    let app = app();
    let health = send(&app.commands, Method::GET, "/healthz", None, &[]).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let health = app.get("/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_error(&app.get("/nope").await, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_take_members_up_to_their_capacity_and_show_them_sorted() {
    let app = app();
    for user in ["1", "2", "3"] {
        app.register(user).await;
    }
    let created = app
        .post(
            "/groups",
            json!({"group_id": "looney", "name": "Looney Tunes", "capacity": 2}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body, json!({"group_id": "looney", "version": 1}));
    assert_eq!(created.headers["location"], "/groups/looney");

    let join = |user: &'static str| {
        let app = &app;
        async move {
            app.post("/groups/looney/members", json!({"user_id": user}))
                .await
        }
    };
    assert_eq!(join("2").await.status, StatusCode::OK);
    let second = join("1").await;
    // The second join took the last place: member_joined and group_filled, versions 3 and 4.
    assert_eq!(second.body, json!({"group_id": "looney", "version": 4}));
    assert_error(&join("1").await, StatusCode::CONFLICT, "already_member");
    assert_error(&join("3").await, StatusCode::CONFLICT, "group_full");
    assert_error(
        &join("ghost").await,
        StatusCode::CONFLICT,
        "user_not_registered",
    );
    assert_error(
        &app.post("/groups/nobody/members", json!({"user_id": "1"}))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_group",
    );
    for capacity in [0, 10_001] {
        assert_error(
            &app.post("/groups", json!({"name": "x", "capacity": capacity}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        );
    }

    let view = app.get("/groups/looney?min_version=4").await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.body);
    assert_eq!(
        view.body,
        json!({"group_id": "looney", "name": "Looney Tunes", "capacity": 2,
               "members": ["1", "2"], "member_count": 2, "version": 4})
    );

    let left = send(
        &app.commands,
        Method::DELETE,
        "/groups/looney/members/2",
        None,
        &[],
    )
    .await;
    assert_eq!(left.status, StatusCode::OK, "{}", left.body);
    let again = send(
        &app.commands,
        Method::DELETE,
        "/groups/looney/members/2",
        None,
        &[],
    )
    .await;
    assert_error(&again, StatusCode::CONFLICT, "not_member");
    let view = app.get("/groups/looney?min_version=5").await;
    assert_eq!(view.body["members"], json!(["1"]));
    let history = app.get("/groups/looney/events").await;
    let types: Vec<&str> = history.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "group_created",
            "member_joined",
            "member_joined",
            "group_filled",
            "member_left"
        ]
    );
    assert_error(
        &app.get("/groups/nobody").await,
        StatusCode::NOT_FOUND,
        "unknown_group",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn most_liked_objects_count_every_like_once_in_order() {
    let app = app();
    let mut last = 0;
    for (user, objects) in [
        ("1", vec!["carrots", "lettuce", "carrots"]),
        ("2", vec!["carrots", "anvils", "lettuce"]),
    ] {
        app.register(user).await;
        for object in objects {
            let liked = app
                .post(
                    &format!("/users/{user}/activity"),
                    json!({"action": "like", "object": object}),
                )
                .await;
            assert_eq!(liked.status, StatusCode::OK, "{}", liked.body);
            last = liked.body["version"].as_u64().unwrap();
        }
        // A kick is no like.
        app.post(
            &format!("/users/{user}/activity"),
            json!({"action": "kick", "object": "anvils"}),
        )
        .await;
    }
    assert!(last > 0);
    // The tally is projected at its own pace: wait (bounded) for the counts it must reach.
    let expected = json!([{"object": "carrots", "likes": 3},
                          {"object": "lettuce", "likes": 2},
                          {"object": "anvils", "likes": 1}]);
    let mut top = Value::Null;
    for _ in 0..250 {
        top = app.get("/objects/top").await.body;
        if top == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(top, expected);
    assert_eq!(
        app.get("/objects/top?limit=2").await.body,
        json!([{"object": "carrots", "likes": 3}, {"object": "lettuce", "likes": 2}])
    );
    assert_eq!(
        app.get("/objects/lettuce").await.body,
        json!({"object": "lettuce", "likes": 2})
    );
    assert_eq!(
        app.get("/objects/nothing").await.status,
        StatusCode::NOT_FOUND
    );
    assert_error(
        &app.get("/objects/top?limit=101").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_field",
    );
}
