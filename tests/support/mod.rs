//! Helpers for end-to-end tests: build the service binaries once, start them as processes on
//! free ports, and stop them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The workspace's binaries, built once per test run with the same profile as the tests.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT.get_or_init(build_binaries);
    match dir {
        Ok(dir) => dir.join(name),
        Err(why) => panic!("cannot build the service binaries: {why}"),
    }
}

fn build_binaries() -> Result<PathBuf, String> {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .ok_or("no workspace directory")?;
    // The same profile as the caller (a release soak run needs release services).
    let mut args = vec!["build", "--quiet", "--bins"];
    if !cfg!(debug_assertions) {
        args.push("--release");
    }
    let status = Command::new(env!("CARGO"))
        .current_dir(&workspace)
        .args(&args)
        .status()
        .map_err(|e| format!("cargo did not start: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build failed: {status}"));
    }
    // A test executable lives in <target>/<profile>/deps, a binary in <target>/<profile>.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe.parent().ok_or("no target directory")?;
    Ok(if dir.ends_with("deps") {
        dir.parent().map_or_else(|| dir.to_owned(), PathBuf::from)
    } else {
        dir.to_owned()
    })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("no free port: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("no local address: {e}"))
        .port()
}

/// A started process, killed when dropped so a failed test leaves nothing behind.
pub struct Service {
    pub child: Child,
    pub name: String,
}

