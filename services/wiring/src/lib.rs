//! The binaries' edge: which store to open. With `REDIS_CLUSTER_NODES` or `REDIS_URL` set, the
//! Redis adapter; the in-memory store only when asked for (`STORE=memory`), or by the
//! all-in-one binary, whose default it is. The rest of the application knows only the port.

use std::sync::Arc;

use esr_app::Modules;
use esr_redis::acl::{Layout, Side};
use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_store::{MemoryStore, Store};

/// Which store to use.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// `memory`: the in-memory store, private to this process and lost when it exits. The
    /// command, projector and query sides refuse to start with no Redis set unless given this,
    /// so that a misspelt REDIS_URL cannot silently lose every command.
    #[arg(long = "store", env = "STORE")]
    pub store: Option<String>,
    /// `redis://` or `rediss://` (TLS) URL, with user and password for ACL.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Comma-separated node URLs; selects Redis Cluster.
    #[arg(long, env = "REDIS_CLUSTER_NODES", hide_env_values = true)]
    pub redis_cluster_nodes: Option<String>,
    /// Category stream partitions (default 1 on one server, 16 on Cluster). Fixed for the life
    /// of a deployment: every process must use the same value.
    #[arg(long, env = "REDIS_PARTITIONS")]
    pub redis_partitions: Option<u32>,
    /// For `rediss://`: a PEM file with the CA that signed the servers' certificates, trusted
    /// instead of the system's roots.
    #[arg(long, env = "REDIS_TLS_CA_FILE")]
    pub redis_tls_ca_file: Option<std::path::PathBuf>,
    /// Answer an append only once this many replicas acknowledged it (WAIT; 0: do not wait).
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// How long an append waits for those replicas (ms); fewer in time answers 503.
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 1000)]
    pub redis_wait_timeout_ms: u64,
}

/// The store that was opened, for the startup log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Redis { partitions: u32 },
    RedisCluster { partitions: u32 },
}

/// What `modules` keep in Redis, for the sides' permissions (`esr acl`, and the check at
/// start).
pub fn layout(modules: &Modules) -> Layout {
    Layout {
        aggregates: modules
            .aggregates()
            .into_iter()
            .map(|a| a.aggregate)
            .collect(),
        categories: modules.categories(),
        read_models: modules.views().iter().map(|v| v.name.to_owned()).collect(),
        tallies: modules.tallies().into_iter().map(str::to_owned).collect(),
        groups: modules
            .groups()
            .into_iter()
            .map(|g| g.name.to_owned())
            .collect(),
    }
}

/// Refuse a Redis user that cannot do what `sides` do with what `modules` keep, naming each
/// missing permission.
pub async fn check_permissions(
    store: &RedisStore,
    sides: &[Side],
    modules: &Modules,
) -> anyhow::Result<()> {
    let layout = layout(modules);
    let mut missing = Vec::new();
    for side in sides {
        for lack in store
            .missing_permissions(*side, &layout)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot check the Redis user's permissions: {}",
                    esr_app::error_chain(&e)
                )
            })?
        {
            missing.push(format!("{} ({}): {}", lack.probe, side.user(), lack.reply));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the Redis user cannot do what this side needs; grant it the rules `esr acl` prints \
         for {}. Refused:\n  {}",
        sides
            .iter()
            .map(|s| s.user())
            .collect::<Vec<_>>()
            .join(", "),
        missing.join("\n  ")
    )
}

impl StoreArgs {
    /// The store the variables name, for `sides` serving `modules`: Redis when one is set (its
    /// user checked for what those sides do), the in-memory store with `STORE=memory`; an
    /// error with neither, saying what to set.
    pub async fn open(
        &self,
        sides: &[Side],
        modules: &Modules,
    ) -> anyhow::Result<(Arc<dyn Store>, StoreKind)> {
        self.open_with_default(sides, modules, false).await
    }

    /// As [`StoreArgs::open`], with the in-memory store when nothing is set (the all-in-one
    /// binary on a laptop).
    pub async fn open_or_memory(
        &self,
        sides: &[Side],
        modules: &Modules,
    ) -> anyhow::Result<(Arc<dyn Store>, StoreKind)> {
        self.open_with_default(sides, modules, true).await
    }

