//! Redis with its memory full (`maxmemory` reached, `noeviction`): commands answer 503 with a
//! clear error, the projector leaves its entries pending without dead-lettering any, and all
//! resumes once memory is freed.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use esr_app::{CommandSettings, Commands, ProjectorSettings, Projectors, http};
use esr_domain::Profile;
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_store::Store;
use esr_testkit::RedisServer;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

mod common;
use common::{id, like, register_with_likes};

async fn like_over_http(router: &axum::Router, user: &str, object: &str) -> (StatusCode, String) {
    let request = Request::post(format!("/users/{user}/activity"))
        .header("content-type", "application/json")
        .body(Body::from(format!(
            r#"{{"action": "like", "object": "{object}"}}"#
        )))
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn profile_version(store: &dyn Store, user: &str) -> u64 {
    esr_app::read_model::stored_view::<Profile>(store, &id(user))
        .await
        .unwrap()
        .map_or(0, |p| p.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_memory_refuses_writes_with_503_loses_nothing_and_resumes() {
    let server = RedisServer::start();
    let store: Arc<dyn Store> = Arc::new(
        RedisStore::connect(RedisConfig::new(Topology::Single(server.url())))
            .await
            .unwrap(),
    );
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let users = ["m1", "m2", "m3"];
    register_with_likes(&commands.of::<esr_domain::User>(), &users.map(id), 1).await;
    let router = http::command_router(
        commands.clone(),
        &esr_app::social::module().into(),
        esr_app::auth::Authentication::Off,
    );
    let settings = ProjectorSettings {
        consumer: "full".into(),
        batch_size: 10,
        block: Duration::from_millis(50),
        claim_idle: Duration::from_millis(100),
        max_deliveries: 2,
        prune_idle: None,
        trim_every: None,
        lease: Duration::from_secs(2),
    };

    // The projector has run (the profiles are at version 2) and is down while users like
    // things.
    let projectors = || {
        Arc::new(Projectors::standard(
            store.clone(),
            commands.of::<esr_domain::User>(),
            settings.clone(),
        ))
    };
    let (stop, shutdown) = watch::channel(false);
    let first_run = tokio::spawn(projectors().run(shutdown));
    for user in users {
        for _ in 0..500 {
            if profile_version(store.as_ref(), user).await == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.send(true).unwrap();
    first_run.await.unwrap().unwrap();
    for user in users {
        commands
            .of::<esr_domain::User>()
            .execute(
                &id(user),
                like("before"),
                &esr_app::command::CommandMeta::new(None, esr_kernel::Actor::Anonymous),
            )
            .await
            .unwrap();
    }

    // Memory fills up with those events not yet projected.
    let () = server
        .query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(1))
        .unwrap();
    let (status, body) = like_over_http(&router, "m1", "refused").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("store_unavailable"), "{body}");
    assert!(body.contains("maxmemory"), "the message says why: {body}");

    // The projector starts now: it can neither take its partitions' leases nor write, so it
    // acks nothing and dead-letters nothing.
    let projectors = projectors();
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));
    // Long enough for many deliveries past the limit of 2.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for user in users {
        assert_eq!(profile_version(store.as_ref(), user).await, 2, "{user}");
    }
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);
    let (groups, _) = projectors.health().await.unwrap();
    let profile = groups
        .iter()
        .find(|g| g.group == "profile_projection")
        .unwrap();
    assert!(profile.pending + profile.lag > 0, "{groups:?}");

    // Memory freed: commands go through, the projector catches up, nothing was lost.
    let () = server
        .query(redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0))
        .unwrap();
    let (status, body) = like_over_http(&router, "m1", "accepted").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    commands
        .of::<esr_domain::User>()
        .execute(
            &id("m2"),
            like("later"),
            &esr_app::command::CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await
        .unwrap();
    let expected = [4, 4, 3];
    for _ in 0..500 {
        let mut versions = vec![];
        for user in users {
            versions.push(profile_version(store.as_ref(), user).await);
        }
        if versions == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (user, version) in users.into_iter().zip(expected) {
        assert_eq!(
            profile_version(store.as_ref(), user).await,
            version,
            "{user}"
        );
    }
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);
    // Every group acks in time (the tally's may trail the profiles' by a batch).
    let mut health = projectors.health().await.unwrap();
    for _ in 0..250 {
        if health.0.iter().all(|g| g.pending == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        health = projectors.health().await.unwrap();
    }
    let (groups, dead) = health;
    assert_eq!(dead, 0);
    assert!(groups.iter().all(|g| g.pending == 0), "{groups:?}");
    stop.send(true).unwrap();
    running.await.unwrap().unwrap();
}
