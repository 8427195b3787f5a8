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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    config::init_tracing();
    let args = Args::parse();
    let authentication = args.auth.authentication().await?;
    let (store, kind) = args.store.open(&[esr_redis::acl::Side::Command]).await?;
    tracing::info!(?kind, "store opened");
    let commands = Arc::new(Commands::new(store, args.command.settings()));
    let listener = sides::bind("command side", &args.listen).await?;
    sides::command_side(
        commands,
        listener,
        args.http.limits(),
        authentication,
        config::shutdown_signal(),
    )
    .await
}