    async fn open_with_default(
        &self,
        sides: &[Side],
        modules: &Modules,
        memory_by_default: bool,
    ) -> anyhow::Result<(Arc<dyn Store>, StoreKind)> {
        let asked = self
            .store
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty());
        let memory = match asked {
            Some("memory") => {
                if self.redis_configured() {
                    anyhow::bail!(
                        "STORE=memory and a Redis (REDIS_URL or REDIS_CLUSTER_NODES) are both set: \
                         unset one"
                    );
                }
                true
            }
            Some("redis") | None => false,
            Some(other) => anyhow::bail!("STORE={other:?}: give \"memory\" or \"redis\""),
        };
        if memory || (memory_by_default && asked.is_none() && !self.redis_configured()) {
            tracing::warn!(
                "running on the in-memory store, private to this process and lost when it exits"
            );
            return Ok((Arc::new(MemoryStore::new()), StoreKind::Memory));
        }
        let layout = layout(modules);
        let conflicts = layout.naming_conflicts();
        if !conflicts.is_empty() {
            anyhow::bail!(
                "the domain's views cannot be kept in Redis: {}",
                conflicts.join("; ")
            );
        }
        match self.redis(&layout).await? {
            Some((store, kind)) => {
                check_permissions(&store, sides, modules).await?;
                Ok((Arc::new(store), kind))
            }
            None => anyhow::bail!(
                "no store: set REDIS_URL (or REDIS_CLUSTER_NODES) to use Redis, or STORE=memory \
                 for an in-memory store private to this process and lost when it exits"
            ),
        }
    }

    fn redis_configured(&self) -> bool {
        [&self.redis_url, &self.redis_cluster_nodes]
            .iter()
            .any(|v| v.as_deref().is_some_and(|s| !s.trim().is_empty()))
    }

    /// The Redis the variables name; an error when neither is set (the admin tool has
    /// nothing to inspect then).
    pub async fn open_redis(&self, modules: &Modules) -> anyhow::Result<RedisStore> {
        match self.redis(&layout(modules)).await? {
            Some((store, _)) => Ok(store),
            None => anyhow::bail!("set REDIS_URL or REDIS_CLUSTER_NODES: which Redis?"),
        }
    }

    async fn redis(&self, layout: &Layout) -> anyhow::Result<Option<(RedisStore, StoreKind)>> {
        let present = |v: &Option<String>| {
            v.as_deref()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let topology = match (present(&self.redis_cluster_nodes), present(&self.redis_url)) {
            (Some(nodes), _) => Topology::Cluster(
                nodes
                    .split(',')
                    .map(|n| n.trim().to_owned())
                    .filter(|n| !n.is_empty())
                    .collect(),
            ),
            (None, Some(url)) => Topology::Single(url),
            (None, None) => return Ok(None),
        };
        let cluster = matches!(topology, Topology::Cluster(_));
        let mut config = RedisConfig::new(topology);
        config.aggregates = layout.aggregates.clone();
        if let Some(partitions) = self.redis_partitions {
            config.partitions = partitions;
        }
        if let Some(path) = &self.redis_tls_ca_file {
            let pem = std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("cannot read REDIS_TLS_CA_FILE {}: {e}", path.display())
            })?;
            config.tls_ca_pem = Some(pem);
        }
        if self.redis_wait_replicas > 0 {
            let timeout = std::time::Duration::from_millis(self.redis_wait_timeout_ms.max(1));
            // The shared connection must outlast the WAIT it carries.
            config.response_timeout = config.response_timeout.max(timeout * 2);
            config.wait_for_replicas = Some(esr_redis::WaitForReplicas {
                replicas: self.redis_wait_replicas,
                timeout,
            });
        }
        let partitions = config.partitions;
        // Errors name the variable, never the URL: it may hold a password.
        let variable = if cluster {
            "REDIS_CLUSTER_NODES"
        } else {
            "REDIS_URL"
        };
        let store = RedisStore::connect(config).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot use the Redis given by {variable}: {}",
                esr_app::error_chain(&e)
            )
        })?;
        let kind = if cluster {
            StoreKind::RedisCluster { partitions }
        } else {
            StoreKind::Redis { partitions }
        };
        tracing::info!(?kind, "connected to Redis");
        Ok(Some((store, kind)))
    }
}

