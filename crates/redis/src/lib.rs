//! The Redis Streams adapter of the storage port.
//!
//! - Appends ([`append`]) run one Lua script (`lua/append.lua`) that checks the expected
//!   version and the idempotency record, then writes the aggregate's stream, the category
//!   streams and the record. Every key it touches is in `KEYS` and shares the stream's
//!   partition hash tag.
//! - Category streams are split into `partitions` streams each (`user_updates:{p0}`, ...); a
//!   stream's keys live in the slot of its partition, so no command spans two slots and the same
//!   code runs on one server and on Redis Cluster. See [`keys`] for the layout.
//! - Blocking reads use dedicated connections ([`conn`]); the shared connection keeps a short
//!   response timeout and reconnects by itself.

pub mod acl;
pub mod admin;
mod append;
pub mod conn;
pub mod keys;
mod lease;
mod parse;
mod partitioned;
pub mod placement;
mod read_model;
mod subscription;
mod tally;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use esr_schema::entry::{self, Fields};
use esr_schema::{Category, StoredEvent, StreamId};
use esr_store::{
    AppendOutcome, AppendRequest, CategoryEntry, CategoryLog, EntryId, EventStore, Result,
    Snapshot, SnapshotStore, StoreError,
};
use redis::{RedisError, Script, Value};

pub use conn::Topology;
use conn::{Conn, Connector};
use keys::Keys;

/// Partitions per category on one server, unless configured.
pub const DEFAULT_PARTITIONS_SINGLE: u32 = 1;
/// Partitions per category on Cluster, unless configured: enough to spread over the masters.
pub const DEFAULT_PARTITIONS_CLUSTER: u32 = 16;

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub topology: Topology,
    /// Category stream partitions. Fixed for the life of a deployment: streams are assigned to
    /// partitions by hash, and changing the count would move them.
    pub partitions: u32,
    /// Response timeout of the shared connection (not of blocking reads).
    pub response_timeout: Duration,
    /// For `rediss://`: the PEM of the CA that signed the servers' certificates, trusted
    /// instead of the system's roots (a private CA).
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Answer an append only once this many replicas acknowledged it (`WAIT`).
    pub wait_for_replicas: Option<WaitForReplicas>,
    /// The aggregate types whose streams this store holds (the domain's: user and group by
    /// default). A read model or tally named like one is refused: its keys
    /// (`<name>:{pN}:<stream>`) would meet that aggregate's streams (`<aggregate>:{pN}:<id>`).
    pub aggregates: Vec<esr_schema::AggregateType>,
}

/// Each append waits for `replicas` replicas to acknowledge it, at most `timeout`; fewer in
/// time and the append is answered as unavailable (it is on the primary, and a failover now
/// could lose it: send it again with the same idempotency key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitForReplicas {
    pub replicas: u32,
    pub timeout: Duration,
}

impl RedisConfig {
    pub fn new(topology: Topology) -> Self {
        let partitions = match topology {
            Topology::Single(_) => DEFAULT_PARTITIONS_SINGLE,
            Topology::Cluster(_) => DEFAULT_PARTITIONS_CLUSTER,
        };
        Self {
            topology,
            partitions,
            response_timeout: Duration::from_secs(2),
            tls_ca_pem: None,
            wait_for_replicas: None,
            aggregates: vec![esr_schema::user::USER, esr_schema::group::GROUP],
        }
    }
}

/// The store, cheap to clone (all clones share connections).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced when a cluster connection stops answering ([`watch_cluster_connection`]).
    conn: std::sync::RwLock<Conn>,
    connector: Connector,
    keys: Keys,
    append: Script,
    put_read_model: Script,
    save_snapshot: Script,
    tally_count: Script,
    tally_position: Script,
    save_checkpoint: Script,
    lease: Script,
    heartbeat: Script,
    prune_consumer: Script,
    redrive: Script,
    trim_consumed: Script,
    warnings: Vec<String>,
    /// Names no read model or tally may take ([`RedisConfig::aggregates`]).
    aggregates: Vec<String>,
    subscriptions: subscription::State,
    wait_for_replicas: Option<WaitForReplicas>,
    /// On one server every partition's streams are one read away; on Cluster, one slot each.
    clustered: bool,
}

