//! The social module and the posts, in one process on one store (Redis, or in memory when none
//! is set): the three sides of both modules, configured like the all-in-one binary.

use clap::Parser;
use esr_app::Modules;

#[derive(Parser)]
#[command(
    name = "posts",
    about = "Users, groups and posts: all three sides in one process"
)]
struct Args {
    #[command(flatten)]
    serve: esr_wiring::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    esr_app::config::init_tracing();
    let modules = Modules::from(vec![esr_app::social::module(), esr_posts::module()]);
    Args::parse().serve.serve_all(modules).await
}
