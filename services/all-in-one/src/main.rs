//! The three sides in one process. `serve` (the default) keeps serving; `demo` plays the
//! post's scenario over HTTP, prints the category streams and both profiles, and exits.

mod demo;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use esr_app::auth::Authentication;
use esr_app::auth::dev::Signer;
use esr_app::config::{self, AuthArgs, CommandArgs, HttpArgs, ProjectorArgs, QueryArgs};
use esr_app::{Modules, Service, sides};
use esr_redis::acl::Side;
use esr_wiring::StoreArgs;
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
    let demo = matches!(args.mode, Some(Mode::Demo));
    if !demo {
        config::init_tracing();
    }
    // The demo signs its own tokens with a key that lives only in this process; `serve`
    // authenticates as configured.
    let (authentication, demo_signer) = if demo {
        let (signer, keys) = Signer::ephemeral().map_err(anyhow::Error::msg)?;
        let verifier = esr_app::auth::Verifier::new(keys, Default::default());
        (Authentication::Jwt(Arc::new(verifier)), Some(signer))
    } else {
        (args.auth.authentication().await?, None)
    };
    let modules = Modules::from(vec![esr_app::social::module()]);
    let (store, kind) = args
        .store
        .open_or_memory(&[Side::Projector, Side::Query], &modules)
        .await?;
    let mut projector_settings = args.projector.settings();

    let (addresses, shutdown_tx, shutdown) = match args.mode {
        Some(Mode::Demo) => {
            // Short blocks so the demo's shutdown is quick.
            projector_settings.block = Duration::from_millis(50);
            let (tx, rx) = watch::channel(false);
            (
                [
                    "127.0.0.1:0".to_owned(),
                    "127.0.0.1:0".to_owned(),
                    "127.0.0.1:0".to_owned(),
                ],
                Some(tx),
                rx,
            )
        }
        Some(Mode::Serve) | None => (
            [
                args.command_listen,
                args.query_listen,
                args.projector_listen,
            ],
            None,
            config::shutdown_signal(),
        ),
    };
    let [command_listen, query_listen, projector_listen] = addresses;
    let command_listener = sides::bind("command side", &command_listen).await?;
    let query_listener = sides::bind("query side", &query_listen).await?;
    let projector_listener = sides::bind("projector", &projector_listen).await?;
    let urls = demo::Urls {
        command: format!("http://{}", command_listener.local_addr()?),
        query: format!("http://{}", query_listener.local_addr()?),
    };

    let service = Service::new(store.clone())
        .modules(modules)
        .command_settings(args.command.settings())
        .projector_settings(projector_settings)
        .query_max_wait(Duration::from_millis(args.query.max_wait_ms))
        .limits(args.http.limits())
        .authentication(authentication)
        .shutdown(shutdown);
    let running =
        tokio::spawn(service.serve_all(command_listener, query_listener, projector_listener));

    match (shutdown_tx, demo_signer) {
        (Some(stop), Some(signer)) => {
            let played = demo::play(&urls, &signer, store.as_ref(), kind).await;
            let _ = stop.send(true);
            running.await??;
            played
        }
        _ => running.await?,
    }
}