impl RedisStore {
    /// Connect and check the server answers.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        if config.partitions == 0 {
            return Err(StoreError::Invalid("partitions must be at least 1".into()));
        }
        let connector = Connector::new(
            &config.topology,
            config.response_timeout,
            config.tls_ca_pem.clone(),
        )
        .map_err(unavailable)?;
        let mut conn = connector.shared().await.map_err(unavailable)?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map_err(unavailable)?;
        check_partitions(&mut conn, config.partitions).await?;
        let warnings = check_server(&mut conn).await?;
        for warning in &warnings {
            tracing::warn!("{warning}");
        }
        let clustered = matches!(config.topology, Topology::Cluster(_));
        let store = Self {
            inner: Arc::new(Inner {
                conn: std::sync::RwLock::new(conn),
                connector,
                keys: Keys {
                    partitions: config.partitions,
                },
                append: Script::new(include_str!("lua/append.lua")),
                put_read_model: Script::new(include_str!("lua/put_read_model.lua")),
                save_snapshot: Script::new(include_str!("lua/save_snapshot.lua")),
                tally_count: Script::new(include_str!("lua/tally_count.lua")),
                tally_position: Script::new(include_str!("lua/tally_position.lua")),
                save_checkpoint: Script::new(include_str!("lua/save_checkpoint.lua")),
                lease: Script::new(include_str!("lua/lease.lua")),
                heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
                prune_consumer: Script::new(include_str!("lua/prune_consumer.lua")),
                redrive: Script::new(include_str!("lua/redrive.lua")),
                trim_consumed: Script::new(include_str!("lua/trim_consumed.lua")),
                subscriptions: subscription::State::default(),
                aggregates: config.aggregates.iter().map(|a| a.to_string()).collect(),
                warnings,
                wait_for_replicas: config.wait_for_replicas,
                clustered,
            }),
        };
        if clustered {
            tokio::spawn(watch_cluster_connection(
                Arc::downgrade(&store.inner),
                config.response_timeout,
            ));
        }
        Ok(store)
    }

    /// What the start found wrong with the server's setup but not fatal (see [`check_server`]).
    pub fn warnings(&self) -> &[String] {
        &self.inner.warnings
    }

    pub fn partitions(&self) -> u32 {
        self.inner.keys.partitions
    }

    /// A read model's or tally's name becomes a key part: plain, short, and named like no
    /// word of the layout nor any aggregate type of the store.
    fn check_view_name(&self, what: &str, name: &str) -> Result<()> {
        if !keys::valid_view_name(name) {
            return Err(StoreError::Invalid(format!(
                "{what} name {name:?}: use 1 to 32 of a-z, 0-9 and '_', not a reserved key prefix"
            )));
        }
        if self.inner.aggregates.iter().any(|a| a == name) {
            return Err(StoreError::Invalid(format!(
                "{what} name {name:?} is an aggregate type: its keys would meet that \
                 aggregate's streams; name it otherwise"
            )));
        }
        Ok(())
    }

    /// XADD raw fields to a category stream partition, as a foreign producer would.
    pub async fn append_foreign(
        &self,
        category: &Category,
        partition: u32,
        fields: &Fields,
    ) -> Result<EntryId> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(Keys::category_stream(category, partition)).arg("*");
        for (k, v) in fields {
            cmd.arg(k).arg(v);
        }
        let id: String = cmd.query_async(&mut self.conn()).await.map_err(classify)?;
        id.parse()
            .map_err(|_| corrupt("XADD reply", format!("bad entry id {id:?}")))
    }

    /// A connection of its own for the permission check's transaction: on Cluster, to the
    /// first node (permissions are checked before redirections, so any node answers them).
    async fn probe_connection(&self) -> Result<redis::aio::MultiplexedConnection> {
        self.inner.connector.probe().await.map_err(unavailable)
    }

    fn conn(&self) -> Conn {
        self.inner
            .conn
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Up to `limit` entries of `key` from `start` (an XRANGE bound: `-`, `5-0`, `(17-3`).
    async fn xrange(&self, key: &str, start: &str, limit: usize) -> Result<Vec<parse::Entry>> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(key)
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(limit.min(i64::MAX as usize))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        parse::entries(reply).map_err(|reason| corrupt(key, reason))
    }

    /// Send an EVALSHA of `script`; after a restart emptied the script cache, load the script
    /// and send the same call again.
    async fn query_script(&self, script: &Script, cmd: &redis::Cmd) -> Result<Vec<i64>> {
        let mut conn = self.conn();
        match cmd.query_async(&mut conn).await {
            Ok(reply) => Ok(reply),
            Err(e) if is_noscript(&e) => {
                script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(classify)?;
                cmd.query_async(&mut conn).await.map_err(classify)
            }
            Err(e) => Err(classify(e)),
        }
    }

    /// Send `calls` (EVALSHAs of `script`, all in one slot) in one pipeline, one reply each in
    /// order. Calls that met NOSCRIPT (a restart emptied the script cache) are sent again
    /// after loading the script; any other failure is that call's reply. With `wait`, the
    /// pipeline ends with `WAIT` (on Cluster it goes with the calls, to their slot's primary,
    /// on the connection that wrote): the second value says, when fewer replicas than asked
    /// acknowledged the calls' writes in time, how many did.
    async fn script_pipeline(
        &self,
        script: &Script,
        calls: &[redis::Cmd],
        wait: Option<WaitForReplicas>,
    ) -> Result<(Vec<Result<Vec<i64>>>, Option<String>)> {
        let mut answered: Vec<Option<Result<Vec<i64>>>> = calls.iter().map(|_| None).collect();
        let mut shortfall = None;
        let mut to_send: Vec<usize> = (0..calls.len()).collect();
        let mut conn = self.conn();
        for attempt in 0..2 {
            if to_send.is_empty() {
                break;
            }
            let mut pipe = redis::pipe();
            pipe.ignore_errors();
            for &i in &to_send {
                pipe.add_command(calls[i].clone());
            }
            if let Some(wait) = wait {
                pipe.cmd("WAIT")
                    .arg(wait.replicas)
                    .arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX));
            }
            let mut replies: Vec<redis::RedisResult<Value>> =
                pipe.query_async(&mut conn).await.map_err(classify)?;
            let expected = to_send.len() + usize::from(wait.is_some());
            if replies.len() != expected {
                return Err(corrupt(
                    "script pipeline",
                    format!("{} replies for {expected} commands", replies.len()),
                ));
            }
            if let Some(wait) = wait {
                // The last WAIT covers every write this connection made before it.
                let acknowledged = replies
                    .pop()
                    .and_then(|r| r.ok())
                    .as_ref()
                    .and_then(parse::int);
                shortfall = replication_shortfall(wait, acknowledged);
            }
            let mut missing_script = vec![];
            for (&i, reply) in to_send.iter().zip(replies) {
                match reply {
                    Err(e) if is_noscript(&e) && attempt == 0 => missing_script.push(i),
                    Err(e) => answered[i] = Some(Err(classify(e))),
                    Ok(value) => {
                        answered[i] = Some(
                            redis::from_redis_value::<Vec<i64>>(value)
                                .map_err(|e| corrupt("script reply", e.to_string())),
                        );
                    }
                }
            }
            if !missing_script.is_empty() {
                script
                    .prepare_invoke()
                    .load_async(&mut conn)
                    .await
                    .map_err(classify)?;
            }
            to_send = missing_script;
        }
        let answered = answered
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(corrupt("script pipeline", "no reply"))))
            .collect();
        Ok((answered, shortfall))
    }
}

