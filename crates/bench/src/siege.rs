//! `just siege`: honest clients measure their latency on a quiet store, then again while
//! hostile clients press on every bound a client can reach. Both sides run as deployed
//! (authentication on, projectors running) on one Redis:
//!
//! - honest: paced likes on their own users, reads of their own writes (`min_version`), and
//!   the ranking, every answer timed, anything but 2xx counted as refused;
//! - hostile: idle sockets held open (reopened when closed), made-up methods, oversized and
//!   slowly sent bodies, a long tail of likes of objects never liked before, and `min_version`
//!   reads of versions that never come.
//!
//! The row is the honest p99 under siege over the honest p99 of the quiet run before it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esr_app::command::CommandMeta;
use esr_app::{CommandSettings, Commands, ProjectorSettings, Projectors, QueryService};
use esr_domain::UserCommand;
use esr_store::Store;
use esr_testkit::RedisServer;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::Scale;
use crate::measure::percentile;
use crate::report::Row;
use crate::store::{authorized, user};

/// Honest clients and their pace (each of likes, own reads and top reads per second).
const HONEST_USERS: usize = 16;
const HONEST_RATE: f64 = 60.0;

/// What the hostile clients do at once, per run.
#[derive(Clone, Copy)]
struct Hostility {
    idle_sockets: usize,
    made_up_methods_per_s: f64,
    oversized_bodies_per_s: f64,
    slow_bodies: usize,
    long_tail_likes_per_s: f64,
    hopeless_waits: usize,
}

impl Hostility {
    fn without(self, names: &str) -> Self {
        let left_out = |name: &str| names.split(',').any(|n| n.trim() == name);
        Self {
            idle_sockets: if left_out("idle") {
                0
            } else {
                self.idle_sockets
            },
            made_up_methods_per_s: if left_out("methods") {
                0.0
            } else {
                self.made_up_methods_per_s
            },
            oversized_bodies_per_s: if left_out("oversized") {
                0.0
            } else {
                self.oversized_bodies_per_s
            },
            slow_bodies: if left_out("slow") {
                0
            } else {
                self.slow_bodies
            },
            long_tail_likes_per_s: if left_out("likes") {
                0.0
            } else {
                self.long_tail_likes_per_s
            },
            hopeless_waits: if left_out("waits") {
                0
            } else {
                self.hopeless_waits
            },
        }
    }
}

