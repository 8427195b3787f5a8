//! The real binaries as separate processes on a 3-master Redis Cluster the test starts, with
//! 16 partitions: users, groups and most-liked objects, a projector killed midway.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use esr_e2e::Stack;
use esr_testkit::RedisCluster;
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};

async fn post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let response = http.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let response = http.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_and_most_liked_on_cluster_survive_a_killed_projector() {
    const USERS: usize = 60;
    const GROUPS: usize = 3;
    let cluster = RedisCluster::start(3);
    let mut stack = Stack::on_cluster(&cluster.urls(), 16, 2).await;
    let http = reqwest::Client::new();
    let (c, q) = (stack.command_url.clone(), stack.query_url.clone());
    let user = |i: usize| format!("c{i}");

    let send_all = async |commands: Vec<(String, Value)>, expected: u16| {
        let statuses: Vec<(u16, Value)> = stream::iter(commands)
            .map(|(url, body)| post(&http, url, body))
            .buffer_unordered(16)
            .collect()
            .await;
        for (status, body) in statuses {
            assert_eq!(status, expected, "{body}");
        }
    };
    send_all(
        (0..USERS)
            .map(|i| {
                (
                    format!("{c}/users"),
                    json!({"user_id": user(i), "name": "N", "surname": "S"}),
                )
            })
            .collect(),
        201,
    )
    .await;
    send_all(
        (0..GROUPS)
            .map(|g| {
                (
                    format!("{c}/groups"),
                    json!({"group_id": format!("team-{g}"), "name": format!("Team {g}"), "capacity": 20}),
                )
            })
            .collect(),
        201,
    )
    .await;

    // Each user joins team i % 3 and likes objects: user i likes "x0" .. "x{i % 4}".
    let commands = |users: std::ops::Range<usize>| -> Vec<(String, Value)> {
        users
            .flat_map(|i| {
                let mut some = vec![(
                    format!("{c}/groups/team-{}/members", i % GROUPS),
                    json!({"user_id": user(i)}),
                )];
                for o in 0..=i % 4 {
                    some.push((
                        format!("{c}/users/{}/activity", user(i)),
                        json!({"action": "like", "object": format!("x{o}")}),
                    ));
                }
                some
            })
            .collect()
    };
    send_all(commands(0..USERS / 2), 200).await;
    stack.projectors[0].kill();
    send_all(commands(USERS / 2..USERS), 200).await;
    // Group full: team-0 holds 20 of capacity 20.
    let (status, body) = post(
        &http,
        format!("{c}/groups/team-0/members"),
        json!({"user_id": user(1)}),
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (409, Some("group_full")));
    let restarted = stack.start_projector().await;

    let projector = stack.projector_urls[restarted].clone();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, health) = get(&http, format!("{projector}/healthz")).await;
        let done = status == 200
            && health["groups"]
                .as_array()
                .is_some_and(|groups| groups.iter().all(|g| g["lag"] == 0 && g["pending"] == 0));
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "not caught up: {health}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for g in 0..GROUPS {
        let (_, view) = get(&http, format!("{q}/groups/team-{g}")).await;
        let mut members: Vec<String> = (0..USERS).filter(|i| i % GROUPS == g).map(user).collect();
        members.sort();
        assert_eq!(view["members"], json!(members), "team-{g}");
        assert_eq!(view["version"], 22, "created, 20 joins, filled by the last");
    }
    // x0 liked by all 60 users, x1 by 45, x2 by 30, x3 by 15; spread over 16 partitions.
    let (_, top) = get(&http, format!("{q}/objects/top?limit=3")).await;
    assert_eq!(
        top,
        json!([{"object": "x0", "likes": 60}, {"object": "x1", "likes": 45},
               {"object": "x2", "likes": 30}])
    );
    let (_, x3) = get(&http, format!("{q}/objects/x3")).await;
    assert_eq!(x3, json!({"object": "x3", "likes": 15}));
    let (_, profile) = get(&http, format!("{q}/users/{}", user(7))).await;
    assert_eq!(profile["activity_count"], 4);
}