impl RedisStore {
    /// With `WAIT` configured, make sure what a read just found (an idempotency record, a
    /// duplicate) is on the replicas before it is answered as stored: `touch` (a write that
    /// changes nothing) follows the original writes in the replication stream, so replicas
    /// acknowledging it hold them. `WAIT` alone covers only this connection's own writes,
    /// which may not include them (another instance wrote them).
    async fn replicated_since_read(&self, touch: redis::Cmd) -> Result<()> {
        let Some(wait) = self.inner.wait_for_replicas else {
            return Ok(());
        };
        let mut pipe = redis::pipe();
        pipe.add_command(touch).ignore();
        pipe.cmd("WAIT")
            .arg(wait.replicas)
            .arg(u64::try_from(wait.timeout.as_millis()).unwrap_or(u64::MAX));
        let (acknowledged,): (i64,) = pipe.query_async(&mut self.conn()).await.map_err(classify)?;
        match replication_shortfall(wait, Some(acknowledged)) {
            None => Ok(()),
            Some(shortfall) => Err(StoreError::Unavailable(Box::new(std::io::Error::other(
                shortfall,
            )))),
        }
    }
}

/// Why an append acknowledged by `acknowledged` replicas is not answered as stored, if it is not.
fn replication_shortfall(wait: WaitForReplicas, acknowledged: Option<i64>) -> Option<String> {
    acknowledged
        .is_none_or(|n| n < i64::from(wait.replicas))
        .then(|| {
            format!(
                "written on the primary but acknowledged by {} of {} replicas within {} ms: a \
                 failover now could lose it; send it again with the same Idempotency-Key",
                acknowledged.map_or("no".to_owned(), |n| n.to_string()),
                wait.replicas,
                wait.timeout.as_millis()
            )
        })
}

