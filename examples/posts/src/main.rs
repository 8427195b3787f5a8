//! The social module and the posts, in one process on one store (Redis, or in memory when none
//! is set): the three sides of both modules, configured like the all-in-one binary.

use clap::Parser;
use esr_app::config::{self, AuthArgs, CommandArgs, HttpArgs, ProjectorArgs, QueryArgs};
use esr_app::{Modules, Service, sides};
use esr_redis::acl::Side;
use esr_wiring::StoreArgs;

#[derive(Parser)]
#[command(
    name = "posts",
    about = "Users, groups and posts: all three sides in one process"
)]
struct Args {
    #[arg(long, env = "COMMAND_LISTEN", default_value = "127.0.0.1:8080")]
    command_listen: String,
    #[arg(long, env = "QUERY_LISTEN", default_value = "127.0.0.1:8081")]
    query_listen: String,
    #[arg(long, env = "PROJECTOR_LISTEN", default_value = "127.0.0.1:8082")]
    projector_listen: String,
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(flatten)]
    command: CommandArgs,
    #[command(flatten)]
    projector: ProjectorArgs,
    #[command(flatten)]
    query: QueryArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    config::init_tracing();
    let args = Args::parse();
    let modules = Modules::from(vec![esr_app::social::module(), esr_posts::module()]);
    let (store, _) = args
        .store
        .open_or_memory(&[Side::Projector, Side::Query], &modules)
        .await?;
    Service::new(store)
        .modules(modules)
        .command_settings(args.command.settings())
        .projector_settings(args.projector.settings())
        .query_max_wait(std::time::Duration::from_millis(args.query.max_wait_ms))
        .limits(args.http.limits())
        .authentication(args.auth.authentication().await?)
        .serve_all(
            sides::bind("command side", &args.command_listen).await?,
            sides::bind("query side", &args.query_listen).await?,
            sides::bind("projector", &args.projector_listen).await?,
        )
        .await
}
