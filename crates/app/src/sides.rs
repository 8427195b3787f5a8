//! The three sides as runnable units: each binary runs one, the all-in-one runs all three.
//! Each serves its own API plus `/healthz`, `/livez`, `/readyz` and `/metrics`.

use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::Authentication;
use crate::config::{HttpLimits, serve_on};
use crate::http::{self, Ops, ProjectorHealth};
use crate::module::Modules;
use crate::{Commands, ProjectorSettings, Projectors, QueryService};

/// Where a side listens: its API, and `/livez`, `/readyz`, `/metrics` on their own address
/// when `ops` is given (`OPS_LISTEN`), else beside the API.
pub struct Listeners {
    pub api: tokio::net::TcpListener,
    pub ops: Option<tokio::net::TcpListener>,
}

impl From<tokio::net::TcpListener> for Listeners {
    fn from(api: tokio::net::TcpListener) -> Self {
        Self { api, ops: None }
    }
}

/// Serve `api` and `ops` on `listeners`: together, or each on its own address.
async fn serve_with_ops(
    side: &'static str,
    listeners: Listeners,
    api: axum::Router,
    ops: axum::Router,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    match listeners.ops {
        None => {
            serve_on(
                side,
                listeners.api,
                api.merge(ops),
                limits,
                stopped(shutdown),
            )
            .await
        }
        Some(ops_listener) => {
            let api = serve_on(
                side,
                listeners.api,
                api,
                limits.clone(),
                stopped(shutdown.clone()),
            );
            let ops = serve_on("ops", ops_listener, ops, limits, stopped(shutdown));
            tokio::try_join!(api, ops).map(|_| ())
        }
    }
}

/// The command side's HTTP API on `listeners`: the command routes of `modules`.
pub async fn command_side(
    commands: Arc<Commands>,
    modules: Modules,
    listeners: impl Into<Listeners>,
    limits: HttpLimits,
    authentication: Authentication,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listeners = listeners.into();
    authentication.check_listener(listeners.api.local_addr()?, "COMMAND_LISTEN")?;
    let store = commands.store().clone();
    let ops = Ops::for_groups(store, &modules.groups(), shutdown.clone());
    let api = http::command_router(commands, &modules, authentication);
    serve_with_ops(
        "command",
        listeners,
        api,
        http::ops_router(ops),
        limits,
        shutdown,
    )
    .await
}

/// The query side's HTTP API on `listeners`: the read routes of `modules`.
pub async fn query_side(
    queries: Arc<QueryService>,
    modules: Modules,
    listeners: impl Into<Listeners>,
    limits: HttpLimits,
    authentication: Authentication,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let listeners = listeners.into();
    authentication.check_listener(listeners.api.local_addr()?, "QUERY_LISTEN")?;
    let store = queries.store().clone();
    let ops = Ops::for_groups(store, &modules.groups(), shutdown.clone());
    let api = http::query_router(queries, &modules, authentication);
    serve_with_ops(
        "query",
        listeners,
        api,
        http::ops_router(ops),
        limits,
        shutdown,
    )
    .await
}

/// The projections and policies of `modules`, plus `/healthz` on `listener`. Returns once every handler
/// has finished its batch in hand after `shutdown`, or at once with the error when creating the
/// groups fails or a handler's task dies.
pub async fn projector_side(
    commands: Arc<Commands>,
    modules: Modules,
    settings: ProjectorSettings,
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(consumer = %settings.consumer, "projector starting");
    // Before the first batch, so its series are recorded.
    crate::metrics::install();
    let store = commands.store().clone();
    let projectors = Arc::new(Projectors::new(
        store.clone(),
        modules.handlers(&commands),
        settings,
    ));
    let ops = Ops::new(store, projectors.handlers(), shutdown.clone())
        .with_projectors(projectors.clone());
    let router = http::projector_router(ProjectorHealth {
        projectors: projectors.clone(),
        cache: Default::default(),
    })
    .merge(http::ops_router(ops));
    let server = serve_on(
        "projector",
        listener,
        router,
        limits,
        stopped(shutdown.clone()),
    );
    // The first failure ends the side: a projector whose groups cannot be created, or whose
    // handler task died, must not stay up behind a healthy `/healthz`.
    tokio::try_join!(server, projectors.run(shutdown)).map(|_| ())
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

pub async fn bind(name: &str, listen: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use anyhow::Context as _;
    tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("{name}: cannot listen on {listen}"))
}