/// Refuse a server older than 7.0 (the scripts use its SET NX GET and script flags); warn of a
/// setup that loses events: an eviction policy other than `noeviction` (a version counter or a
/// stream can vanish under memory pressure), or no persistence at all (a restart loses
/// everything). A server that hides its configuration (CONFIG disabled) is warned about too.
async fn check_server(conn: &mut Conn) -> Result<Vec<String>> {
    // On Cluster, INFO and CONFIG answer per node (a map): every node is checked.
    let info: Value = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .map_err(classify)?;
    for text in texts(&info) {
        for version in text
            .lines()
            .filter_map(|l| l.strip_prefix("redis_version:"))
        {
            let version = version.trim();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
            if (major, minor) < (7, 0) {
                return Err(StoreError::Invalid(format!(
                    "Redis {version} is too old: 7.0 or newer is needed"
                )));
            }
        }
    }
    let mut warnings = Vec::new();
    let mut settings = std::collections::BTreeMap::<&str, Vec<String>>::new();
    for name in ["maxmemory-policy", "appendonly", "save"] {
        let reply: redis::RedisResult<Value> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(conn)
            .await;
        match reply {
            // [name, value] per node: the values are what follows each name.
            Ok(reply) => {
                let all = texts(&reply);
                let values = all
                    .windows(2)
                    .filter(|pair| pair[0] == name)
                    .map(|pair| pair[1].clone())
                    .collect();
                settings.insert(name, values);
            }
            Err(error) => warnings.push(format!(
                "cannot read the server's {name} (CONFIG GET: {error}): check it by hand"
            )),
        }
    }
    let values = |name: &str| settings.get(name).cloned().unwrap_or_default();
    for policy in values("maxmemory-policy") {
        if policy != "noeviction" {
            warnings.push(format!(
                "maxmemory-policy is {policy}: under memory pressure Redis may evict streams \
                 and version counters; use noeviction (a full memory then refuses writes, and \
                 the services answer 503)"
            ));
            break;
        }
    }
    let (appendonly, save) = (values("appendonly"), values("save"));
    let off = appendonly
        .iter()
        .zip(save.iter())
        .any(|(aof, save)| aof == "no" && save.is_empty());
    if off {
        warnings.push(
            "persistence is off (appendonly no, no save points): a restart loses every event; \
             use appendonly yes"
                .into(),
        );
    }
    Ok(warnings)
}

