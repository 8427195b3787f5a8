//! The query side alone: profiles, time travel, event history.

use std::time::Duration;

use clap::Parser;
use esr_app::config::{self, AuthArgs, HttpArgs, QueryArgs};
use esr_app::{Modules, Service, sides};
use esr_wiring::StoreArgs;

// glibc malloc and free were a third of a projector's CPU under load (perf); mimalloc is cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "query",
    version,
    about = "Query side: serves profiles and event history over HTTP"
)]
struct Args {
    #[arg(long, env = "QUERY_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    query: QueryArgs,
    #[command(flatten)]
    auth: AuthArgs,
    /// Serve `/livez`, `/readyz` and `/metrics` on this address instead of beside the API.
    #[arg(long, env = "OPS_LISTEN")]
    ops_listen: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    config::init_tracing();
    let args = Args::parse();
    let authentication = args.auth.authentication().await?;
    let modules = Modules::from(vec![esr_app::social::module()]);
    let (store, kind) = args
        .store
        .open(&[esr_redis::acl::Side::Query], &modules)
        .await?;
    tracing::info!(?kind, "store opened");
    let listeners = sides::Listeners {
        api: sides::bind("query side", &args.listen).await?,
        ops: match &args.ops_listen {
            Some(address) => Some(sides::bind("operations", address).await?),
            None => None,
        },
    };
    Service::new(store)
        .modules(modules)
        .query_max_wait(Duration::from_millis(args.query.max_wait_ms))
        .limits(args.http.limits())
        .authentication(authentication)
        .serve_query(listeners)
        .await
}
