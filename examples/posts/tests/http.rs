//! The posts served beside the social module, over HTTP: in process on the in-memory store,
//! and as the `posts` binary on a Redis of its own. A post by a registered user published,
//! read with `min_version`, edited and deleted; an unregistered author refused; the routes in
//! the OpenAPI documents.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use esr_app::{Modules, Service};
use esr_store::{MemoryStore, Store};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

struct Sides {
    command: String,
    query: String,
    stop: watch::Sender<bool>,
}

async fn serve() -> Sides {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let command = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let query = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let projector = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sides = Sides {
        command: format!("http://{}", command.local_addr().unwrap()),
        query: format!("http://{}", query.local_addr().unwrap()),
        stop: watch::channel(false).0,
    };
    let modules = Modules::from(vec![esr_app::social::module(), esr_posts::module()]);
    let service = Service::new(store)
        .modules(modules)
        .shutdown(sides.stop.subscribe());
    tokio::spawn(service.serve_all(command, query, projector));
    sides
}

async fn send(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_user_publishes_edits_and_deletes_a_post() {
    let sides = serve().await;
    posts_over_http(&sides.command, &sides.query).await;
    let _ = sides.stop.send(true);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap()
}

/// Kills the binary when the test ends, passed or not.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_posts_binary_serves_both_modules_on_redis() {
    let redis = esr_testkit::RedisServer::start();
    let [command, query, projector] = [free_port(), free_port(), free_port()];
    let _posts = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_posts"))
            .env("REDIS_URL", redis.url())
            .env("AUTH", "off")
            .env("COMMAND_LISTEN", format!("127.0.0.1:{command}"))
            .env("QUERY_LISTEN", format!("127.0.0.1:{query}"))
            .env("PROJECTOR_LISTEN", format!("127.0.0.1:{projector}"))
            .env_remove("REDIS_CLUSTER_NODES")
            .env_remove("STORE")
            .spawn()
            .unwrap(),
    );
    let c = format!("http://127.0.0.1:{command}");
    let ready = async {
        loop {
            if let Ok(answer) = reqwest::get(format!("http://127.0.0.1:{projector}/healthz")).await
                && answer.status().is_success()
            {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), ready)
        .await
        .expect("the posts binary is not healthy within 30 s");
    posts_over_http(&c, &format!("http://127.0.0.1:{query}")).await;
    // The posts' group is created beside the social module's, on the same Redis.
    let groups: redis::Value = redis
        .query(redis::cmd("XINFO").arg("GROUPS").arg("posts:{p0}"))
        .unwrap();
    assert!(format!("{groups:?}").contains("post_view"), "{groups:?}");
}

/// Publish, read, edit, delete and refuse, as a client of `c` (commands) and `q` (reads).
async fn posts_over_http(c: &str, q: &str) {
    use reqwest::Method;

    let ghost = json!({"post_id": "p0", "author": "ghost", "title": "Hi", "body": "x"});
    let (status, body) = send(Method::POST, format!("{c}/posts"), Some(ghost)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("unknown_user")),
        "{body}"
    );

    let ann = json!({"user_id": "ann", "name": "Ann", "surname": "Lee"});
    let (status, body) = send(Method::POST, format!("{c}/users"), Some(ann)).await;
    assert_eq!(status, 201, "{body}");

    let post = json!({"post_id": "p1", "author": "ann", "title": "Hello", "body": "First"});
    let (status, body) = send(Method::POST, format!("{c}/posts"), Some(post)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"post_id": "p1", "version": 1}));

    let (status, view) = send(Method::GET, format!("{q}/posts/p1?min_version=1"), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(
        view,
        json!({"post_id": "p1", "author": "ann", "title": "Hello", "body": "First",
               "edits": 0, "deleted": false, "version": 1})
    );

    let edit = json!({"title": "Hello again"});
    let (status, _) = send(Method::PATCH, format!("{c}/posts/p1"), Some(edit)).await;
    assert_eq!(status, 200);
    let (status, _) = send(Method::DELETE, format!("{c}/posts/p1"), None).await;
    assert_eq!(status, 200);
    let (_, view) = send(Method::GET, format!("{q}/posts/p1?min_version=3"), None).await;
    assert_eq!(
        (&view["title"], &view["edits"], &view["deleted"]),
        (&json!("Hello again"), &json!(1), &json!(true)),
        "{view}"
    );
    let edit = json!({"body": "too late"});
    let (status, body) = send(Method::PATCH, format!("{c}/posts/p1"), Some(edit)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("post_deleted"))
    );
    let (status, body) = send(Method::POST, format!("{c}/posts/p1/restore"), None).await;
    assert_eq!((status, &body["version"]), (200, &json!(4)), "{body}");
    let (_, view) = send(Method::GET, format!("{q}/posts/p1?min_version=4"), None).await;
    assert_eq!(view["deleted"], json!(false), "{view}");
    let (status, body) = send(Method::GET, format!("{q}/posts/bad%20id"), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("invalid_post_id"))
    );

    // Both modules' routes are documented, by the same declarations that serve them.
    let (_, document) = send(Method::GET, format!("{c}/openapi.json"), None).await;
    for path in ["/posts", "/posts/{id}", "/users"] {
        assert!(document["paths"][path].is_object(), "{path} missing");
    }
    let (_, document) = send(Method::GET, format!("{q}/openapi.json"), None).await;
    assert!(document["paths"]["/posts/{id}"]["get"].is_object());
    assert!(document["components"]["schemas"]["PostView"].is_object());
}