#[derive(Clone)]
struct Sides {
    commands: String,
    queries: String,
    tokens: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

pub async fn rows(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let duration = if scale.quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(20)
    };
    let hostility = if scale.quick {
        Hostility {
            idle_sockets: 100,
            made_up_methods_per_s: 50.0,
            oversized_bodies_per_s: 10.0,
            slow_bodies: 20,
            long_tail_likes_per_s: 50.0,
            hopeless_waits: 50,
        }
    } else {
        Hostility {
            idle_sockets: 2000,
            made_up_methods_per_s: 200.0,
            oversized_bodies_per_s: 20.0,
            slow_bodies: 200,
            long_tail_likes_per_s: 100.0,
            hopeless_waits: 1000,
        }
    };
    // `SIEGE_WITHOUT=waits,likes,...`: leave hostile clients out, to see what each costs.
    let without = std::env::var("SIEGE_WITHOUT").unwrap_or_default();
    let hostility = hostility.without(&without);
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    // The hostile clients run on a thread of their own: in production they are other
    // machines, and sharing the server's scheduler would time their queue, not its answers.
    let attacker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("siege-hostile")
        .enable_all()
        .build()?;
    let store: Arc<dyn Store> = Arc::new(
        esr_redis::RedisStore::connect(esr_redis::RedisConfig::new(esr_redis::Topology::Single(
            server.url(),
        )))
        .await?,
    );
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));
    let (signer, keys) = esr_app::auth::dev::Signer::ephemeral().map_err(anyhow::Error::msg)?;
    let verifier = Arc::new(esr_app::auth::Verifier::new(keys, Default::default()));
    let (stop, shutdown) = watch::channel(false);
    let bind = || -> anyhow::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };
    let (command_listener, query_listener) = (bind()?, bind()?);
    let sides = Sides {
        commands: format!("http://{}", command_listener.local_addr()?),
        queries: format!("http://{}", query_listener.local_addr()?),
        tokens: Arc::new(move |subject: &str| {
            signer
                .token(subject, &[], Duration::from_secs(3600), None, None)
                .unwrap_or_default()
        }),
    };
    let command_task = tokio::spawn({
        let (commands, verifier, shutdown) = (commands.clone(), verifier.clone(), shutdown.clone());
        async move {
            esr_app::sides::command_side(
                commands,
                esr_app::social::module().into(),
                tokio::net::TcpListener::from_std(command_listener)?,
                esr_app::config::HttpLimits::default(),
                esr_app::auth::Authentication::Jwt(verifier),
                shutdown,
            )
            .await
        }
    });
    let query_task = tokio::spawn({
        let (store, shutdown) = (store.clone(), shutdown.clone());
        async move {
            esr_app::sides::query_side(
                Arc::new(QueryService::new(store)),
                esr_app::social::module().into(),
                tokio::net::TcpListener::from_std(query_listener)?,
                esr_app::config::HttpLimits::default(),
                esr_app::auth::Authentication::Jwt(verifier),
                shutdown,
            )
            .await
        }
    });
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.of::<esr_domain::User>(),
        ProjectorSettings {
            block: Duration::from_millis(50),
            ..ProjectorSettings::default()
        },
    ));
    projectors.create_groups().await?;
    let projector_task = tokio::spawn(projectors.run(shutdown.clone()));
    let register = |name: String| {
        let commands = commands.clone();
        async move {
            let command = UserCommand::Register {
                name: "Honest".into(),
                surname: "Client".into(),
                birth_date: None,
            };
            commands
                .of::<esr_domain::User>()
                .execute(
                    &user(&name),
                    command,
                    &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
                )
                .await
                .map(drop)
        }
    };
    for n in 0..HONEST_USERS {
        register(format!("honest{n}")).await?;
    }
    register("mallory".to_owned()).await?;

    eprintln!("  quiet: honest clients alone for {duration:?} ...");
    let quiet = honest(&sides, duration, "quiet").await;
    eprintln!("  siege: honest clients beside hostile ones for {duration:?} ...");
    let attack = attacker_runtime.spawn({
        let sides = sides.clone();
        async move { hostile(&sides, &hostility, duration).await }
    });
    let besieged = honest(&sides, duration, "siege").await;
    let pressed = attack.await?;
    let _ = stop.send(true);
    command_task.await??;
    query_task.await??;
    projector_task.await??;
    attacker_runtime.shutdown_background();

    let (mut quiet, mut besieged) = (quiet, besieged);
    let (quiet_kinds, siege_kinds) = (quiet.p99_by_kind(), besieged.p99_by_kind());
    let (mut quiet_ms, mut siege_ms) = (quiet.latencies, besieged.latencies);
    let quiet_p99 = percentile(&mut quiet_ms, 99.0);
    let siege_p99 = percentile(&mut siege_ms, 99.0);
    Ok(vec![Row::new(
        "siege_honest_p99_ratio",
        siege_p99 / quiet_p99.max(f64::MIN_POSITIVE),
        "ratio",
        None,
        format!(
            "honest p99 {siege_p99:.2} ms under siege / {quiet_p99:.2} ms quiet ({} and {} honest \
             requests; refused: {} under siege, {} quiet; p50 {:.2} / {:.2} ms; p99 under siege: \
             {siege_kinds}; quiet: {quiet_kinds}); hostile: {} \
             idle sockets, {} made-up methods, {} oversized and {} slow bodies, {} long-tail \
             likes, {} hopeless min_version waits",
            siege_ms.len(),
            quiet_ms.len(),
            besieged.refused,
            quiet.refused,
            percentile(&mut siege_ms, 50.0),
            percentile(&mut quiet_ms, 50.0),
            pressed.idle_sockets,
            pressed.made_up_methods,
            pressed.oversized_bodies,
            pressed.slow_bodies,
            pressed.long_tail_likes,
            pressed.hopeless_waits,
        ),
    )])
}