/// Every text in a reply, in order, however nested (a Cluster answers a map per node).
pub(crate) fn texts(value: &Value) -> Vec<String> {
    match value {
        Value::BulkString(bytes) => vec![String::from_utf8_lossy(bytes).into_owned()],
        Value::SimpleString(text) | Value::VerbatimString { text, .. } => vec![text.clone()],
        Value::Array(items) | Value::Set(items) => items.iter().flat_map(texts).collect(),
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(k, v)| texts(k).into_iter().chain(texts(v)))
            .collect(),
        _ => vec![],
    }
}

/// Store the partition count on first start; refuse any other count afterwards. A stream's
/// partition comes from its id and the count, so another count would put its new events in
/// other keys than its history.
async fn check_partitions(conn: &mut Conn, configured: u32) -> Result<()> {
    // Read first, so that a side allowed only to read (the query side) starts on a store a
    // writer created.
    let stored: Option<String> = redis::cmd("GET")
        .arg(keys::PARTITIONS)
        .query_async(conn)
        .await
        .map_err(classify)?;
    // SET NX GET (Redis 7.0): the stored count, or nil when this call stored ours.
    let stored = match stored {
        Some(stored) => Some(stored),
        None => redis::cmd("SET")
            .arg(keys::PARTITIONS)
            .arg(configured)
            .arg("NX")
            .arg("GET")
            .query_async(conn)
            .await
            .map_err(classify)?,
    };
    let Some(stored) = stored else {
        return Ok(());
    };
    let stored: u32 = stored.parse().map_err(|_| {
        corrupt(
            keys::PARTITIONS,
            format!("{stored:?} is not a partition count"),
        )
    })?;
    if stored == configured {
        return Ok(());
    }
    Err(StoreError::Invalid(format!(
        "this store was created with {stored} partition(s) per category and this process is \
         configured with {configured} (REDIS_PARTITIONS): streams would move to other keys and \
         their histories split. Start it with REDIS_PARTITIONS={stored}"
    )))
}

fn is_noscript(error: &RedisError) -> bool {
    error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

/// A batched script's reply, two numbers per item in order, checked against the item count.
pub(crate) fn reply_pairs(what: &str, reply: &[i64], items: usize) -> Result<Vec<(i64, i64)>> {
    if reply.len() != items * 2 {
        return Err(corrupt(
            what,
            format!("{} numbers for {items} items", reply.len()),
        ));
    }
    Ok(reply
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect())
}

/// How often the shared cluster connection is pinged, and how many pings in a row may go
/// unanswered before it is replaced.
const WATCH_EVERY: Duration = Duration::from_secs(1);
const UNANSWERED_PINGS: u32 = 2;

/// redis-rs's cluster connection can stop answering altogether after slots moved while many
/// requests were in flight: every request then times out, for good (`tests/resharding.rs`).
/// A ping every second, and after two in a row unanswered, a fresh connection replaces it.
/// Ends with the store.
async fn watch_cluster_connection(inner: std::sync::Weak<Inner>, timeout: Duration) {
    let mut unanswered = 0;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let mut conn = inner.conn.read().unwrap_or_else(|p| p.into_inner()).clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(timeout, ping.query_async::<String>(&mut conn)).await {
            Ok(Ok(_)) => unanswered = 0,
            _ => unanswered += 1,
        }
        if unanswered < UNANSWERED_PINGS {
            continue;
        }
        match inner.connector.shared().await {
            Ok(fresh) => {
                *inner.conn.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                unanswered = 0;
                tracing::warn!(
                    "the cluster connection left {UNANSWERED_PINGS} pings unanswered: replaced"
                );
            }
            Err(error) => {
                tracing::warn!(%error, "the cluster connection left pings unanswered, and a new one cannot be made");
            }
        }
    }
}

