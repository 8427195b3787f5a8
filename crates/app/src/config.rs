//! Configuration shared by the binaries: flags with the environment variables listed in the
//! README as fallbacks, logging, shutdown signals and serving. Which store to open is decided
//! at the binaries' edge (`esr-wiring`), not here: the app knows only the port.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::watch;

use crate::{CommandSettings, ProjectorSettings};

#[derive(Debug, Clone, clap::Args)]
pub struct CommandArgs {
    /// Write an aggregate snapshot every N events (0: never).
    #[arg(long, env = "SNAPSHOT_EVERY", default_value_t = 100)]
    pub snapshot_every: u64,
    /// Reloads after a version conflict before answering 409.
    #[arg(long, env = "COMMAND_MAX_RETRIES", default_value_t = 5)]
    pub max_retries: u32,
    /// How long an Idempotency-Key is remembered, in seconds.
    #[arg(long, env = "IDEMPOTENCY_TTL_SECS", default_value_t = 86_400)]
    pub idempotency_ttl_secs: u64,
    /// Commands a second each authenticated user may send (two seconds' worth at once); more
    /// are answered 429 `rate_limited`. 0: no limit.
    #[arg(long, env = "COMMANDS_PER_USER_PER_SEC", default_value_t = 50)]
    pub commands_per_user_per_sec: u32,
}

impl CommandArgs {
    pub fn settings(&self) -> CommandSettings {
        CommandSettings {
            snapshot_every: self.snapshot_every,
            max_retries: self.max_retries,
            idempotency_ttl: Duration::from_secs(self.idempotency_ttl_secs),
            commands_per_user_per_sec: self.commands_per_user_per_sec,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ProjectorArgs {
    /// Entries read per batch (XREADGROUP COUNT).
    #[arg(long, env = "PROJECTOR_BATCH", default_value_t = 100)]
    pub batch_size: usize,
    /// How long a read waits for new entries, in ms (XREADGROUP BLOCK).
    #[arg(long, env = "PROJECTOR_BLOCK_MS", default_value_t = 2000)]
    pub block_ms: u64,
    /// Entries pending this long (ms) are claimed from their consumer, presumed dead.
    #[arg(long, env = "PROJECTOR_CLAIM_IDLE_MS", default_value_t = 30_000)]
    pub claim_idle_ms: u64,
    /// Deliveries after which an entry is dead-lettered.
    #[arg(long, env = "PROJECTOR_MAX_DELIVERIES", default_value_t = 5)]
    pub max_deliveries: u64,
    /// This process's consumer name, stable across its restarts (one per replica, never two
    /// live processes with one name); a restart then resumes its pending entries at once.
    /// Default: `<host>-<pid>-<random>`, new at every start.
    #[arg(long, env = "PROJECTOR_CONSUMER")]
    pub consumer: Option<String>,
    /// Consumers idle this long (ms) with nothing pending are removed from the groups
    /// (0: never).
    #[arg(long, env = "PROJECTOR_PRUNE_IDLE_MS", default_value_t = 3_600_000)]
    pub prune_idle_ms: u64,
    /// Trim the category streams every this many ms, below what every consumer group has
    /// acked (0: never). Events stay in their aggregates' streams; a projection added later
    /// or a rebuild then cannot read trimmed history from the categories.
    #[arg(long, env = "CATEGORY_TRIM_EVERY_MS", default_value_t = 0)]
    pub trim_every_ms: u64,
    /// How long (ms) a partition's lease outlives its holder's last renewal (renewed every
    /// third of it): the instances of a projector side divide each group's partitions by
    /// lease, and a dead or stalled instance's partitions go to the others after this.
    #[arg(long, env = "PROJECTOR_LEASE_MS", default_value_t = 10_000)]
    pub lease_ms: u64,
}

impl ProjectorArgs {
    pub fn settings(&self) -> ProjectorSettings {
        ProjectorSettings {
            batch_size: self.batch_size.max(1),
            block: Duration::from_millis(self.block_ms),
            claim_idle: Duration::from_millis(self.claim_idle_ms),
            max_deliveries: self.max_deliveries.max(1),
            prune_idle: (self.prune_idle_ms > 0).then(|| Duration::from_millis(self.prune_idle_ms)),
            trim_every: (self.trim_every_ms > 0).then(|| Duration::from_millis(self.trim_every_ms)),
            lease: Duration::from_millis(self.lease_ms.max(30)),
            consumer: self
                .consumer
                .clone()
                .filter(|name| !name.trim().is_empty())
                .unwrap_or_else(crate::projector::unique_consumer_name),
        }
    }
}

/// How the command and query sides authenticate callers.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    /// `on` (the default): every request needs `Authorization: Bearer <JWT>`. `off`: nobody is
    /// authenticated and anyone may act as anyone; only allowed on loopback addresses.
    #[arg(long = "auth", env = "AUTH", default_value = "on")]
    pub auth: String,
    /// A PEM public key (Ed25519, P-256 or RSA) that signs the tokens.
    #[arg(long, env = "AUTH_JWT_KEY_FILE")]
    pub auth_jwt_key_file: Option<std::path::PathBuf>,
    /// A JWKS document with the keys that sign the tokens (picked by the token's `kid`),
    /// fetched at start, again for an unknown `kid` (at most once a second) and every 5 minutes.
    #[arg(long, env = "AUTH_JWKS_URL")]
    pub auth_jwks_url: Option<String>,
    /// The `iss` every token must carry (unchecked when unset).
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// The `aud` every token must carry (unchecked when unset).
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// The claim with the caller's roles: a list of strings; `admin` may act on anyone.
    #[arg(long, env = "AUTH_ROLES_CLAIM", default_value = "roles")]
    pub auth_roles_claim: String,
    /// Clock skew forgiven on `exp` and `nbf`, in seconds.
    #[arg(long, env = "AUTH_LEEWAY_SECS", default_value_t = 30)]
    pub auth_leeway_secs: u64,
}

impl AuthArgs {
    /// The authentication these settings ask for, its keys loaded (a JWKS fetched).
    pub async fn authentication(&self) -> anyhow::Result<crate::auth::Authentication> {
        use crate::auth::{Authentication, JwksSource, KeySource, TokenSettings, Verifier};
        match self.auth.trim().to_ascii_lowercase().as_str() {
            "off" => return Ok(Authentication::Off),
            "on" | "" => {}
            other => anyhow::bail!("AUTH={other:?}: give \"on\" or \"off\""),
        }
        let keys = match (&self.auth_jwt_key_file, &self.auth_jwks_url) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set one of AUTH_JWT_KEY_FILE and AUTH_JWKS_URL, not both")
            }
            (Some(path), None) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("cannot read AUTH_JWT_KEY_FILE {}", path.display()))?;
                KeySource::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("AUTH_JWT_KEY_FILE {}: {e}", path.display()))?
            }
            (None, Some(url)) => {
                let source = JwksSource::fetch(url)
                    .await
                    .map_err(|e| anyhow::anyhow!("AUTH_JWKS_URL: {e}"))?;
                KeySource::Jwks(source)
            }
            (None, None) => anyhow::bail!(
                "authentication is on and no key verifies tokens: set AUTH_JWT_KEY_FILE (a PEM \
                 public key) or AUTH_JWKS_URL, or AUTH=off for local use on 127.0.0.1"
            ),
        };
        let present = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let settings = TokenSettings {
            issuer: present(&self.auth_issuer),
            audience: present(&self.auth_audience),
            roles_claim: self.auth_roles_claim.clone(),
            leeway_secs: self.auth_leeway_secs,
        };
        if settings.issuer.is_none() || settings.audience.is_none() {
            tracing::warn!(
                "AUTH_ISSUER or AUTH_AUDIENCE is unset: a token from any issuer or for any \
                 audience signed by the configured key is accepted"
            );
        }
        Ok(Authentication::Jwt(std::sync::Arc::new(Verifier::new(
            keys, settings,
        ))))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// The longest a `min_version` read waits, in ms.
    #[arg(long, env = "QUERY_MAX_WAIT_MS", default_value_t = 5000)]
    pub max_wait_ms: u64,
}

