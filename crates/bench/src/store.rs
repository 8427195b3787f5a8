//! Our figures, each beside its raw counterpart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use esr_app::command::CommandMeta;
use esr_app::projector::{Handler, ViewProjection};
use esr_app::{CommandService, CommandSettings, Commands, ProjectorSettings, Projectors};
use esr_domain::{MostLiked, Profile, User, UserCommand};
use esr_kernel::{Aggregate, Tally, View};
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::{
    ActedOn, Action, DomainEvent, EventEnvelope, Registered, StoredEvent, StreamId, UserEvent,
    UserId, codec, entry,
};
use esr_store::{
    AppendRequest, EventStore, ExpectedVersion, NewEvent, ReadModels, Snapshot, SnapshotStore,
    Store, StoreError, Subscriptions,
};
use esr_testkit::RedisServer;
use tokio::sync::watch;

use crate::measure::{self, percentile};
use crate::report::Row;
use crate::{Scale, raw};

pub(crate) fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap_or_else(|e| panic!("bench user id: {e}"))
}

/// An event as the command service makes it for a request without `X-Correlation-Id`: the
/// command's id is both its correlation and its causation.
fn event(e: &UserEvent) -> NewEvent {
    let encoded = codec::encode(e).unwrap_or_else(|err| panic!("encode: {err}"));
    let command_id = uuid::Uuid::now_v7().to_string();
    NewEvent {
        event_id: uuid::Uuid::now_v7(),
        event_type: encoded.event_type.into(),
        schema_version: encoded.schema_version,
        category: encoded.category,
        occurred_at: chrono::Utc::now(),
        correlation_id: command_id.clone(),
        causation_id: command_id,
        // As the command side records an authenticated caller.
        actor: Some("user:bench-user".into()),
        payload: encoded.payload,
    }
}

pub(crate) fn like(i: u64) -> NewEvent {
    event(&UserEvent::ActedOn(ActedOn {
        action: Action::Like,
        object: format!("page-{}", i % 50),
        text: None,
    }))
}

/// A like by `user` itself, as the command side records it for a user acting on their stream.
fn like_by(user: &UserId, i: u64) -> NewEvent {
    NewEvent {
        actor: Some(format!("user:{user}")),
        ..like(i)
    }
}

pub(crate) fn registered() -> NewEvent {
    event(&UserEvent::Registered(Registered {
        name: "Duffy".into(),
        surname: "Duck".into(),
        birth_date: None,
    }))
}

pub(crate) fn stream_of(user_id: &UserId) -> StreamId {
    StreamId::of::<UserEvent>(user_id.clone())
}