/// A Redis error as a store error: the ones worth retrying are `Unavailable`.
pub(crate) fn classify(error: RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    let transient = error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || denied_inside_a_script(&error)
        || error
            .code()
            .is_some_and(|code| !DATA_FAULT_CODES.contains(&code))
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ReadOnly
                    | ServerErrorKind::Moved
                    | ServerErrorKind::Ask
            ) | ErrorKind::ClusterConnectionNotFound
        );
    if transient {
        unavailable(error)
    } else {
        corrupt("redis reply", error.to_string())
    }
}

/// Server errors that say the request or the data is wrong (a key of another type, a command
/// the server refuses as such): retrying cannot mend them. Every other server error is a store
/// fault, retried and reported and never a reason to dead-letter an event: a condition that
/// passes (OOM, MISCONF, BUSY, NOREPLICAS, NOGROUP after a restart, TRYAGAIN, CLUSTERDOWN,
/// LOADING, MASTERDOWN, READONLY), a permission missing (NOPERM), a transaction discarded
/// (EXECABORT), and any code this build does not know (a newer Redis, a proxy).
const DATA_FAULT_CODES: [&str; 2] = ["ERR", "WRONGTYPE"];

/// A command a script ran was refused by the user's ACL. Redis 7.0 answers that with a plain
/// `ERR` (a script's own keys refused answer `NOPERM`), so only its text says so.
fn denied_inside_a_script(error: &RedisError) -> bool {
    error.code() == Some("ERR")
        && error
            .to_string()
            .contains("The user executing the script can't")
}

pub(crate) fn unavailable(error: RedisError) -> StoreError {
    StoreError::Unavailable(Box::new(error))
}

pub(crate) fn corrupt(what: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        what: what.to_owned(),
        reason: reason.into(),
    }
}

