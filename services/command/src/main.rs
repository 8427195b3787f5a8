//! The command side alone: HTTP commands, optimistic concurrency, idempotency.

use clap::Parser;
use esr_app::config::{self, AuthArgs, CommandArgs, HttpArgs};
use esr_app::{Modules, Service, sides};
use esr_wiring::StoreArgs;

// glibc malloc and free were a third of a projector's CPU under load (perf); mimalloc is cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "command",
    version,
    about = "Command side: accepts commands over HTTP and appends events"
)]
struct Args {
    #[arg(long, env = "COMMAND_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    command: CommandArgs,
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
        .open(&[esr_redis::acl::Side::Command], &modules)
        .await?;
    tracing::info!(?kind, "store opened");
    let listeners = sides::Listeners {
        api: sides::bind("command side", &args.listen).await?,
        ops: match &args.ops_listen {
            Some(address) => Some(sides::bind("operations", address).await?),
            None => None,
        },
    };
    Service::new(store)
        .modules(modules)
        .command_settings(args.command.settings())
        .limits(args.http.limits())
        .authentication(authentication)
        .serve_command(listeners)
        .await
}