pub(crate) fn request(
    user_id: &UserId,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> AppendRequest {
    AppendRequest {
        stream: stream_of(user_id),
        expected,
        events,
        idempotency: None,
    }
}

async fn connect(server: &RedisServer) -> anyhow::Result<RedisStore> {
    Ok(RedisStore::connect(RedisConfig::new(Topology::Single(server.url()))).await?)
}

/// Raw EVALSHA and our appends at the same concurrency, in 5 alternating slices of
/// `duration / 5` each, so a slow spell of the shared machine falls on both alike. Rates over
/// all slices: (raw, ours).
async fn raw_and_ours_in_turn(
    conn: &redis::aio::MultiplexedConnection,
    store: &RedisStore,
    tasks: usize,
    duration: Duration,
    round: &str,
) -> anyhow::Result<(f64, f64)> {
    const SLICES: u32 = 5;
    let slice = duration / SLICES;
    let (mut raw_total, mut ours_total) = ((0u64, 0f64), (0u64, 0f64));
    for n in 0..SLICES {
        // Fresh users per slice: each starts from version 0.
        let label = format!("{round}-s{n}");
        let raw = raw::evalsha_append(conn, tasks, slice, &label).await?;
        let ours = appends(store, tasks, slice, &label).await;
        raw_total = (raw_total.0 + raw.ok, raw_total.1 + raw.seconds);
        ours_total = (ours_total.0 + ours.ok, ours_total.1 + ours.seconds);
    }
    Ok((
        raw_total.0 as f64 / raw_total.1,
        ours_total.0 as f64 / ours_total.1,
    ))
}

/// Single-event appends with exact expected versions, `tasks` writers on their own users.
pub(crate) async fn appends(
    store: &RedisStore,
    tasks: usize,
    duration: Duration,
    round: &str,
) -> measure::Counted {
    let (store, round) = (store.clone(), round.to_owned());
    measure::run_for(tasks, duration, move |task, i| {
        let (store, user) = (store.clone(), user(&format!("{round}-{task}")));
        async move {
            store
                .append(request(&user, ExpectedVersion::Exactly(i), vec![like(i)]))
                .await
                .is_ok()
        }
    })
    .await
}

pub async fn run_all(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let d = scale.duration;
    if scale.wants("appends") {
        eprintln!("appends ...");
        let server = RedisServer::start_with(&["--appendonly", "no"]);
        let conn = raw::connect(&server.url()).await?;
        let store = connect(&server).await?;
        let raw_xadd = raw::xadd(&conn, 16, d).await.ok_per_second();
        rows.push(Row::new(
            "raw_xadd_c16",
            raw_xadd,
            "ops/s",
            None,
            "raw XADD, 16 writers (reference)",
        ));
        for tasks in [1, 16, 64] {
            let (raw_rate, ours) =
                raw_and_ours_in_turn(&conn, &store, tasks, d, &format!("c{tasks}")).await?;
            rows.push(Row::new(
                &format!("append_c{tasks}"),
                ours,
                "events/s",
                Some(raw_rate),
                "raw: append-shaped EVALSHA, same concurrency; the two in turn, 5 slices each",
            ));
        }

        let (cpu_before, pairs_started) = (raw::server_cpu_seconds(&conn).await?, Instant::now());
        let raw_pairs = raw::xadd_pairs_pipelined(&conn, 1000, d).await?;
        let pairs_us = (raw::server_cpu_seconds(&conn).await? - cpu_before) * 1e6
            / (raw_pairs * pairs_started.elapsed().as_secs_f64());
        rows.push(Row::new(
            "raw_xadd_pairs_pipelined",
            raw_pairs,
            "events/s",
            None,
            "raw: 2 plain XADDs per event in pipelines of 1,000 events; no script (reference: the ceiling for two copies)",
        ));
        let raw_batch = raw::evalsha_pipelined(&conn, 1000, d).await?;
        let cpu_before = raw::server_cpu_seconds(&conn).await?;
        let batches = batch_appends(&store, "batch", d).await?;
        let (ours, appended) = (batches.ok_per_second(), batches.ok);
        rows.push(Row::new(
            "append_batch",
            ours,
            "events/s",
            Some(raw_batch),
            "batches of 1,000 users, up to 128 events per script call; raw: pipelined EVALSHA, one per event",
        ));
        let batch_us =
            (raw::server_cpu_seconds(&conn).await? - cpu_before) * 1e6 / appended.max(1) as f64;
        rows.push(Row::new(
            "append_batch_redis_cpu",
            batch_us,
            "us/event",
            Some(pairs_us),
            "Redis CPU (INFO cpu, user + sys) per event of append_batch, lower is better; raw: the same for raw_xadd_pairs_pipelined",
        ));

        let hot = user("hot");
        let version = Arc::new(AtomicU64::new(0));
        let conflicts = Arc::new(AtomicU64::new(0));
        let hot_run = {
            let (store, version, conflicts) = (store.clone(), version.clone(), conflicts.clone());
            measure::run_for(16, d, move |_, i| {
                let (store, hot, version, conflicts) = (
                    store.clone(),
                    hot.clone(),
                    version.clone(),
                    conflicts.clone(),
                );
                async move {
                    let seen = version.load(Ordering::Relaxed);
                    match store
                        .append(request(&hot, ExpectedVersion::Exactly(seen), vec![like(i)]))
                        .await
                    {
                        Ok(outcome) => {
                            version.fetch_max(outcome.version, Ordering::Relaxed);
                            true
                        }
                        Err(StoreError::Conflict { actual, .. }) => {
                            conflicts.fetch_add(1, Ordering::Relaxed);
                            version.fetch_max(actual, Ordering::Relaxed);
                            false
                        }
                        Err(_) => false,
                    }
                }
            })
            .await
        };
        let raw16 = rows
            .iter()
            .find(|r| r.name == "append_c16")
            .and_then(|r| r.raw);
        rows.push(Row::new(
            "append_hot_user",
            hot_run.ok_per_second(),
            "events/s",
            raw16,
            format!(
                "16 writers, one user; {:.0} conflicts/s; raw: EVALSHA c16 on distinct users",
                hot_run.failed_per_second()
            ),
        ));
    }
    if scale.wants("loads") {
        eprintln!("loads ...");
        let server = RedisServer::start_with(&["--appendonly", "no"]);
        let conn = raw::connect(&server.url()).await?;
        let store = connect(&server).await?;
        rows.extend(load_rows(&store, &conn, scale.load_sizes, scale.load_runs).await?);
    }
    if scale.wants("projector") {
        eprintln!("projector catch-up ...");
        rows.extend(projector_rows(scale).await?);
    }
    if scale.wants("http") {
        eprintln!("http and freshness ...");
        rows.extend(http_rows(scale).await?);
    }
    if scale.wants("top") {
        eprintln!("top of a long tail ...");
        rows.extend(crate::top::rows(scale).await?);
    }
    if scale.wants("migrate") {
        eprintln!("moving a partition ...");
        rows.extend(crate::migrate::rows(scale).await?);
    }
    if scale.wants("siege") {
        eprintln!("siege ...");
        rows.extend(crate::siege::rows(scale).await?);
    }
    if scale.wants("scaleout") {
        eprintln!("scale-out ...");
        rows.extend(crate::scaleout::rows(scale).await?);
    }
    if scale.wants("memory") {
        eprintln!("memory ...");
        let (kept, raw_bytes) = memory_row(scale).await?;
        rows.push(kept);
        rows.push(trimmed_memory_row(scale, raw_bytes).await?);
    }
    if !scale.wants("aof") {
        return Ok(rows);
    }
    eprintln!("durable appends ...");
    for (name, fsync) in [
        ("append_c64_everysec", "everysec"),
        ("append_c64_always", "always"),
    ] {
        let server = RedisServer::start_with(&["--appendonly", "yes", "--appendfsync", fsync]);
        let conn = raw::connect(&server.url()).await?;
        let store = connect(&server).await?;
        let (raw_rate, ours) = raw_and_ours_in_turn(&conn, &store, 64, d, "aof").await?;
        rows.push(Row::new(
            name,
            ours,
            "events/s",
            Some(raw_rate),
            format!("appendfsync {fsync}; raw: EVALSHA c64 on the same server"),
        ));
    }
    Ok(rows)
}

/// Loads of users with 10, 1,000 and 100,000 events, with snapshots every 100 and without.
/// The snapshot loads of all sizes are timed in turn, round after round, so the machine's
/// noise falls on every size alike.
async fn load_rows(
    store: &RedisStore,
    conn: &redis::aio::MultiplexedConnection,
    sizes: [usize; 3],
    runs: usize,
) -> anyhow::Result<Vec<Row>> {
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let every = 100;
    let plain = CommandService::<User>::new(
        shared.clone(),
        CommandSettings {
            snapshot_every: 0,
            ..CommandSettings::default()
        },
    );
    let snapshotted = CommandService::<User>::new(
        shared,
        CommandSettings {
            snapshot_every: every,
            ..CommandSettings::default()
        },
    );
    let mut prepared = Vec::new();
    for n in sizes {
        let id = user(&format!("load-{n}"));
        let mut written = 0;
        while written < n {
            let chunk = 1000.min(n - written);
            let events: Vec<NewEvent> = (0..chunk)
                .map(|i| {
                    if written + i == 0 {
                        registered()
                    } else {
                        like((written + i) as u64)
                    }
                })
                .collect();
            store
                .append(request(
                    &id,
                    ExpectedVersion::Exactly(written as u64),
                    events,
                ))
                .await?;
            written += chunk;
        }
        let without = measure::median_ms(runs, || async {
            plain
                .load(&id)
                .await
                .map(|_| ())
                .map_err(anyhow::Error::from)
        })
        .await?;
        // What the command side leaves after its last multiple of 100: a snapshot there.
        let at = (n as u64 / every) * every;
        if at > 0 {
            let events: Vec<UserEvent> = store
                .read_stream(&stream_of(&id), 1, at as usize)
                .await?
                .iter()
                .map(|e| e.decode::<UserEvent>())
                .collect::<Result<_, _>>()?;
            let state = User::from_history(&events);
            store
                .save_snapshot(
                    &stream_of(&id),
                    Snapshot {
                        version: state.version,
                        state: state.to_snapshot()?,
                    },
                )
                .await?;
        }
        let (loaded, _) = snapshotted.load(&id).await?;
        let (replayed, _) = plain.load(&id).await?;
        anyhow::ensure!(
            loaded == replayed,
            "a snapshot load differs from a full replay at {n} events"
        );
        let raw_ms = raw::xrange_ms(conn, n, runs).await?;
        prepared.push((n, id, without, raw_ms, Vec::with_capacity(runs)));
    }
    for _ in 0..runs {
        for (_, id, _, _, samples) in prepared.iter_mut() {
            let started = Instant::now();
            snapshotted.load(id).await?;
            samples.push(measure::elapsed_ms(started));
        }
    }
    Ok(prepared
        .into_iter()
        .map(|(n, _, without, raw_ms, mut samples)| {
            let name = match n {
                10 => "load_10".to_owned(),
                1_000 => "load_1k".to_owned(),
                100_000 => "load_100k".to_owned(),
                other => format!("load_{other}"),
            };
            Row::new(
                &name,
                percentile(&mut samples, 50.0),
                "ms",
                Some(raw_ms),
                format!(
                    "snapshots every 100; without: {without:.2} ms; raw: XRANGE of all {n} entries"
                ),
            )
        })
        .collect())
}

/// Fill a backlog, then time the profile projection draining it with one, then two instances.
/// Batches of one like for each of 1,000 users (`<prefix>-<n>`) for `duration`.
pub(crate) async fn batch_appends(
    store: &RedisStore,
    prefix: &str,
    duration: Duration,
) -> anyhow::Result<measure::Counted> {
    let users: Vec<UserId> = (0..1000).map(|i| user(&format!("{prefix}-{i}"))).collect();
    let started = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    while started.elapsed() < duration {
        let batch: Vec<AppendRequest> = users
            .iter()
            .map(|u| request(u, ExpectedVersion::Any, vec![like(1)]))
            .collect();
        match store.append_batch(batch).await {
            Ok(outcomes) => {
                for outcome in outcomes {
                    match outcome {
                        Ok(_) => ok += 1,
                        Err(_) => failed += 1,
                    }
                }
            }
            // Counted, not fatal: a rate with failures beside it says more than no rate.
            Err(StoreError::Unavailable(_)) => failed += users.len() as u64,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(measure::Counted {
        ok,
        failed,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `events` events over `users` in turn (each registers, then likes), in batches of 1,000:
/// each user's version at the end.
pub(crate) async fn write_backlog(
    store: &RedisStore,
    users: &[UserId],
    events: usize,
) -> anyhow::Result<Vec<u64>> {
    let mut versions = vec![0u64; users.len()];
    let mut written = 0;
    while written < events {
        let batch: Vec<AppendRequest> = (0..1000.min(events - written))
            .map(|j| {
                let u = (written + j) % users.len();
                let e = if versions[u] == 0 {
                    registered()
                } else {
                    like(versions[u])
                };
                versions[u] += 1;
                request(&users[u], ExpectedVersion::Any, vec![e])
            })
            .collect();
        written += batch.len();
        for outcome in store.append_batch(batch).await? {
            outcome?;
        }
    }
    Ok(versions)
}

/// Spot check after a catch-up: the last user's profile reflects every event written.
pub(crate) async fn last_profile_caught_up(
    store: &RedisStore,
    users: &[UserId],
    versions: &[u64],
) -> anyhow::Result<()> {
    let (Some(user), Some(version)) = (users.last(), versions.last()) else {
        return Ok(());
    };
    let model = store
        .get_read_model(Profile::NAME, &stream_of(user))
        .await?;
    anyhow::ensure!(
        model.map(|m| m.version) == Some(*version),
        "profile behind after catch-up"
    );
    Ok(())
}

async fn projector_rows(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let conn = raw::connect(&server.url()).await?;
    let store = connect(&server).await?;
    // 100 events per user on the full backlog (10,000 users), 10 on the quick one.
    let users: Vec<UserId> = (0..(scale.backlog / 100).max(scale.backlog / 10).min(10_000))
        .map(|i| user(&format!("p{i}")))
        .collect();
    let versions = write_backlog(&store, &users, scale.backlog).await?;
    let streams: Vec<String> = UserEvent::CATEGORIES
        .iter()
        .map(|c| esr_redis::keys::Keys::category_stream(c, 0))
        .collect();
    let raw_rate = raw::group_drain(&conn, &streams, scale.backlog).await?;
    let raw_with_writes = raw::group_drain_with_writes(&conn, &streams, scale.backlog).await?;
    let mut rows = vec![Row::new(
        "raw_drain_with_writes",
        raw_with_writes,
        "events/s",
        Some(raw_rate),
        "raw: XREADGROUP COUNT 1000 + one pipelined HSET per event + XACK (the least a \
         projection storing per event does); ratio to the raw drain"
            .to_owned(),
    )];
    // The profile projection alone (the runtime's cost per view), then every handler of the
    // standard set at once (profile, group view, most-liked tally, friendship policy).
    for (name, instances, standard) in [
        ("projector_catchup", 1, false),
        ("projector_catchup_2", 2, false),
        ("projector_catchup_standard", 1, true),
    ] {
        // A fresh start: no group, no read models, no tallies.
        let mut c = conn.clone();
        let groups = ["profile_projection", "most_liked", "friendship_policy"];
        for stream in &streams {
            for group in groups {
                let _: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("DESTROY")
                    .arg(stream)
                    .arg(group)
                    .query_async(&mut c)
                    .await;
            }
        }
        let _: () = redis::cmd("DEL")
            .arg(esr_redis::keys::Keys::tally(MostLiked::NAME, 0))
            .arg(esr_redis::keys::Keys::tally_sources(MostLiked::NAME, 0))
            .query_async(&mut c)
            .await?;
        for u in &users {
            let _: () = redis::cmd("DEL")
                .arg(format!("profile:{{p0}}:{u}"))
                .arg(format!("tally:{{p0}}:{}:user:{u}", MostLiked::NAME))
                .query_async(&mut c)
                .await?;
        }
        let shared: Arc<dyn Store> = Arc::new(store.clone());
        let commands = Arc::new(Commands::new(shared.clone(), CommandSettings::default()));
        let (stop, shutdown) = watch::channel(false);
        eprintln!("  {name}: catch-up with {instances} instance(s) ...");
        let started = Instant::now();
        let mut running = Vec::new();
        let mut watched: Vec<(String, Vec<esr_schema::Category>)> = Vec::new();
        for i in 0..instances {
            let settings = ProjectorSettings {
                consumer: format!("bench-{name}-{i}"),
                batch_size: 1000,
                block: Duration::from_millis(100),
                ..ProjectorSettings::default()
            };
            let handlers: Vec<Arc<dyn Handler>> = if standard {
                Projectors::standard(
                    shared.clone(),
                    commands.of::<esr_domain::User>(),
                    settings.clone(),
                )
                .handlers()
                .to_vec()
            } else {
                vec![Arc::new(ViewProjection::<Profile>::new(shared.clone()))]
            };
            watched = handlers
                .iter()
                .map(|h| (h.group().to_owned(), h.categories().to_vec()))
                .collect();
            let projectors = Arc::new(Projectors::new(shared.clone(), handlers, settings));
            projectors.create_groups().await?;
            running.push(tokio::spawn(projectors.run(shutdown.clone())));
        }
        'caught_up: loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            for (group, categories) in &watched {
                let stats = store.group_stats(group, categories).await?;
                if stats.lag > 0 || stats.pending > 0 {
                    continue 'caught_up;
                }
            }
            break;
        }
        let rate = scale.backlog as f64 / started.elapsed().as_secs_f64();
        let _ = stop.send(true);
        for task in running {
            task.await??;
        }
        last_profile_caught_up(&store, &users, &versions).await?;
        let handlers = if standard {
            "all 4 standard handlers (profile, group view, most-liked tally, friendship policy)"
        } else {
            "the profile projection"
        };
        rows.push(Row::new(
            name,
            rate,
            "events/s",
            Some(raw_rate),
            format!(
                "{} events, {instances} instance(s), {handlers}; raw: XREADGROUP COUNT 1000 + XACK",
                scale.backlog
            ),
        ));
        if name == "projector_catchup" {
            rows.push(Row::new(
                "projector_catchup_vs_writes",
                rate,
                "events/s",
                Some(raw_with_writes),
                "the same run as projector_catchup; raw: raw_drain_with_writes".to_owned(),
            ));
        }
    }
    rows.push(partitioned_catchup(scale, raw_rate).await?);
    Ok(rows)
}

/// The profile projection's catch-up with one instance on a server whose store has 48
/// partitions (144 category streams): against the raw drain of one partition's streams.
async fn partitioned_catchup(scale: &Scale, raw_rate: f64) -> anyhow::Result<Row> {
    const PARTITIONS: u32 = 48;
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let mut config = RedisConfig::new(Topology::Single(server.url()));
    config.partitions = PARTITIONS;
    let store = RedisStore::connect(config).await?;
    let users: Vec<UserId> = (0..(scale.backlog / 100).max(scale.backlog / 10).min(10_000))
        .map(|i| user(&format!("p{i}")))
        .collect();
    let versions = write_backlog(&store, &users, scale.backlog).await?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let settings = ProjectorSettings {
        consumer: "bench-p48".into(),
        batch_size: 1000,
        block: Duration::from_millis(100),
        ..ProjectorSettings::default()
    };
    let handler: Arc<dyn Handler> = Arc::new(ViewProjection::<Profile>::new(shared.clone()));
    let (group, categories) = (handler.group().to_owned(), handler.categories().to_vec());
    let projectors = Arc::new(Projectors::new(shared.clone(), vec![handler], settings));
    projectors.create_groups().await?;
    eprintln!("  projector_catchup_p48: catch-up on {PARTITIONS} partitions ...");
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let running = tokio::spawn(projectors.run(shutdown));
    loop {
        // Every 200 ms: one ask is 144 `XINFO GROUPS`.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = store.group_stats(&group, &categories).await?;
        if stats.lag == 0 && stats.pending == 0 {
            break;
        }
    }
    let rate = scale.backlog as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    running.await??;
    last_profile_caught_up(&store, &users, &versions).await?;
    Ok(Row::new(
        "projector_catchup_p48",
        rate,
        "events/s",
        Some(raw_rate),
        format!(
            "{} events, 1 instance, the profile projection, {PARTITIONS} partitions on one \
             server; raw: XREADGROUP COUNT 1000 + XACK on one partition's streams",
            scale.backlog
        ),
    ))
}

/// Commands through the command service at 64 connections, and freshness under that load.
/// 64 keep-alive connections, each POSTing likes to `url(task)` one after another for
/// `duration`: the counts and every request's latency in ms.
async fn post_likes(
    duration: Duration,
    url: impl Fn(usize) -> String,
    token: &(dyn Fn(usize) -> String + Sync),
) -> (measure::Counted, Vec<f64>) {
    let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
    let targets: Vec<(reqwest::Client, String)> = (0..64)
        .map(|task| (authorized(&token(task)), url(task)))
        .collect();
    let counted = {
        let latencies = latencies.clone();
        measure::run_for(64, duration, move |task, i| {
            let ((client, url), latencies) = (targets[task].clone(), latencies.clone());
            async move {
                let started = Instant::now();
                let ok = client
                    .post(url)
                    .json(&serde_json::json!({"action": "like", "object": format!("page-{}", i % 50)}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                latencies
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(measure::elapsed_ms(started));
                ok
            }
        })
        .await
    };
    let latencies = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    (counted, latencies)
}

/// A client that sends `Authorization: Bearer <token>` with every request.
pub(crate) fn authorized(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(value) = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")) {
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap_or_default()
}

/// The HTTP stack alone: the same load on a route that parses the JSON body and answers.
async fn http_noop(duration: Duration) -> anyhow::Result<(measure::Counted, Vec<f64>)> {
    use axum::routing::post;
    async fn answer(
        axum::extract::Path(user_id): axum::extract::Path<String>,
        axum::Json(_body): axum::Json<serde_json::Value>,
    ) -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({"user_id": user_id, "version": 1}))
    }
    let router = axum::Router::new().route("/users/{id}/activity", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(esr_app::config::serve_on(
        "no-op",
        listener,
        router,
        esr_app::config::HttpLimits::default(),
        async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    // The same header as the real rows send, unread here.
    let result = post_likes(
        duration,
        |task| format!("http://{address}/users/h{task}/activity"),
        &|task| format!("unverified-token-of-h{task}"),
    )
    .await;
    let _ = stop.send(true);
    server.await??;
    Ok(result)
}

async fn http_rows(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let conn = raw::connect(&server.url()).await?;
    let raw64 = raw::evalsha_append(&conn, 64, scale.duration, "http")
        .await?
        .ok_per_second();
    let store: Arc<dyn Store> = Arc::new(connect(&server).await?);
    // The capacity of the command side is measured, not one user's rate limit: each of the
    // 64 clients is one user sending as fast as it can.
    let settings = CommandSettings {
        commands_per_user_per_sec: 0,
        ..CommandSettings::default()
    };
    let commands = Arc::new(Commands::new(store.clone(), settings));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (stop, shutdown) = watch::channel(false);
    // Authentication on, as deployed: every request carries its user's token (Ed25519), verified.
    let (signer, keys) = esr_app::auth::dev::Signer::ephemeral().map_err(anyhow::Error::msg)?;
    let verifier = esr_app::auth::Verifier::new(keys, Default::default());
    let token = move |task: usize| {
        signer
            .token(
                &format!("h{task}"),
                &[],
                Duration::from_secs(3600),
                None,
                None,
            )
            .unwrap_or_default()
    };
    let probe_token = token(64);
    let server_task = tokio::spawn(esr_app::sides::command_side(
        commands.clone(),
        esr_app::social::module().into(),
        listener,
        esr_app::config::HttpLimits::default(),
        esr_app::auth::Authentication::Jwt(Arc::new(verifier)),
        shutdown.clone(),
    ));
    let projectors = Arc::new(Projectors::standard(
        store.clone(),
        commands.of::<esr_domain::User>(),
        ProjectorSettings {
            batch_size: 200,
            block: Duration::from_millis(100),
            ..ProjectorSettings::default()
        },
    ));
    let projector_task = tokio::spawn(projectors.run(shutdown.clone()));
    for task in 0..65 {
        let register = UserCommand::Register {
            name: "Bugs".into(),
            surname: "Bunny".into(),
            birth_date: None,
        };
        commands
            .of::<esr_domain::User>()
            .execute(
                &user(&format!("h{task}")),
                register,
                &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
            )
            .await?;
    }
    let base = format!("http://{address}");
    let load = {
        let base = base.clone();
        let token = &token;
        async move {
            post_likes(
                scale.duration,
                move |task| format!("{base}/users/h{task}/activity"),
                token,
            )
            .await
        }
    };
    let ((counted, mut latencies), freshness) = tokio::join!(
        load,
        probe_freshness(&base, &probe_token, store.as_ref(), scale.duration)
    );
    let mut freshness = freshness?;
    // Then at 80% of the rate just sustained, paced (open loop): how fresh the read side
    // stays below saturation.
    let target = counted.ok_per_second() * 0.8;
    let paced = {
        let base = base.clone();
        paced_likes(
            target,
            scale.duration,
            move |task| format!("{base}/users/h{task}/activity"),
            &token,
        )
    };
    let (paced, paced_freshness) = tokio::join!(
        paced,
        probe_freshness(&base, &probe_token, store.as_ref(), scale.duration)
    );
    let mut paced_freshness = paced_freshness?;
    // The same load on a command side with authentication off (the same Authorization header
    // sent, not read): what verifying a token costs.
    let open_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let open_address = open_listener.local_addr()?;
    let open_task = tokio::spawn(esr_app::sides::command_side(
        commands.clone(),
        esr_app::social::module().into(),
        open_listener,
        esr_app::config::HttpLimits::default(),
        esr_app::auth::Authentication::Off,
        shutdown.clone(),
    ));
    // The two in turn, four slices each, so a slow spell of this shared machine (or the
    // projector's backlog) falls on both alike.
    let base_of = |authenticated: bool| {
        if authenticated {
            base.clone()
        } else {
            format!("http://{open_address}")
        }
    };
    let slice = scale.duration / 4;
    let (mut on, mut off) = (measure::Counted::default(), measure::Counted::default());
    for round in 0..8 {
        let authenticated = round % 2 == 0;
        let target = base_of(authenticated);
        let (counted, _) = post_likes(
            slice,
            |task| format!("{target}/users/h{task}/activity"),
            &token,
        )
        .await;
        let sum = if authenticated { &mut on } else { &mut off };
        sum.add(&counted);
    }
    let _ = stop.send(true);
    server_task.await??;
    open_task.await??;
    projector_task.await??;
    let (p50, p99) = (
        percentile(&mut latencies, 50.0),
        percentile(&mut latencies, 99.0),
    );
    let (noop, mut noop_latencies) = http_noop(scale.duration).await?;
    Ok(vec![
        Row::new(
            "raw_http_noop_c64",
            noop.ok_per_second(),
            "requests/s",
            None,
            format!(
                "the same 64-connection load on an axum route that parses the body and answers, no store (reference: the HTTP ceiling here); p99 {:.2} ms",
                percentile(&mut noop_latencies, 99.0)
            ),
        ),
        Row::new(
            "http_commands",
            counted.ok_per_second(),
            "commands/s",
            Some(raw64),
            format!(
                "64 connections, each request's bearer token (EdDSA) verified; p50 {p50:.2} ms, p99 {p99:.2} ms; {} failed; raw: EVALSHA c64",
                counted.failed,
            ),
        ),
        Row::new(
            "http_auth_cost",
            on.ok_per_second() / off.ok_per_second().max(f64::MIN_POSITIVE),
            "ratio",
            None,
            format!(
                "commands/s with tokens verified ({:.0}/s) / with AUTH=off ({:.0}/s, the same header sent, not read): the http_commands load in turn on two command sides, 4 slices each; {} and {} failed",
                on.ok_per_second(),
                off.ok_per_second(),
                on.failed,
                off.failed
            ),
        ),
        Row::new(
            "freshness_p99",
            percentile(&mut freshness, 99.0),
            "ms",
            None,
            format!(
                "2xx to read model, {} samples under the http load; p50 {:.2} ms",
                freshness.len(),
                percentile(&mut freshness, 50.0)
            ),
        ),
        Row::new(
            "freshness_p99_at_80pct",
            percentile(&mut paced_freshness, 99.0),
            "ms",
            None,
            format!(
                "2xx to read model, {} samples while {target:.0} commands/s (80% of http_commands) are sent paced; {:.0}/s answered 2xx, {} failed, {} not sent (512 in flight); p50 {:.2} ms",
                paced_freshness.len(),
                paced.ok as f64 / scale.duration.as_secs_f64(),
                paced.failed,
                paced.not_sent,
                percentile(&mut paced_freshness, 50.0)
            ),
        ),
    ])
}

/// One more writer that, after each 2xx, waits to see its effect in the read model: the
/// command-to-visible times, for `duration`.
async fn probe_freshness(
    base: &str,
    token: &str,
    store: &dyn Store,
    duration: Duration,
) -> anyhow::Result<Vec<f64>> {
    let client = authorized(token);
    let probe_user = user("h64");
    let mut freshness = Vec::new();
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let answer = client
            .post(format!("{base}/users/h64/activity"))
            .json(&serde_json::json!({"action": "kick", "object": "probe"}))
            .send()
            .await?;
        let answered = Instant::now();
        let body: serde_json::Value = answer.json().await?;
        let version = body["version"].as_u64().unwrap_or(u64::MAX);
        loop {
            let seen = store
                .get_read_model(Profile::NAME, &stream_of(&probe_user))
                .await?
                .map_or(0, |m| m.version);
            if seen >= version {
                break;
            }
            if answered.elapsed() > Duration::from_secs(10) {
                anyhow::bail!("the read model never reached version {version}");
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        freshness.push(measure::elapsed_ms(answered));
    }
    Ok(freshness)
}

struct Paced {
    ok: u64,
    failed: u64,
    not_sent: u64,
}

/// Likes sent at `rate` per second for `duration` whatever the answers' pace (open loop), over
/// 64 users; at most 512 in flight, the rest counted as not sent.
async fn paced_likes(
    rate: f64,
    duration: Duration,
    url: impl Fn(usize) -> String,
    token: &dyn Fn(usize) -> String,
) -> Paced {
    let targets: Vec<(reqwest::Client, String)> = (0..64)
        .map(|task| (authorized(&token(task)), url(task)))
        .collect();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let tick = Duration::from_millis(5);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut owed, mut sent, mut not_sent) = (0.0_f64, 0_usize, 0_u64);
    let mut requests = tokio::task::JoinSet::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        interval.tick().await;
        owed += rate * tick.as_secs_f64();
        while owed >= 1.0 {
            owed -= 1.0;
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                not_sent += 1;
                continue;
            };
            let (client, url) = targets[sent % targets.len()].clone();
            let object = format!("page-{}", sent % 50);
            sent += 1;
            requests.spawn(async move {
                let ok = client
                    .post(url)
                    .json(&serde_json::json!({"action": "like", "object": object}))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                drop(permit);
                ok
            });
        }
    }
    let mut paced = Paced {
        ok: 0,
        failed: 0,
        not_sent,
    };
    while let Some(done) = requests.join_next().await {
        if done.unwrap_or(false) {
            paced.ok += 1;
        } else {
            paced.failed += 1;
        }
    }
    paced
}

/// Redis memory per stored event, beside a raw XADD entry of the same fields (returned too).
async fn memory_row(scale: &Scale) -> anyhow::Result<(Row, f64)> {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let conn = raw::connect(&server.url()).await?;
    let users: Vec<UserId> = (0..scale.memory_events / 100)
        .map(|i| user(&format!("m{i}")))
        .collect();
    // Raw: one copy of the same events, their category entries as we write them, in one stream.
    let raw_bytes = raw::bytes_per_entry(&conn, scale.memory_events, |j| {
        let new = like_by(&users[j % users.len()], j as u64);
        entry::to_fields(&StoredEvent {
            envelope: EventEnvelope {
                event_id: new.event_id,
                stream: stream_of(&users[j % users.len()]),
                version: (j / users.len() + 1) as u64,
                event_type: new.event_type,
                schema_version: new.schema_version,
                occurred_at: new.occurred_at,
                correlation_id: new.correlation_id,
                causation_id: new.causation_id,
                actor: new.actor,
            },
            payload: new.payload,
        })
    })
    .await?;
    let store = connect(&server).await?;
    let before = raw::used_memory(&conn).await?;
    append_likes(&store, &users, scale.memory_events, async || Ok(())).await?;
    let ours = (raw::used_memory(&conn).await? - before) / scale.memory_events as f64;
    let row = Row::new(
        "bytes_per_event",
        ours,
        "bytes",
        Some(raw_bytes),
        format!(
            "{} events over {} users (user stream + category stream + counter); raw: the same events' category entries alone, one stream",
            scale.memory_events,
            users.len()
        ),
    );
    Ok((row, raw_bytes))
}

/// `events` likes over `users`, appended in batches of 1,000, `after_batch` run after each.
async fn append_likes(
    store: &RedisStore,
    users: &[UserId],
    events: usize,
    mut after_batch: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut written = 0;
    while written < events {
        let batch: Vec<AppendRequest> = (0..1000.min(events - written))
            .map(|j| {
                let user = &users[(written + j) % users.len()];
                request(user, ExpectedVersion::Any, vec![like_by(user, j as u64)])
            })
            .collect();
        written += batch.len();
        for outcome in store.append_batch(batch).await? {
            outcome?;
        }
        after_batch().await?;
    }
    Ok(())
}

/// Memory per event with the category streams trimmed as a group consumes them (the setting
/// `CATEGORY_TRIM_EVERY_MS`): the steady state of a deployment that keeps each event once,
/// in its user's stream, still readable there.
async fn trimmed_memory_row(scale: &Scale, raw_bytes: f64) -> anyhow::Result<Row> {
    let server = RedisServer::start_with(&["--appendonly", "no"]);
    let conn = raw::connect(&server.url()).await?;
    let users: Vec<UserId> = (0..scale.memory_events / 100)
        .map(|i| user(&format!("t{i}")))
        .collect();
    let store = connect(&server).await?;
    let categories = UserEvent::CATEGORIES;
    store.create_group("consumer", categories).await?;
    let before = raw::used_memory(&conn).await?;
    // After each batch the group consumes what was written, and the trim follows it.
    append_likes(&store, &users, scale.memory_events, async || {
        loop {
            let read = store
                .read_new("consumer", "c", categories, 1000, Duration::ZERO)
                .await?;
            if read.is_empty() {
                break;
            }
            let entries: Vec<_> = read.into_iter().map(|d| d.entry).collect();
            store.ack("consumer", &entries).await?;
        }
        store.trim_consumed(categories).await?;
        Ok(())
    })
    .await?;
    let ours = (raw::used_memory(&conn).await? - before) / scale.memory_events as f64;
    // Still readable: the last user's whole history.
    let last = stream_of(&users[users.len() - 1]);
    let history = store.read_stream(&last, 1, 10_000).await?;
    anyhow::ensure!(
        history.len() == scale.memory_events / users.len(),
        "a trimmed store lost events of {last}: {} read",
        history.len()
    );
    Ok(Row::new(
        "bytes_per_event_trimmed",
        ours,
        "bytes",
        Some(raw_bytes),
        format!(
            "{} events over {} users, the category streams trimmed behind a consuming group (user stream + counter); raw: one category entry per event",
            scale.memory_events,
            users.len()
        ),
    ))
}