/// How a process serving all three sides is configured: flags and environment variables for
/// its listeners, store, HTTP limits, commands, projector, queries and authentication. A team's
/// binary flattens it and calls [`ServeArgs::serve_all`] with its modules.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[arg(long, env = "COMMAND_LISTEN", default_value = "127.0.0.1:8080")]
    pub command_listen: String,
    #[arg(long, env = "QUERY_LISTEN", default_value = "127.0.0.1:8081")]
    pub query_listen: String,
    #[arg(long, env = "PROJECTOR_LISTEN", default_value = "127.0.0.1:8082")]
    pub projector_listen: String,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub http: esr_app::config::HttpArgs,
    #[command(flatten)]
    pub command: esr_app::config::CommandArgs,
    #[command(flatten)]
    pub projector: esr_app::config::ProjectorArgs,
    #[command(flatten)]
    pub query: esr_app::config::QueryArgs,
    #[command(flatten)]
    pub auth: esr_app::config::AuthArgs,
}

impl ServeArgs {
    /// The store these arguments name (in memory when none), and a [`esr_app::Service`] of
    /// `modules` on it with these settings; the listeners are left to the caller.
    pub async fn service(
        &self,
        modules: Modules,
    ) -> anyhow::Result<(esr_app::Service, Arc<dyn Store>, StoreKind)> {
        let (store, kind) = self
            .store
            .open_or_memory(&[Side::Projector, Side::Query], &modules)
            .await?;
        let service = esr_app::Service::new(store.clone())
            .modules(modules)
            .command_settings(self.command.settings())
            .projector_settings(self.projector.settings())
            .query_max_wait(std::time::Duration::from_millis(self.query.max_wait_ms))
            .limits(self.http.limits());
        Ok((service, store, kind))
    }

    /// Serve the three sides of `modules` until SIGTERM or Ctrl-C.
    pub async fn serve_all(self, modules: Modules) -> anyhow::Result<()> {
        use esr_app::sides::bind;
        let (service, _, kind) = self.service(modules).await?;
        tracing::info!(?kind, "store opened");
        service
            .authentication(self.auth.authentication().await?)
            .serve_all(
                bind("command side", &self.command_listen).await?,
                bind("query side", &self.query_listen).await?,
                bind("projector", &self.projector_listen).await?,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn social() -> Modules {
        Modules::from(vec![esr_app::social::module()])
    }

    #[test]
    fn the_domain_names_its_views_apart_from_its_aggregates() {
        assert_eq!(layout(&social()).naming_conflicts(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn an_unreadable_ca_file_is_named_in_the_error() {
        let args = StoreArgs {
            store: None,
            redis_url: Some("rediss://127.0.0.1:1/".into()),
            redis_cluster_nodes: None,
            redis_partitions: None,
            redis_tls_ca_file: Some("/nonexistent/esr-ca.pem".into()),
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 1000,
        };
        let error = args.open(&[], &social()).await.err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.contains("REDIS_TLS_CA_FILE /nonexistent/esr-ca.pem"),
            "{error}"
        );
    }

    fn nothing_set() -> StoreArgs {
        StoreArgs {
            store: None,
            redis_url: None,
            redis_cluster_nodes: None,
            redis_partitions: None,
            redis_tls_ca_file: None,
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 1000,
        }
    }

    #[tokio::test]
    async fn no_redis_and_no_store_setting_is_refused_unless_memory_is_the_default() {
        let error = nothing_set()
            .open(&[], &social())
            .await
            .err()
            .map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(
            error.contains("STORE=memory") && error.contains("REDIS_URL"),
            "{error}"
        );
        let (_, kind) = nothing_set()
            .open_or_memory(&[], &social())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kind, StoreKind::Memory);
        let memory = StoreArgs {
            store: Some("memory".into()),
            ..nothing_set()
        };
        let (_, kind) = memory
            .open(&[], &social())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(kind, StoreKind::Memory);
        let both = StoreArgs {
            store: Some("memory".into()),
            redis_url: Some("redis://127.0.0.1:1/".into()),
            ..nothing_set()
        };
        assert!(both.open(&[], &social()).await.is_err());
    }
}
