//! The command side alone: HTTP commands, optimistic concurrency, idempotency.

use std::sync::Arc;

use clap::Parser;
use esr_app::config::{self, AuthArgs, CommandArgs, HttpArgs};
use esr_app::{Commands, sides};
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
    let (store, kind) = args.store.open(&[esr_redis::acl::Side::Command]).await?;
    tracing::info!(?kind, "store opened");
    let commands = Arc::new(Commands::new(store, args.command.settings()));
    let listener = sides::Listeners {
        api: sides::bind("command side", &args.listen).await?,
        ops: match &args.ops_listen {
            Some(address) => Some(sides::bind("operations", address).await?),
            None => None,
        },
    };
    sides::command_side(
        commands,
        listener,
        args.http.limits(),
        authentication,
        config::shutdown_signal(),
    )
    .await
}
