//! Start `redis-server` processes for tests: on free ports, in temporary directories, and
//! removed when dropped. Never touches a server it did not start.
//!
//! A missing `redis-server` fails the test with how to install it; nothing skips itself.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

const INSTALL_HINT: &str = "redis-server is needed for these tests: install Redis 7 \
     (Debian/Ubuntu: `apt-get install redis-server`; macOS: `brew install redis`)";

impl RedisServer {
    /// A standalone server without persistence.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A standalone server with extra `redis-server` arguments, e.g.
    /// `["--appendonly", "yes", "--appendfsync", "always"]`.
    pub fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary directory: {e}"));
        let mut server = Self {
            child: None,
            port: free_port_pair(),
            dir,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn();
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Kill the process (SIGKILL: no chance to save anything) and start it again on the same
    /// port and directory.
    pub fn crash_and_restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kill the process and leave it down.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start it again after [`RedisServer::kill`].
    pub fn restart(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// A `redis-cli`-like call for assertions, on a fresh connection.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        let client = redis::Client::open(self.url())?;
        let mut connection = client.get_connection()?;
        cmd.query(&mut connection)
    }

    /// Wait until at least `replicas` replicas acknowledge writes: a `PUBLISH` (replicated,
    /// yet it leaves no key behind) followed by `WAIT` on the same connection. A replica just
    /// synced acknowledges only after up to a second; until then `WAIT` cannot count it.
    pub fn wait_for_replicas(&self, replicas: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let acknowledged = redis::Client::open(self.url())
                .and_then(|client| client.get_connection())
                .and_then(|mut connection| {
                    redis::cmd("PUBLISH")
                        .arg("testkit:replication-probe")
                        .arg("ping")
                        .exec(&mut connection)?;
                    redis::cmd("WAIT")
                        .arg(replicas)
                        .arg(1000)
                        .query::<usize>(&mut connection)
                });
            if acknowledged.is_ok_and(|n| n >= replicas) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} has no {replicas} replicas acknowledging after 30 s",
            self.port
        );
    }

    /// The port of the primary this server replicates, if it is a replica.
    pub fn primary_port(&self) -> Option<u16> {
        let info: String = self.query(redis::cmd("INFO").arg("replication")).ok()?;
        if !info.contains("role:slave") {
            return None;
        }
        info.lines()
            .find_map(|l| l.strip_prefix("master_port:"))
            .and_then(|p| p.trim().parse().ok())
    }

    fn spawn(&mut self) {
        let dir = self.dir.path();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot start redis-server: {e}"),
        };
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default();
                panic!("redis-server exited with {status}:\n{log}");
            }
            if self.query::<String>(&redis::cmd("PING")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer in 20 s", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of `masters` masters (no replicas), created with `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> Self {
        Self::start_with_replicas(masters, 0)
    }

    /// `masters` masters with `replicas` replicas each, all in sync when this returns.
    pub fn start_with_replicas(masters: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..masters * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--appendonly",
                    "no",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output();
        match output {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "redis-cli --cluster create failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(e) => panic!("cannot run redis-cli: {e}"),
        }
        let cluster = Self { nodes };
        cluster.wait_ok();
        if replicas > 0 {
            for node in &cluster.nodes {
                if node.primary_port().is_none() {
                    node.wait_for_replicas(replicas);
                }
            }
        }
        cluster
    }

    /// The replica of the node at `primary`, by index into `nodes`.
    pub fn replica_of(&self, primary: usize) -> Option<usize> {
        let port = self.nodes.get(primary)?.port;
        self.nodes
            .iter()
            .position(|n| n.primary_port() == Some(port))
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The node serving `slot`, by index into `nodes`.
    pub fn node_of_slot(&self, slot: u16) -> Option<usize> {
        let slots: redis::Value = self.nodes[0]
            .query(redis::cmd("CLUSTER").arg("SLOTS"))
            .ok()?;
        let redis::Value::Array(ranges) = slots else {
            return None;
        };
        for range in ranges {
            let redis::Value::Array(parts) = range else {
                continue;
            };
            let (
                Some(redis::Value::Int(start)),
                Some(redis::Value::Int(end)),
                Some(redis::Value::Array(master)),
            ) = (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            if (*start..=*end).contains(&i64::from(slot))
                && let Some(redis::Value::Int(port)) = master.get(1)
            {
                return self.nodes.iter().position(|n| i64::from(n.port) == *port);
            }
        }
        None
    }

    /// Wait until every node that is up says `cluster_state:ok`.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let all_ok = self.nodes.iter().filter(|n| n.child.is_some()).all(|node| {
                node.query::<String>(redis::cmd("CLUSTER").arg("INFO"))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            });
            if all_ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the cluster did not reach cluster_state:ok in 30 s");
    }
}

/// A port that is free, and whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(address) = listener.local_addr() else {
            continue;
        };
        let port = address.port();
        if !(1024..=55_000).contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair found");
}

/// A TCP proxy on a free port that forwards to a target port, which can be switched: what a
/// virtual IP or a DNS name does when a replica is promoted. Switching drops the connections
/// open to the old target, so clients reconnect to the new one.
pub struct TcpProxy {
    port: u16,
    shared: std::sync::Arc<ProxyShared>,
}

struct ProxyShared {
    target: std::sync::atomic::AtomicU16,
    open: std::sync::Mutex<Vec<std::net::TcpStream>>,
}

impl TcpProxy {
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("proxy: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy: {e}"))
            .port();
        let shared = std::sync::Arc::new(ProxyShared {
            target: std::sync::atomic::AtomicU16::new(target),
            open: std::sync::Mutex::new(Vec::new()),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let target = accepting.target.load(std::sync::atomic::Ordering::SeqCst);
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let pairs = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                if let Ok(mut open) = accepting.open.lock() {
                    open.extend([client, server]);
                }
                for pair in pairs {
                    if let (Ok(mut from), Ok(mut to)) = pair {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                            let _ = from.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
            }
        });
        Self { port, shared }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Forward new connections to `target`, and drop the open ones.
    pub fn switch_to(&self, target: u16) {
        self.shared
            .target
            .store(target, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut open) = self.shared.open.lock() {
            for stream in open.drain(..) {
                let _ = stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
