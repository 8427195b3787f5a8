//! The three sides as runnable units: each binary runs one, the all-in-one runs all three.

use std::sync::Arc;

use esr_store::Store;
use tokio::sync::watch;

use crate::config::{HttpLimits, serve_on};
use crate::http::{self, ProjectorHealth};
use crate::{Commands, ProjectorSettings, Projectors, QueryService};

/// The command side's HTTP API on `listener`.
pub async fn command_side(
    commands: Arc<Commands>,
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    serve_on(
        "command side",
        listener,
        http::command_router(commands),
        limits,
        stopped(shutdown),
    )
    .await
}

/// The query side's HTTP API on `listener`.
pub async fn query_side(
    queries: Arc<QueryService>,
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    serve_on(
        "query side",
        listener,
        http::query_router(queries),
        limits,
        stopped(shutdown),
    )
    .await
}

/// The projections and policies, plus `/healthz` on `listener`. Returns once every handler
/// has finished its batch in hand after `shutdown`, or at once with the error when creating the
/// groups fails or a handler's task dies.
pub async fn projector_side(
    store: Arc<dyn Store>,
    commands: Arc<Commands>,
    settings: ProjectorSettings,
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tracing::info!(consumer = %settings.consumer, "projector starting");
    let projectors = Arc::new(Projectors::standard(
        store,
        commands.users.clone(),
        settings,
    ));
    let router = http::projector_router(ProjectorHealth {
        projectors: projectors.clone(),
    });
    let server = serve_on(
        "projector health",
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
