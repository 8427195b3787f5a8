//! Soak: minutes of commands from many clients against the command binary and three projector
//! instances (dividing 8 partitions by lease) on one Redis (`appendfsync always`), while
//! projectors are SIGKILLed and restarted, Redis is
//! crashed and restarted, and a projector is paused (SIGSTOP) and resumed; the last fault is a
//! Redis crash. Then, once the projectors have caught up, every user's read model is checked
//! against the fold of its stream: versions contiguous, profile equal to the fold, friendships
//! mutual, nothing pending, no dead letters. Exits non-zero on any failure.
//!
//! `soak [--seconds N] [--clients N] [--users N] [--seed N]` (defaults 180, 16, 200, time);
//! `SOAK_LOG` is the services' `RUST_LOG` (default `warn`); their logs are kept when a run
//! fails.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use esr_app::{CommandService, CommandSettings, ProjectorSettings, Projectors};
use esr_domain::{Profile, User};
use esr_e2e::{binary, free_port};
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::{EntityId, StreamId, UserEvent};
use esr_store::Store;
use esr_testkit::RedisServer;
use serde_json::json;
use tokio::sync::Mutex;

struct Args {
    seconds: u64,
    clients: usize,
    users: usize,
    seed: u64,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 180,
        clients: 16,
        users: 200,
        seed: u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() % 1_000_000_007)
                .unwrap_or(1),
        )
        .unwrap_or(1),
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        let value: u64 = given
            .next()
            .with_context(|| format!("{flag} needs a value"))?
            .parse()
            .with_context(|| format!("{flag} needs a number"))?;
        match flag.as_str() {
            "--seconds" => args.seconds = value,
            "--clients" => args.clients = usize::try_from(value)?.max(1),
            "--users" => args.users = usize::try_from(value)?.max(2),
            "--seed" => args.seed = value.max(1),
            other => bail!("unknown flag {other}: use --seconds, --clients, --users, --seed"),
        }
    }
    Ok(args)
}

/// Partitions of the store: more than the projector instances, so each holds a share.
const PARTITIONS: u32 = 8;

/// xorshift64*: reproducible from the printed seed, no dependency for it.
struct Random(u64);

impl Random {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        usize::try_from(x % n.max(1) as u64).unwrap_or(0)
    }
}