impl Service {
    /// Start `name` on loopback with `AUTH=off` (the tests that predate authentication; a test
    /// of authentication sets `AUTH` itself in `env`), and on the in-memory store unless `env`
    /// names a Redis.
    pub fn start(name: &str, args: &[&str], env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary(name));
        command
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("REDIS_CLUSTER_NODES")
            .env_remove("AUTH_JWT_KEY_FILE")
            .env_remove("AUTH_JWKS_URL")
            .env_remove("AUTH_ISSUER")
            .env_remove("AUTH_AUDIENCE")
            .env("AUTH", "off")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let names_redis = env
            .iter()
            .any(|(key, _)| matches!(*key, "REDIS_URL" | "REDIS_CLUSTER_NODES" | "STORE"));
        if !names_redis {
            command.env("STORE", "memory");
        }
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            child,
            name: name.to_owned(),
        }
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Send SIGTERM and wait for the exit; returns whether it exited successfully in time.
    pub fn terminate(&mut self, within: Duration) -> bool {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        if !sent.is_ok_and(|s| s.success()) {
            return false;
        }
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `url` answers 200.
pub async fn wait_healthy(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(url).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not become healthy in 30 s");
}

/// The three sides as separate processes on one Redis, plus the ports they listen on.
pub struct Stack {
    pub command: Service,
    pub query: Service,
    pub projectors: Vec<Service>,
    pub command_url: String,
    pub query_url: String,
    pub projector_urls: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Stack {
    /// Command side, query side and `projectors` projector processes on `redis_url`.
    pub async fn start(redis_url: &str, partitions: u32, projectors: usize) -> Self {
        Self::start_on(("REDIS_URL", redis_url.to_owned()), partitions, projectors).await
    }

    /// The same on a Redis Cluster given by its node URLs.
    pub async fn on_cluster(nodes: &[String], partitions: u32, projectors: usize) -> Self {
        let nodes = ("REDIS_CLUSTER_NODES", nodes.join(","));
        Self::start_on(nodes, partitions, projectors).await
    }

    async fn start_on(redis: (&'static str, String), partitions: u32, projectors: usize) -> Self {
        let env = vec![
            redis,
            ("REDIS_PARTITIONS", partitions.to_string()),
            ("PROJECTOR_BLOCK_MS", "200".to_owned()),
            ("PROJECTOR_CLAIM_IDLE_MS", "1000".to_owned()),
        ];
        let (c, q) = (free_port(), free_port());
        let with = |extra: (&'static str, String)| {
            let mut all = env.clone();
            all.push(extra);
            all
        };
        let command = Service::start(
            "command",
            &[],
            &with(("COMMAND_LISTEN", format!("127.0.0.1:{c}"))),
        );
        let query = Service::start(
            "query",
            &[],
            &with(("QUERY_LISTEN", format!("127.0.0.1:{q}"))),
        );
        let mut stack = Self {
            command,
            query,
            projectors: Vec::new(),
            command_url: format!("http://127.0.0.1:{c}"),
            query_url: format!("http://127.0.0.1:{q}"),
            projector_urls: Vec::new(),
            env,
        };
        for _ in 0..projectors {
            stack.start_projector().await;
        }
        wait_healthy(&format!("{}/healthz", stack.command_url)).await;
        wait_healthy(&format!("{}/healthz", stack.query_url)).await;
        stack
    }

    /// One more projector process; returns its index.
    pub async fn start_projector(&mut self) -> usize {
        let port = free_port();
        let mut env = self.env.clone();
        env.push(("PROJECTOR_LISTEN", format!("127.0.0.1:{port}")));
        self.projectors.push(Service::start("projector", &[], &env));
        let url = format!("http://127.0.0.1:{port}");
        wait_healthy(&format!("{url}/healthz")).await;
        self.projector_urls.push(url);
        self.projectors.len() - 1
    }
}

/// Bad input to every route gets its documented status and a JSON error; returns how many
/// requests were checked. Expects user `1` to be registered.
pub async fn check_bad_input(command_url: &str, query_url: &str) -> usize {
    let http = reqwest::Client::new();
    let long = "x".repeat(65);
    let json = |request: reqwest::RequestBuilder, body: serde_json::Value| request.json(&body);
    let raw = |request: reqwest::RequestBuilder, body: &'static str| {
        request
            .header("content-type", "application/json")
            .body(body)
    };
    let c = command_url;
    let q = query_url;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        // Malformed JSON on every command route with a body.
        (raw(http.post(format!("{c}/users")), "{oops"), 400),
        (raw(http.patch(format!("{c}/users/1")), "{\"name\": "), 400),
        (raw(http.post(format!("{c}/users/1/activity")), "nope"), 400),
        (
            raw(http.post(format!("{c}/users/1/friends")), "{\"friend_id\":"),
            400,
        ),
        // Bodies over the limit.
        (
            json(
                http.post(format!("{c}/users")),
                serde_json::json!({"name": "x".repeat(20_000), "surname": "y"}),
            ),
            413,
        ),
        (
            json(
                http.post(format!("{c}/users/1/activity")),
                serde_json::json!({"action": "comment", "object": "o", "text": "x".repeat(20_000)}),
            ),
            413,
        ),
        // Ids that could reach into Redis key syntax, or are too long.
        (
            json(
                http.post(format!("{c}/users")),
                serde_json::json!({"user_id": "a{b}", "name": "A", "surname": "B"}),
            ),
            422,
        ),
        (
            json(
                http.post(format!("{c}/users")),
                serde_json::json!({"user_id": long, "name": "A", "surname": "B"}),
            ),
            422,
        ),
        (
            json(
                http.patch(format!("{c}/users/a%7Bb%7D")),
                serde_json::json!({"name": "A"}),
            ),
            422,
        ),
        (
            json(
                http.post(format!("{c}/users/{long}/activity")),
                serde_json::json!({"action": "kick", "object": "x"}),
            ),
            422,
        ),
        (
            json(
                http.post(format!("{c}/users/1/friends")),
                serde_json::json!({"friend_id": "a:b"}),
            ),
            422,
        ),
        (http.delete(format!("{c}/users/1/friends/a%7Bb%7D")), 422),
        (http.get(format!("{q}/users/a%7Bb%7D")), 422),
        (http.get(format!("{q}/users/{long}/events")), 422),
        // Wrong types and bad values.
        (
            json(
                http.post(format!("{c}/users")),
                serde_json::json!({"name": 5, "surname": "B"}),
            ),
            422,
        ),
        (
            json(
                http.patch(format!("{c}/users/1")),
                serde_json::json!({"birth_date": "17/04/1937"}),
            ),
            422,
        ),
        (
            json(
                http.post(format!("{c}/users/1/activity")),
                serde_json::json!({"action": 7, "object": "x"}),
            ),
            422,
        ),
        (
            json(
                http.post(format!("{c}/users/1/friends")),
                serde_json::json!({"friend_id": ["2"]}),
            ),
            422,
        ),
        (http.get(format!("{q}/users/1?at=yesterday")), 422),
        (http.get(format!("{q}/users/1/events?limit=0")), 422),
        (http.get(format!("{q}/users/1?min_version=soon")), 400),
        // Unknown users.
        (
            json(
                http.patch(format!("{c}/users/ghost")),
                serde_json::json!({"name": "A"}),
            ),
            404,
        ),
        (
            json(
                http.post(format!("{c}/users/ghost/activity")),
                serde_json::json!({"action": "kick", "object": "x"}),
            ),
            404,
        ),
        (
            json(
                http.post(format!("{c}/users/ghost/friends")),
                serde_json::json!({"friend_id": "1"}),
            ),
            404,
        ),
        (http.delete(format!("{c}/users/ghost/friends/1")), 404),
        (http.get(format!("{q}/users/ghost")), 404),
        (http.get(format!("{q}/users/ghost/events")), 404),
    ];
    let checked = cases.len();
    for (request, want) in cases {
        let shown = format!("{request:?}");
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{shown}: {e}"));
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        assert_eq!(status, want, "{shown}: {body}");
        assert!(
            body["error"].is_string() && body["message"].is_string(),
            "{shown}: not a JSON error: {body}"
        );
    }
    for url in [format!("{c}/healthz"), format!("{q}/healthz")] {
        let healthy = http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        assert!(healthy, "{url} still healthy after bad input");
    }
    checked
}
