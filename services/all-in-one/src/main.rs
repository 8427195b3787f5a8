//! The three sides in one process. `serve` (the default) keeps serving; `demo` plays the
//! post's scenario over HTTP, prints the category streams and both profiles, and exits.

mod demo;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use esr_app::auth::Authentication;
use esr_app::auth::dev::Signer;
use esr_app::config;
use esr_app::{Modules, sides};
use esr_wiring::ServeArgs;
use tokio::sync::watch;

// glibc malloc and free were a third of a projector's CPU under load (perf); mimalloc is cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "all-in-one",
    version,
    about = "Command, query and projector sides in one process"
)]
struct Args {
    #[command(subcommand)]
    mode: Option<Mode>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Play the post's scenario on free local ports, print what happened, and exit.
    Demo,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let modules = Modules::from(vec![esr_app::social::module()]);
    if !matches!(args.mode, Some(Mode::Demo)) {
        config::init_tracing();
        return args.serve.serve_all(modules).await;
    }
    // The demo signs its own tokens with a key that lives only in this process, on free local
    // ports, with short blocks so that its shutdown is quick.
    let (signer, keys) = Signer::ephemeral().map_err(anyhow::Error::msg)?;
    let verifier = esr_app::auth::Verifier::new(keys, Default::default());
    let (service, store, kind) = args.serve.service(modules).await?;
    let mut projector_settings = args.serve.projector.settings();
    projector_settings.block = Duration::from_millis(50);
    let (stop, shutdown) = watch::channel(false);
    let command_listener = sides::bind("command side", "127.0.0.1:0").await?;
    let query_listener = sides::bind("query side", "127.0.0.1:0").await?;
    let projector_listener = sides::bind("projector", "127.0.0.1:0").await?;
    let urls = demo::Urls {
        command: format!("http://{}", command_listener.local_addr()?),
        query: format!("http://{}", query_listener.local_addr()?),
    };
    let running = tokio::spawn(
        service
            .projector_settings(projector_settings)
            .authentication(Authentication::Jwt(Arc::new(verifier)))
            .shutdown(shutdown)
            .serve_all(command_listener, query_listener, projector_listener),
    );
    let played = demo::play(&urls, &signer, store.as_ref(), kind).await;
    let _ = stop.send(true);
    running.await??;
    played
}