/// A service process with its log in the run's directory.
struct Process {
    name: String,
    program: String,
    env: Vec<(String, String)>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Process {
    fn start(
        name: &str,
        program: &str,
        env: Vec<(String, String)>,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let mut process = Self {
            name: name.to_owned(),
            program: program.to_owned(),
            env,
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(binary(&self.program));
        command
            .env_remove("REDIS_CLUSTER_NODES")
            // The soak's clients send no tokens; everything listens on loopback.
            .env("AUTH", "off")
            .env(
                "RUST_LOG",
                std::env::var("SOAK_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (key, value) in &self.env {
            command.env(key, value);
        }
        self.child = Some(
            command
                .spawn()
                .with_context(|| format!("cannot start {}", self.name))?,
        );
        Ok(())
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    accepted: AtomicU64,
    refused_by_rules: AtomicU64,
    retries: AtomicU64,
    gave_up: AtomicU64,
}

/// Send one command until it is answered (the same Idempotency-Key each time): a 503, a
/// timeout or a dropped connection is sent again.
async fn send(
    http: &reqwest::Client,
    counts: &Counts,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) {
    let key = uuid::Uuid::new_v4().to_string();
    counts.sent.fetch_add(1, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut request = http
            .request(method.clone(), &url)
            .header("idempotency-key", &key);
        if let Some(body) = &body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                counts.accepted.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(response) if response.status().is_client_error() => {
                counts.refused_by_rules.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {
                counts.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) | Err(_) => {
                counts.gave_up.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

async fn client(base: String, users: usize, seed: u64, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default();
    let mut random = Random(seed);
    while !stop.load(Ordering::Relaxed) {
        let (a, b) = (random.below(users), random.below(users));
        let object = format!("o{}", random.below(50));
        let (method, path, body) = match random.below(10) {
            0..=3 => (
                "POST",
                format!("/users/u{a}/activity"),
                Some(json!({"action": "like", "object": object})),
            ),
            4 => (
                "POST",
                format!("/users/u{a}/activity"),
                Some(json!({"action": "dislike", "object": object})),
            ),
            5 => (
                "POST",
                format!("/users/u{a}/activity"),
                Some(json!({"action": "comment", "object": object, "text": "what's up"})),
            ),
            6 => (
                "PATCH",
                format!("/users/u{a}"),
                Some(json!({"name": format!("N{}", random.below(1000))})),
            ),
            7 | 8 => (
                "POST",
                format!("/users/u{a}/friends"),
                Some(json!({"friend_id": format!("u{b}")})),
            ),
            _ => ("DELETE", format!("/users/u{a}/friends/u{b}"), None),
        };
        let method =
            reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
        send(&http, &counts, method, format!("{base}{path}"), body).await;
    }
}

#[derive(Default)]
struct Chaos {
    projector_kills: u64,
    redis_crashes: u64,
    pauses: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    println!(
        "soak: {} s, {} clients, {} users, seed {}",
        args.seconds, args.clients, args.users, args.seed
    );
    let redis = Arc::new(Mutex::new(RedisServer::start_with(&[
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
    ])));
    let redis_url = redis.lock().await.url();
    let logs = tempfile_dir()?;
    let base_env = |extra: &[(&str, String)]| -> Vec<(String, String)> {
        [
            ("REDIS_URL", redis_url.clone()),
            ("PROJECTOR_BLOCK_MS", "200".to_owned()),
            ("PROJECTOR_CLAIM_IDLE_MS", "1000".to_owned()),
            // Three instances divide each group's partitions: a killed or paused one's go to
            // the others after the lease time.
            ("REDIS_PARTITIONS", PARTITIONS.to_string()),
            ("PROJECTOR_LEASE_MS", "2000".to_owned()),
        ]
        .iter()
        .chain(extra)
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
    };
    let command_port = free_port();
    let _command = Process::start(
        "command",
        "command",
        base_env(&[("COMMAND_LISTEN", format!("127.0.0.1:{command_port}"))]),
        &logs,
    )?;
    let mut projectors = Vec::new();
    for name in ["soak-a", "soak-b", "soak-c"] {
        projectors.push(Process::start(
            name,
            "projector",
            base_env(&[
                ("PROJECTOR_LISTEN", format!("127.0.0.1:{}", free_port())),
                ("PROJECTOR_CONSUMER", name.to_owned()),
            ]),
            &logs,
        )?);
    }
    let base = format!("http://127.0.0.1:{command_port}");
    let http = reqwest::Client::new();
    let counts = Arc::new(Counts::default());
    for user in 0..args.users {
        send(
            &http,
            &counts,
            reqwest::Method::POST,
            format!("{base}/users"),
            Some(json!({"user_id": format!("u{user}"), "name": "Duffy", "surname": "Duck"})),
        )
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..args.clients)
        .map(|c| {
            tokio::spawn(client(
                base.clone(),
                args.users,
                args.seed.wrapping_add(c as u64 + 1),
                stop.clone(),
                counts.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut random = Random(args.seed);
    let mut chaos = Chaos::default();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2000 + random.below(3000) as u64)).await;
        let victim = random.below(projectors.len());
        match random.below(3) {
            0 => {
                projectors[victim].kill();
                tokio::time::sleep(Duration::from_millis(500)).await;
                projectors[victim].spawn()?;
                chaos.projector_kills += 1;
            }
            1 => {
                let redis = redis.clone();
                tokio::task::spawn_blocking(move || redis.blocking_lock().crash_and_restart())
                    .await?;
                chaos.redis_crashes += 1;
            }
            _ => {
                projectors[victim].signal("-STOP");
                tokio::time::sleep(Duration::from_millis(3000)).await;
                projectors[victim].signal("-CONT");
                chaos.pauses += 1;
            }
        }
    }
    // The last fault is a Redis crash, so the catch-up below always starts from a Redis
    // restarted from its append-only file (which has forgotten how far each group has read).
    {
        let redis = redis.clone();
        tokio::task::spawn_blocking(move || redis.blocking_lock().crash_and_restart()).await?;
        chaos.redis_crashes += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await?;
    }
    let ran = started.elapsed();

    // Catch up, then check.
    let mut config = RedisConfig::new(Topology::Single(redis_url.clone()));
    config.partitions = PARTITIONS;
    let redis_store = RedisStore::connect(config)
        .await
        .context("connect for the checks")?;
    let partitions = redis_store.partitions();
    let store: Arc<dyn Store> = Arc::new(redis_store);
    let users_service = Arc::new(CommandService::<User>::new(
        store.clone(),
        CommandSettings::default(),
    ));
    let standard = Projectors::standard(store.clone(), users_service, ProjectorSettings::default());
    // The clients may have outrun the projectors: wait as long as they make progress. A
    // stall is a failure, but the checks below still run, to say what it left behind.
    // Progress is any group's position moving: after Redis restarts from its append-only file
    // a lag too long to count reads as a constant lower bound while the group works through it.
    let catching_up = Instant::now();
    let (mut positions, mut progressed) = (String::new(), Instant::now());
    // Opened once, after the last fault: the catch-up runs on a Redis that stays up.
    let mut positions_connection = redis::Client::open(redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let mut failures = Vec::new();
    loop {
        // Redis may still be loading after the last crash: an answer that is not one yet.
        let groups = standard.health().await.map(|(groups, _)| groups);
        if let Ok(groups) = &groups
            && groups.iter().all(|g| g.lag + g.pending == 0)
        {
            break;
        }
        let now = group_positions(&mut positions_connection, &standard, partitions).await;
        if now != positions {
            (positions, progressed) = (now, Instant::now());
        } else if progressed.elapsed() > Duration::from_secs(60) {
            failures.push(format!(
                "the projectors made no progress for 60 s: {groups:?}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let caught_up_in = catching_up.elapsed();
    // The friendship policy's last mirrors may still be landing after the groups drained.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (groups, dead_letters) = standard.health().await?;

    let mut events = 0u64;
    let mut folded = Vec::new();
    for user in 0..args.users {
        let id = EntityId::parse(&format!("u{user}"))?;
        let stream = StreamId::of::<UserEvent>(id.clone());
        let mut profile = Profile::empty(id.clone());
        let mut from = 1;
        loop {
            let page = store.read_stream(&stream, from, 1000).await?;
            for stored in &page {
                if stored.envelope.version != from {
                    failures.push(format!(
                        "{stream}: version {} where {from} belongs",
                        stored.envelope.version
                    ));
                }
                profile.apply(&stored.envelope, &stored.decode::<UserEvent>()?);
                from += 1;
            }
            if page.len() < 1000 {
                break;
            }
        }
        events += from - 1;
        let stored = esr_app::read_model::stored_view::<Profile>(store.as_ref(), &id).await?;
        if stored.as_ref() != Some(&profile) {
            failures.push(format!(
                "{stream}: read model {stored:?} is not the fold {profile:?}"
            ));
        }
        folded.push(profile);
    }
    let lists = |who: usize, whom: usize| -> bool {
        folded[who]
            .friends
            .iter()
            .any(|f| f.as_str() == format!("u{whom}"))
    };
    let mut friendships = BTreeSet::new();
    for a in 0..args.users {
        for b in 0..args.users {
            if lists(a, b) {
                friendships.insert((a.min(b), a.max(b)));
                if !lists(b, a) {
                    failures.push(format!("u{a} lists u{b} but u{b} does not list u{a}"));
                }
            }
        }
    }
    if groups.iter().any(|g| g.pending > 0 || g.lag > 0) {
        failures.push(format!("left pending or unread: {groups:?}"));
    }
    if dead_letters > 0 {
        failures.push(format!("{dead_letters} dead letters"));
    }
    if counts.gave_up.load(Ordering::Relaxed) > 0 {
        failures.push(format!(
            "{} commands never answered in 60 s",
            counts.gave_up.load(Ordering::Relaxed)
        ));
    }

    println!(
        "ran {:.0} s: {} commands sent, {} accepted, {} refused by a rule (409/404), {} resends \
         (503, timeout, dropped connection); faults: {} projector SIGKILLs, {} Redis crashes, {} \
         projector pauses",
        ran.as_secs_f64(),
        counts.sent.load(Ordering::Relaxed),
        counts.accepted.load(Ordering::Relaxed),
        counts.refused_by_rules.load(Ordering::Relaxed),
        counts.retries.load(Ordering::Relaxed),
        chaos.projector_kills,
        chaos.redis_crashes,
        chaos.pauses,
    );
    println!(
        "projectors caught up {:.0} s after the clients stopped; checked {} users, {events} \
         events, {} friendships: {} failures; pending 0, dead letters {dead_letters}",
        caught_up_in.as_secs_f64(),
        args.users,
        friendships.len(),
        failures.len()
    );
    for failure in failures.iter().take(20) {
        println!("FAILED: {failure}");
    }
    if failures.is_empty() {
        let _ = std::fs::remove_dir_all(&logs);
        Ok(())
    } else {
        println!("service logs: {}", logs.display());
        bail!("soak failed: {} failures", failures.len())
    }
}

/// The run's service logs, kept when the run fails.
/// Every group's last delivered entry and pending count on every category stream it reads,
/// as one comparable text.
async fn group_positions(
    connection: &mut redis::aio::MultiplexedConnection,
    projectors: &Projectors,
    partitions: u32,
) -> String {
    let mut positions = String::new();
    for handler in projectors.handlers() {
        for category in handler.categories() {
            for partition in 0..partitions {
                let stream = esr_redis::keys::Keys::category_stream(category, partition);
                // A Redis still loading answers an error: that is no progress either.
                let groups: redis::RedisResult<redis::Value> = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(&stream)
                    .query_async(connection)
                    .await;
                positions.push_str(&format!("{stream} {groups:?}\n"));
            }
        }
    }
    positions
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("esr-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
