//! Connections: one shared, self-reconnecting connection for ordinary commands, and a pool of
//! dedicated ones for blocking reads (a blocked connection serves nothing else, and the
//! ordinary response timeout must not cut a `BLOCK` short).

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline,
    RedisFuture, RedisResult, TlsCertificates, Value,
};

/// Where the data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (or a primary behind a proxy): `redis://` or `rediss://`.
    Single(String),
    /// Redis Cluster, from any of its nodes.
    Cluster(Vec<String>),
}

#[derive(Clone)]
pub enum Conn {
    Managed(ConnectionManager),
    Dedicated(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Managed(c) => c.req_packed_command(cmd),
            Conn::Dedicated(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Managed(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Dedicated(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(c) => c.get_db(),
            Conn::Dedicated(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Makes connections for a topology.
pub struct Connector {
    single: Option<redis::Client>,
    cluster_nodes: Vec<String>,
    /// The first cluster node's settings (scheme, credentials), for connections to one node.
    first_node: Option<ConnectionInfo>,
    tls_ca_pem: Option<Vec<u8>>,
    response_timeout: Duration,
    idle_blocking: Mutex<Vec<Conn>>,
}

impl Connector {
    pub fn new(
        topology: &Topology,
        response_timeout: Duration,
        tls_ca_pem: Option<Vec<u8>>,
    ) -> RedisResult<Self> {
        install_tls_provider();
        let (single, cluster_nodes) = match topology {
            Topology::Single(url) => {
                let client = match &tls_ca_pem {
                    Some(pem) => redis::Client::build_with_tls(url.as_str(), certificates(pem))?,
                    None => redis::Client::open(url.as_str())?,
                };
                (Some(client), Vec::new())
            }
            Topology::Cluster(nodes) => {
                // Checked now, so a bad URL fails at startup rather than at first use.
                ClusterClient::new(nodes.clone())?;
                (None, nodes.clone())
            }
        };
        let first_node = cluster_nodes
            .first()
            .map(|n| n.as_str().into_connection_info())
            .transpose()?;
        Ok(Self {
            single,
            cluster_nodes,
            first_node,
            tls_ca_pem,
            response_timeout,
            idle_blocking: Mutex::new(Vec::new()),
        })
    }

    /// The shared connection. On one server, a `ConnectionManager` that reconnects in the
    /// background; on Cluster, a cluster connection that follows slot moves.
    pub async fn shared(&self) -> RedisResult<Conn> {
        match &self.single {
            Some(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_response_timeout(Some(self.response_timeout))
                    .set_connection_timeout(Some(self.response_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500));
                Ok(Conn::Managed(
                    client.get_connection_manager_with_config(config).await?,
                ))
            }
            None => Ok(Conn::Cluster(self.cluster(self.response_timeout).await?)),
        }
    }

    /// A connection for one blocking call; give it back with [`Connector::put_blocking`].
    /// It has no response timeout of its own: callers bound each call themselves.
    pub async fn take_blocking(&self) -> RedisResult<Conn> {
        let idle = self
            .idle_blocking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        if let Some(conn) = idle {
            return Ok(conn);
        }
        match &self.single {
            Some(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(None)
                    .set_connection_timeout(Some(self.response_timeout));
                Ok(Conn::Dedicated(
                    client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                ))
            }
            // The cluster connection's own timeout is only a backstop above any BLOCK we use.
            None => Ok(Conn::Cluster(
                self.cluster(Duration::from_secs(3600)).await?,
            )),
        }
    }

    /// Return a connection whose last call completed normally.
    pub fn put_blocking(&self, conn: Conn) {
        let mut idle = self
            .idle_blocking
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < 64 {
            idle.push(conn);
        }
    }

    /// A connection to one node of the cluster at `address` (`host:port`), with the scheme,
    /// credentials and certificates of the first configured node: for commands addressed to
    /// one node (moving a slot).
    pub async fn node(&self, address: &str) -> RedisResult<MultiplexedConnection> {
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse::<u16>().ok()?)))
            .ok_or_else(|| invalid_input(format!("{address:?} is not host:port")))?;
        let first = self
            .first_node
            .clone()
            .ok_or_else(|| invalid_input("not a cluster".to_owned()))?;
        let addr = match first.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host,
                port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(host, port),
        };
        let info = first.set_addr(addr);
        let client = match &self.tls_ca_pem {
            Some(pem) => redis::Client::build_with_tls(info, certificates(pem))?,
            None => redis::Client::open(info)?,
        };
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.response_timeout));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// A plain connection to the server, or to the first node of a cluster.
    pub async fn probe(&self) -> RedisResult<MultiplexedConnection> {
        match (&self.single, &self.first_node) {
            (Some(client), _) => client.get_multiplexed_async_connection().await,
            (None, Some(first)) => {
                let address = match first.addr() {
                    ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
                        format!("{host}:{port}")
                    }
                    other => return Err(invalid_input(format!("no node address in {other}"))),
                };
                self.node(&address).await
            }
            (None, None) => Err(invalid_input("no server configured".to_owned())),
        }
    }

    /// `AUTH`/`AUTH2` arguments for a `MIGRATE` between nodes, from the configured credentials.
    pub fn migrate_auth(&self, migrate: &mut Cmd) {
        let Some(info) = &self.first_node else {
            return;
        };
        let settings = info.redis_settings();
        match (settings.username(), settings.password()) {
            (Some(user), Some(password)) => {
                migrate.arg("AUTH2").arg(user).arg(password);
            }
            (None, Some(password)) => {
                migrate.arg("AUTH").arg(password);
            }
            _ => {}
        }
    }

    async fn cluster(&self, response_timeout: Duration) -> RedisResult<ClusterConnection> {
        let mut builder = ClusterClient::builder(self.cluster_nodes.clone())
            .response_timeout(response_timeout)
            .connection_timeout(self.response_timeout)
            .retries(3);
        if let Some(pem) = &self.tls_ca_pem {
            builder = builder.certs(certificates(pem));
        }
        builder.build()?.get_async_connection().await
    }
}

fn invalid_input(reason: String) -> redis::RedisError {
    redis::RedisError::from(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        reason,
    ))
}

/// Trust `ca_pem` instead of the system's roots; no client certificate.
fn certificates(ca_pem: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(ca_pem.to_vec()),
    }
}

/// rustls needs one process-wide crypto provider for `rediss://`; installing twice is harmless.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