/// Logs to stderr; `RUST_LOG` filters (default `info`); `LOG_FORMAT=json` writes one JSON
/// object per line (with the request's span, correlation id included), for log collectors.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => builder.json().with_current_span(true).init(),
        other => {
            if let Ok(unknown) = other
                && unknown != "text"
            {
                eprintln!("LOG_FORMAT={unknown:?} is neither \"text\" nor \"json\": text it is");
            }
            // Colours only on a terminal: log files and collectors get plain text.
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).init();
        }
    }
}

/// A flag that turns true on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// The longest a request may take, headers and body read and answer included (ms); past
    /// it the answer is 503 `timed_out`. Keep it above QUERY_MAX_WAIT_MS.
    #[arg(long, env = "HTTP_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_timeout_ms: u64,
    /// Requests served at once; more are answered 503 `overloaded` at once.
    #[arg(long, env = "HTTP_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,
    /// After a shutdown signal, how long requests in hand may still finish (ms).
    #[arg(long, env = "SHUTDOWN_DEADLINE_MS", default_value_t = 10_000)]
    pub shutdown_deadline_ms: u64,
    /// Connections open at once; one more is closed as soon as it is accepted.
    #[arg(long, env = "HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// `min_version` reads waiting at once (they do not count in HTTP_MAX_IN_FLIGHT); more are
    /// answered 503 `overloaded` at once.
    #[arg(long, env = "HTTP_MAX_WAITING", default_value_t = 4096)]
    pub max_waiting: usize,
    /// A connection that completes no answer for this long is closed (ms, at least
    /// HTTP_REQUEST_TIMEOUT_MS): an idle HTTP/1 keep-alive or HTTP/2 connection, or HTTP/2
    /// streams whose headers never end.
    #[arg(long, env = "HTTP_IDLE_TIMEOUT_MS", default_value_t = 30_000)]
    pub idle_timeout_ms: u64,
}

