//! The projector side alone: the modules' views, tallies and policies, each its own consumer
//! group, with `/healthz` reporting lag, pending entries and dead letters.

use clap::Parser;
use esr_app::config::{self, CommandArgs, HttpArgs, ProjectorArgs};
use esr_app::{Modules, Service, sides};
use esr_wiring::StoreArgs;

// glibc malloc and free were a third of a projector's CPU under load (perf); mimalloc is cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "projector",
    version,
    about = "Projector side: folds events into read models and runs policies"
)]
struct Args {
    #[arg(long, env = "PROJECTOR_LISTEN", default_value = "127.0.0.1:8082")]
    listen: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    http: HttpArgs,
    /// The friendship policy issues commands, with these settings.
    #[command(flatten)]
    command: CommandArgs,
    #[command(flatten)]
    projector: ProjectorArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    config::init_tracing();
    let args = Args::parse();
    let modules = Modules::from(vec![esr_app::social::module()]);
    let (store, kind) = args
        .store
        .open(&[esr_redis::acl::Side::Projector], &modules)
        .await?;
    tracing::info!(?kind, "store opened");
    let listener = sides::bind("projector", &args.listen).await?;
    Service::new(store)
        .modules(modules)
        .command_settings(args.command.settings())
        .projector_settings(args.projector.settings())
        .limits(args.http.limits())
        .serve_projector(listener)
        .await
}
