//! Scale-out: the same appends and projector catch-up on one server and on Clusters of 3 and
//! 6 masters, with 48 partitions spread evenly over the masters (`esr partitions spread`).
//! Every Cluster figure is divided by the one-server figure of the same run: how much the
//! masters add. All servers run on this machine, so the figures grow only where it has cores
//! to spare.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use esr_app::projector::{Handler, ViewProjection};
use esr_app::{ProjectorSettings, Projectors};
use esr_domain::Profile;
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_schema::UserId;
use esr_store::{Store, Subscriptions};
use esr_testkit::{RedisCluster, RedisServer};
use tokio::sync::watch;

use crate::Scale;
use crate::report::Row;
use crate::store::{appends, batch_appends, last_profile_caught_up, user, write_backlog};

/// One server (no persistence) for one master, a Cluster for more: kept running while held.
pub(crate) struct Servers {
    _single: Option<RedisServer>,
    _cluster: Option<RedisCluster>,
}

impl Servers {
    pub(crate) fn start(masters: usize) -> (Self, Topology) {
        if masters <= 1 {
            let server = RedisServer::start_with(&["--appendonly", "no"]);
            let topology = Topology::Single(server.url());
            let servers = Self {
                _single: Some(server),
                _cluster: None,
            };
            (servers, topology)
        } else {
            let cluster = RedisCluster::start(masters);
            let topology = Topology::Cluster(cluster.urls());
            let servers = Self {
                _single: None,
                _cluster: Some(cluster),
            };
            (servers, topology)
        }
    }
}

/// Divisible by 1, 3 and 6: every master holds the same number of partitions.
const PARTITIONS: u32 = 48;

struct Figures {
    append_c64: f64,
    append_batch: f64,
    catchup: f64,
}

pub async fn rows(scale: &Scale) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    let mut one_master: Option<Figures> = None;
    for masters in [1usize, 3, 6] {
        eprintln!("  {masters} master(s) ...");
        // The servers live until the end of this round.
        let (_servers, topology) = Servers::start(masters);
        let mut config = RedisConfig::new(topology);
        config.partitions = PARTITIONS;
        let mut store = RedisStore::connect(config.clone()).await?;
        if masters > 1 {
            spread(&store, masters)
                .await
                .context("spreading the partitions")?;
            // Measured on a connection that starts with the slots where they now are.
            store = RedisStore::connect(config).await?;
        }
        let figures = measure(&store, scale)
            .await
            .with_context(|| format!("measuring on {masters} master(s)"))?;
        let baseline = one_master.as_ref();
        let label = if masters == 1 {
            "one server".to_owned()
        } else {
            format!(
                "Cluster of {masters} masters, {} partitions each",
                PARTITIONS as usize / masters
            )
        };
        let divisor = "raw: the same on one server, same run";
        let events = backlog(scale);
        for (name, value, baseline, what) in [
            (
                "append_c64",
                figures.append_c64,
                baseline.map(|b| b.append_c64),
                "single appends, 64 writers".to_owned(),
            ),
            (
                "append_batch",
                figures.append_batch,
                baseline.map(|b| b.append_batch),
                "batches of 1,000 users".to_owned(),
            ),
            (
                "projector_catchup",
                figures.catchup,
                baseline.map(|b| b.catchup),
                format!(
                    "profile projection, {masters} instance(s), every category entry of the \
                     round ({events} of them the backlog's)"
                ),
            ),
        ] {
            rows.push(Row::new(
                &format!("scaleout_{name}_m{masters}"),
                value,
                "events/s",
                baseline,
                format!("{label}; {what}; {divisor}"),
            ));
        }
        if one_master.is_none() {
            one_master = Some(figures);
        }
    }
    Ok(rows)
}

fn backlog(scale: &Scale) -> usize {
    (scale.backlog / 5).max(1000)
}

/// Move partitions until every master holds `PARTITIONS / masters`.
async fn spread(store: &RedisStore, masters: usize) -> anyhow::Result<()> {
    let mut placement = store.placement().await?;
    for step in placement.spread_moves() {
        store.move_partition(&placement, &step).await?;
        placement = store.placement().await?;
    }
    let counts: Vec<usize> = placement.per_master().values().copied().collect();
    anyhow::ensure!(
        counts.len() == masters && counts.iter().all(|c| *c == PARTITIONS as usize / masters),
        "partitions per master after spreading: {counts:?}"
    );
    Ok(())
}

async fn measure(store: &RedisStore, scale: &Scale) -> anyhow::Result<Figures> {
    let d = scale.duration;
    let append_c64 = appends(store, 64, d, "so").await.ok_per_second();

    let append_batch = batch_appends(store, "sob", d)
        .await
        .context("batch appends")?
        .ok_per_second();

    // A backlog on fresh users, then the profile projection catching up with one instance per
    // master.
    let events = backlog(scale);
    let users: Vec<UserId> = (0..(events / 20).max(1))
        .map(|i| user(&format!("sop-{i}")))
        .collect();
    let versions = write_backlog(store, &users, events)
        .await
        .context("the backlog")?;
    let instances = store.placement().await.map_or(1, |p| p.masters.len());
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    // The group reads the categories from the start: the appends measured above too, so the
    // rate counts every entry it drains, not the backlog alone.
    let profile = ViewProjection::<Profile>::new(shared.clone());
    shared
        .create_group(profile.group(), profile.categories())
        .await?;
    let entries = shared
        .group_stats(profile.group(), profile.categories())
        .await?
        .lag;
    let (stop, shutdown) = watch::channel(false);
    let started = Instant::now();
    let mut running = Vec::new();
    let mut group = (String::new(), Vec::new());
    for i in 0..instances {
        let settings = ProjectorSettings {
            consumer: format!("scaleout-{i}"),
            batch_size: 1000,
            block: Duration::from_millis(100),
            ..ProjectorSettings::default()
        };
        let handler: Arc<dyn Handler> = Arc::new(ViewProjection::<Profile>::new(shared.clone()));
        group = (handler.group().to_owned(), handler.categories().to_vec());
        let projectors = Arc::new(Projectors::new(shared.clone(), vec![handler], settings));
        projectors.create_groups().await?;
        running.push(tokio::spawn(projectors.run(shutdown.clone())));
    }
    // Asked every 200 ms: with 48 partitions one ask is 144 `XINFO GROUPS`, which at the
    // projector bench's 20 ms took a share of the cores from the projector measured.
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stats = store
            .group_stats(&group.0, &group.1)
            .await
            .context("waiting for the catch-up")?;
        if stats.lag == 0 && stats.pending == 0 {
            break;
        }
    }
    let catchup = entries as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for task in running {
        task.await??;
    }
    last_profile_caught_up(store, &users, &versions).await?;
    Ok(Figures {
        append_c64,
        append_batch,
        catchup,
    })
}