#[async_trait]
impl EventStore for RedisStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome> {
        append::append(self, &request).await
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendOutcome>>> {
        append::append_batch(self, requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>> {
        if limit == 0 {
            return Ok(vec![]);
        }
        let what = || format!("stream {stream}");
        let start = format!("{}-0", from_version.max(1));
        self.xrange(&self.inner.keys.stream(stream), &start, limit)
            .await?
            .into_iter()
            .map(|(id, fields)| {
                let fields =
                    fields.ok_or_else(|| corrupt(&what(), format!("entry {id} has no fields")))?;
                if id.seq != 0 {
                    return Err(corrupt(
                        &what(),
                        format!("entry id {id} is not <version>-0"),
                    ));
                }
                entry::from_stream_fields(stream, id.ms, &fields)
                    .map_err(|e| corrupt(&what(), format!("entry {id}: {e}")))
            })
            .collect()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64> {
        let counter: Option<String> = redis::cmd("GET")
            .arg(self.inner.keys.version(stream))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let Some(counter) = counter else {
            return Ok(0);
        };
        // `<version>|<last time>`, or the version alone (written before the time was kept).
        let version = counter.split_once('|').map_or(counter.as_str(), |(v, _)| v);
        version
            .parse()
            .map_err(|_| corrupt(&format!("version of {stream}"), format!("{counter:?}")))
    }

    async fn idempotent_outcome(
        &self,
        stream: &StreamId,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<AppendOutcome>> {
        let record = self.inner.keys.idempotency(stream, key);
        let recorded: Option<String> = redis::cmd("GET")
            .arg(&record)
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        let Some(recorded) = recorded else {
            return Ok(None);
        };
        // `<version>:<fingerprint>`, or the version alone (written before fingerprints).
        let (version, first) = recorded.split_once(':').unwrap_or((&recorded, ""));
        let version = version
            .parse()
            .map_err(|_| corrupt("idempotency record", format!("{recorded:?}")))?;
        if !first.is_empty() && !fingerprint.is_empty() && first != fingerprint {
            return Err(StoreError::KeyReused {
                key: key.to_owned(),
            });
        }
        // The first call may have been answered 503 for want of replicas: not stored yet.
        let mut touch = redis::cmd("SET");
        touch.arg(&record).arg(&recorded).arg("KEEPTTL").arg("XX");
        self.replicated_since_read(touch).await?;
        Ok(Some(AppendOutcome {
            version,
            duplicate: true,
        }))
    }
}

#[async_trait]
impl CategoryLog for RedisStore {
    async fn read_category(
        &self,
        category: &Category,
        after: EntryId,
        limit: usize,
    ) -> Result<Vec<CategoryEntry>> {
        let mut all = Vec::new();
        for partition in 0..self.partitions() {
            let stream = Keys::category_stream(category, partition);
            for (id, fields) in self.xrange(&stream, &format!("({after}"), limit).await? {
                all.push(CategoryEntry {
                    stream: stream.clone(),
                    id,
                    fields: fields.unwrap_or_default(),
                });
            }
        }
        all.sort_by(|a, b| (a.id, &a.stream).cmp(&(b.id, &b.stream)));
        // Never end a page between two entries with the same id (see the trait).
        let mut cut = limit.min(all.len());
        while cut > 0 && cut < all.len() && all[cut].id == all[cut - 1].id {
            cut += 1;
        }
        all.truncate(cut);
        Ok(all)
    }
}

#[async_trait]
impl SnapshotStore for RedisStore {
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let fields: BTreeMap<String, Vec<u8>> = redis::cmd("HGETALL")
            .arg(self.inner.keys.snapshot(stream))
            .query_async(&mut self.conn())
            .await
            .map_err(classify)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let what = format!("snapshot of {stream}");
        let version = fields
            .get("version")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .ok_or_else(|| corrupt(&what, "no version"))?;
        let state = fields
            .get("state")
            .cloned()
            .ok_or_else(|| corrupt(&what, "no state"))?;
        Ok(Some(Snapshot { version, state }))
    }

    async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) -> Result<bool> {
        let written: i64 = self
            .inner
            .save_snapshot
            .key(self.inner.keys.snapshot(stream))
            .arg(snapshot.version)
            .arg(snapshot.state)
            .invoke_async(&mut self.conn())
            .await
            .map_err(classify)?;
        Ok(written == 1)
    }
}

#[cfg(feature = "contract")]
#[async_trait]
impl esr_store::contract::ForeignProducer for RedisStore {
    async fn write_foreign(&self, category: &Category, fields: Fields) {
        if let Err(error) = self.append_foreign(category, 0, &fields).await {
            panic!("foreign XADD failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The error Redis answers to `EVAL "return redis.error_reply('<reply>')" 0`.
    async fn server_error(server: &esr_testkit::RedisServer, reply: &str) -> RedisError {
        let client = redis::Client::open(server.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        redis::cmd("EVAL")
            .arg(format!("return redis.error_reply('{reply}')"))
            .arg(0)
            .query_async::<Value>(&mut conn)
            .await
            .unwrap_err()
    }

    /// Only what says the data is wrong is corrupt: a server error this code does not know
    /// (a newer Redis, a proxy, a module) is a store fault to retry and report, never a reason
    /// to dead-letter an event.
    #[tokio::test]
    async fn server_errors_are_store_faults_unless_they_say_the_data_is_wrong() {
        let server = esr_testkit::RedisServer::start();
        for reply in [
            "EXECABORT Transaction discarded because of previous errors.",
            "NOPERM this user has no permissions",
            "SOMETHINGNEW a code from a future Redis",
        ] {
            let error = classify(server_error(&server, reply).await);
            assert!(
                matches!(error, StoreError::Unavailable(_)),
                "{reply}: {error:?}"
            );
        }
        let wrong_type = classify(
            server_error(
                &server,
                "WRONGTYPE Operation against a key holding the wrong kind of value",
            )
            .await,
        );
        assert!(
            matches!(wrong_type, StoreError::Corrupt { .. }),
            "{wrong_type:?}"
        );
    }
}