struct Honest {
    latencies: Vec<f64>,
    /// The same, by kind: likes, own reads, rankings.
    by_kind: [Vec<f64>; 3],
    refused: u64,
}

impl Honest {
    fn p99_by_kind(&mut self) -> String {
        let [likes, reads, tops] = &mut self.by_kind;
        format!(
            "likes {:.1}, own reads {:.1}, rankings {:.1} ms",
            percentile(likes, 99.0),
            percentile(reads, 99.0),
            percentile(tops, 99.0)
        )
    }
}

/// Each honest user likes, reads its own write back, and reads the ranking, paced.
async fn honest(sides: &Sides, duration: Duration, round: &str) -> Honest {
    let latencies = Arc::new(std::sync::Mutex::new(<[Vec<f64>; 3]>::default()));
    let refused = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let per_user = Duration::from_secs_f64(HONEST_USERS as f64 / HONEST_RATE);
    for n in 0..HONEST_USERS {
        let id = format!("honest{n}");
        let client = authorized(&(sides.tokens)(&id));
        let (commands, queries) = (sides.commands.clone(), sides.queries.clone());
        let (latencies, refused, round) = (latencies.clone(), refused.clone(), round.to_owned());
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + duration;
            let mut tick = tokio::time::interval(per_user);
            let mut i = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                let timed = |kind: usize, started: Instant, ok: bool| {
                    latencies.lock().unwrap_or_else(|p| p.into_inner())[kind]
                        .push(started.elapsed().as_secs_f64() * 1000.0);
                    if !ok {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                };
                let started = Instant::now();
                let liked = client
                    .post(format!("{commands}/users/{id}/activity"))
                    .json(&serde_json::json!({"action": "like", "object": format!("{round}-{}", i % 20)}))
                    .send()
                    .await;
                let version = match liked {
                    Ok(answer) if answer.status().is_success() => {
                        let body: serde_json::Value = answer.json().await.unwrap_or_default();
                        timed(0, started, true);
                        body["version"].as_u64()
                    }
                    _ => {
                        timed(0, started, false);
                        None
                    }
                };
                if let Some(version) = version {
                    let started = Instant::now();
                    let ok = client
                        .get(format!("{queries}/users/{id}?min_version={version}"))
                        .send()
                        .await
                        .is_ok_and(|a| a.status().is_success());
                    timed(1, started, ok);
                }
                let started = Instant::now();
                let ok = client
                    .get(format!("{queries}/objects/top?limit=10"))
                    .send()
                    .await
                    .is_ok_and(|a| a.status().is_success());
                timed(2, started, ok);
                i += 1;
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let by_kind = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Honest {
        latencies: by_kind.concat(),
        by_kind,
        refused: refused.load(Ordering::Relaxed),
    }
}

#[derive(Default)]
struct Pressed {
    idle_sockets: u64,
    made_up_methods: u64,
    oversized_bodies: u64,
    slow_bodies: u64,
    long_tail_likes: u64,
    hopeless_waits: u64,
}

/// Every hostile client at once, for `duration`.
async fn hostile(sides: &Sides, hostility: &Hostility, duration: Duration) -> Pressed {
    let deadline = Instant::now() + duration;
    let address = |base: &str| base.trim_start_matches("http://").to_owned();
    let (commands, queries) = (address(&sides.commands), address(&sides.queries));
    let counters: [Arc<AtomicU64>; 6] = Default::default();
    let mut tasks = Vec::new();

    // Idle sockets: opened, then nothing; reopened when the server closes them.
    for n in 0..hostility.idle_sockets {
        let target = if n % 2 == 0 {
            commands.clone()
        } else {
            queries.clone()
        };
        let opened = counters[0].clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut tcp) = TcpStream::connect(&target).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                opened.fetch_add(1, Ordering::Relaxed);
                let mut sink = [0u8; 64];
                let left = deadline.saturating_duration_since(Instant::now());
                let _ =
                    tokio::time::timeout(left, tokio::io::AsyncReadExt::read(&mut tcp, &mut sink))
                        .await;
            }
        }));
    }
    // Slow bodies: a body promised, sent a byte a second.
    for _ in 0..hostility.slow_bodies {
        let (target, sent) = (commands.clone(), counters[3].clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let Ok(mut tcp) = TcpStream::connect(&target).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                sent.fetch_add(1, Ordering::Relaxed);
                let head = "POST /users/mallory/activity HTTP/1.1\r\nHost: siege\r\n\
                            Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{";
                if tcp.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                while Instant::now() < deadline && tcp.write_all(b" ").await.is_ok() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    // Made-up methods and oversized bodies, paced, on raw connections.
    let paced_raw = |rate: f64, request: String, target: String, sent: Arc<AtomicU64>| {
        tokio::spawn(async move {
            if rate <= 0.0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            while Instant::now() < deadline {
                tick.tick().await;
                let (request, target, sent) = (request.clone(), target.clone(), sent.clone());
                tokio::spawn(async move {
                    if let Ok(mut tcp) = TcpStream::connect(&target).await {
                        sent.fetch_add(1, Ordering::Relaxed);
                        let _ = tcp.write_all(request.as_bytes()).await;
                        let mut answer = Vec::new();
                        let _ = tokio::time::timeout(
                            Duration::from_secs(2),
                            tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut answer),
                        )
                        .await;
                    }
                });
            }
        })
    };
    for n in 0..4 {
        let method =
            format!("M{n} /users/mallory HTTP/1.1\r\nHost: siege\r\nConnection: close\r\n\r\n");
        tasks.push(paced_raw(
            hostility.made_up_methods_per_s / 4.0,
            method,
            if n % 2 == 0 {
                commands.clone()
            } else {
                queries.clone()
            },
            counters[1].clone(),
        ));
    }
    let oversized = format!(
        "POST /users/mallory/activity HTTP/1.1\r\nHost: siege\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: 200000\r\n\r\n{}",
        "x".repeat(200_000)
    );
    tasks.push(paced_raw(
        hostility.oversized_bodies_per_s,
        oversized,
        commands.clone(),
        counters[2].clone(),
    ));
    // A long tail: an authenticated user liking objects nobody liked before.
    {
        let client = authorized(&(sides.tokens)("mallory"));
        let (url, sent, rate) = (
            format!("{}/users/mallory/activity", sides.commands),
            counters[4].clone(),
            hostility.long_tail_likes_per_s,
        );
        tasks.push(tokio::spawn(async move {
            if rate <= 0.0 {
                return;
            }
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            let mut n = 0u64;
            while Instant::now() < deadline {
                tick.tick().await;
                n += 1;
                let (client, url, sent) = (client.clone(), url.clone(), sent.clone());
                tokio::spawn(async move {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let _ = client
                        .post(url)
                        .json(&serde_json::json!({"action": "like", "object": format!("tail-{n}")}))
                        .send()
                        .await;
                });
            }
        }));
    }
    // Reads of versions that never come: each waits the longest a wait may.
    let waiter = authorized(&(sides.tokens)("mallory"));
    for _ in 0..hostility.hopeless_waits {
        let client = waiter.clone();
        let (url, sent) = (
            format!("{}/users/mallory?min_version=999999999", sides.queries),
            counters[5].clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                sent.fetch_add(1, Ordering::Relaxed);
                if client.get(&url).send().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }));
    }
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    }
    let count = |i: usize| counters[i].load(Ordering::Relaxed);
    Pressed {
        idle_sockets: count(0),
        made_up_methods: count(1),
        oversized_bodies: count(2),
        slow_bodies: count(3),
        long_tail_likes: count(4),
        hopeless_waits: count(5),
    }
}