impl HttpArgs {
    pub fn limits(&self) -> HttpLimits {
        HttpLimits {
            request_timeout: Duration::from_millis(self.request_timeout_ms.max(1)),
            max_in_flight: self.max_in_flight.max(1),
            shutdown_deadline: Duration::from_millis(self.shutdown_deadline_ms),
            max_connections: self.max_connections.max(1),
            max_waiting: self.max_waiting.max(1),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
        }
    }
}

/// What every side's HTTP server bounds: a slow or stuck client, a flood, a shutdown.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub request_timeout: Duration,
    pub max_in_flight: usize,
    pub shutdown_deadline: Duration,
    /// Connections open at once; past it a new connection is closed at once.
    pub max_connections: usize,
    /// `min_version` reads waiting at once, apart from `max_in_flight`; more are refused.
    pub max_waiting: usize,
    /// A connection that completes no answer for this long (at least `request_timeout`) is
    /// closed.
    pub idle_timeout: Duration,
}

/// HTTP/2 streams open at once on one connection, and the most header bytes one request may
/// send (what a slow or hostile client can hold per connection); HTTP/1 reads a request's
/// head into a buffer of at most `HTTP1_MAX_BUFFER` (hyper's least is 8 KiB).
const HTTP2_MAX_STREAMS: u32 = 100;
const MAX_HEADER_BYTES: u32 = 16 * 1024;
const HTTP1_MAX_BUFFER: usize = 64 * 1024;

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            shutdown_deadline: Duration::from_secs(10),
            max_connections: 10_000,
            max_waiting: 4096,
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Between half of `limit` and all of it, at random: sockets opened together and left silent
/// (a crowd of idle connections) are closed over a spread of time, not in one burst that
/// their reconnecting would repeat.
fn jittered(limit: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    limit / 2 + limit.mul_f64((random % 1024) as f64 / 2048.0)
}

/// When a connection last completed an answer (or opened).
struct LastAnswer(std::sync::Mutex<std::time::Instant>);

impl LastAnswer {
    fn new() -> Self {
        Self(std::sync::Mutex::new(std::time::Instant::now()))
    }

    fn now(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    fn at(&self) -> std::time::Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Serve on a bound listener until `stop` completes, within `limits`: headers must arrive
/// within the request timeout (a connection that sends them slowly is closed), a request
/// past it or past the in-flight limit is answered 503, a connection that completes no answer
/// for the idle timeout is closed (HTTP/1 or HTTP/2), and after `stop` the requests in hand get
/// the shutdown deadline to finish before their connections are dropped.
/// `side` names it in logs and labels its metrics.
pub async fn serve_on(
    side: &'static str,
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let address = listener
        .local_addr()
        .with_context(|| format!("{side} side: no local address"))?;
    tracing::info!(%address, "{side} side listening");
    crate::metrics::install();
    let service = crate::http::observed(side, crate::http::guarded(router, &limits));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .max_buf_size(HTTP1_MAX_BUFFER);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(HTTP2_MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_BYTES);
    // Every answer resets the connection's idle clock; answers come within the request
    // timeout, so a connection idle longer than that has no request in hand.
    let idle_timeout = limits.idle_timeout.max(limits.request_timeout);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let open_connections = std::sync::Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            // Out of file descriptors and the like: pause rather than spin.
            Err(error) => {
                tracing::warn!(%error, "{side} side: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Small responses should leave at once, not wait on Nagle for an ACK the client delays.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY not set on an accepted connection");
        }
        // Past the connection limit a connection is closed at once: open sockets are bounded
        // whatever clients hold.
        let Ok(open) = open_connections.clone().try_acquire_owned() else {
            tracing::debug!(
                "{side} side: {} connections open; one more closed",
                limits.max_connections
            );
            drop(tcp);
            continue;
        };
        let (builder, service, watcher) = (builder.clone(), service.clone(), connections.watcher());
        let silence = jittered(limits.request_timeout);
        tokio::spawn(async move {
            // The HTTP/1-or-2 detection waits for the first bytes with no timer of its own: a
            // connection that sends nothing within the request timeout is closed.
            let mut first = [0u8; 1];
            match tokio::time::timeout(silence, tcp.peek(&mut first)).await {
                Ok(Ok(read)) if read > 0 => {}
                _ => return,
            }
            let answered = Arc::new(LastAnswer::new());
            let service = {
                let answered = answered.clone();
                TowerToHyperService::new(tower::ServiceExt::<
                    axum::http::Request<hyper::body::Incoming>,
                >::map_response(service, move |response| {
                    answered.now();
                    response
                }))
            };
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(tcp), service)
                .into_owned();
            let watched = watcher.watch(connection);
            tokio::pin!(watched);
            loop {
                let idle_until = answered.at() + idle_timeout;
                tokio::select! {
                    ended = &mut watched => {
                        if let Err(error) = ended {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    () = tokio::time::sleep_until(idle_until.into()) => {
                        if answered.at() + idle_timeout <= std::time::Instant::now() {
                            tracing::debug!("{side} side: a connection idle past the idle timeout closed");
                            break;
                        }
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_deadline, connections.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            deadline_ms = limits.shutdown_deadline.as_millis() as u64,
            "{side} side: requests still open at the shutdown deadline are dropped"
        );
    }
    Ok(())
}
