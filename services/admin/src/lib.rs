//! `esr`: the operators' tool. Each subcommand is a module; listings print a table, or JSON
//! with `--json`. Exit status 0 on success, 1 on a failure or a problem found, 2 on bad usage.
//!
//! A library, so that a team builds the tool with its own modules (their views rebuildable,
//! their events decoded by type): its binary is `esr_admin::main_with(modules)`. The `esr` of
//! this workspace operates the social module; any tool lists the categories and groups of
//! modules it was not built with as `undeclared`.

mod check;
mod dead_letters;
mod groups;
mod partitions;
mod projection;
mod streams;
mod token;

use clap::{Parser, Subcommand};
use esr_wiring::StoreArgs;

#[derive(Parser)]
#[command(
    name = "esr",
    version,
    about = "Operate an event store on Redis: check it, read streams, inspect consumer groups, handle dead letters"
)]
struct Args {
    /// Print listings as JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Server version, persistence, eviction policy, partition count, groups: one line per
    /// problem, exit status 1 if any.
    Check,
    /// A stream's history, decoded.
    Events {
        /// The aggregate: `user`, `group`, or any other found in Redis (its events then shown
        /// by field names).
        aggregate: String,
        id: String,
        /// The first version shown.
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// Follow a category live, decoded, until Ctrl-C.
    Tail {
        /// A category: `user_updates`, `user_activity`, `user_friends`, `group_membership`, or
        /// any other found in Redis.
        category: String,
        /// Start after this entry id (`0` for the whole history; default: now).
        #[arg(long)]
        from: Option<String>,
    },
    /// Every group of every category and partition: lag, pending, consumers, dead letters,
    /// and the module that declares it (`undeclared`: found in Redis, no module of this tool
    /// declares it).
    Groups,
    /// Consumers of the groups.
    Consumers {
        #[command(subcommand)]
        command: ConsumersCommand,
    },
    /// Read models.
    Projection {
        #[command(subcommand)]
        command: ProjectionCommand,
    },
    /// Where each partition lives on a Cluster (its slot and master); `spread` moves
    /// partitions live until every master holds its share.
    Partitions {
        #[command(subcommand)]
        command: Option<PartitionsCommand>,
    },
    /// Entries the projectors gave up on.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Mint a bearer token from a local private key, for development only (production tokens
    /// come from an identity provider). Prints the token.
    Token(token::TokenArgs),
    /// One `ACL SETUSER` line per side (esr-command, esr-projector, esr-query, esr-admin), each
    /// allowing only the commands and keys that side uses, with a fresh random password: run
    /// them on every Redis node, and put each user and password in that side's REDIS_URL.
    Acl,
}

#[derive(Subcommand)]
enum ConsumersCommand {
    /// Remove consumers idle this long with nothing pending (processes long gone).
    Prune {
        /// Idle seconds.
        #[arg(long, default_value_t = 3600)]
        idle: u64,
    },
}

#[derive(Subcommand)]
enum PartitionsCommand {
    /// Move partitions (one slot each, with their keys) from the masters holding more than
    /// their share to those holding less, while the store is in use. Writes to a partition
    /// wait while it moves. Interrupted, the same command finishes the job.
    Spread {
        /// Print the moves without making them.
        #[arg(long)]
        dry_run: bool,
        /// Refuse to move a partition whose category stream is larger than this many MB:
        /// `MIGRATE` moves a key whole, blocking both masters meanwhile (about 2.7 ms per MB
        /// measured, 420 ms for 157 MB: BENCHMARKS.md). Trim the categories
        /// (CATEGORY_TRIM_EVERY_MS) or raise it.
        #[arg(long, default_value_t = 64)]
        max_key_mb: u64,
    },
}

#[derive(Subcommand)]
enum ProjectionCommand {
    /// Rebuild a read model (`profile`, `group_view`) from the start of history into a new
    /// generation while the served one stays up, then switch to it in one step. Ctrl-C stops
    /// it; the same command resumes. It stops without switching when an entry cannot be
    /// folded (an event that does not decode, a store error) or when the categories are
    /// trimmed while it runs.
    Rebuild {
        name: String,
        /// Fold past entries that cannot be folded (each named on stderr) instead of
        /// stopping: they are missing from the new generation, as they are from the live one
        /// once its projector dead-lettered them.
        #[arg(long)]
        skip_poison: bool,
    },
}

#[derive(Subcommand)]
enum DeadLettersCommand {
    /// Every dead letter, oldest first.
    List {
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// One dead letter, its event decoded when it is one.
    Show { id: String },
    /// Hand entries back to their group to be handled once more (recorded in `redriven:{pN}`).
    Redrive {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete every dead letter.
    Purge {
        /// Required: purging cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

/// The modules this tool operates, given once at start.
static MODULES: std::sync::OnceLock<esr_app::Modules> = std::sync::OnceLock::new();

/// Run `esr` (its arguments from the command line) operating `modules`.
pub async fn main_with(modules: esr_app::Modules) -> std::process::ExitCode {
    let _ = MODULES.set(modules);
    let args = Args::parse();
    // Logs only when asked for: the output is the tool's answer.
    if std::env::var_os("RUST_LOG").is_some() {
        esr_app::config::init_tracing();
    }
    match run(args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("esr: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let Args {
        json,
        store,
        command,
    } = args;
    let command = match command {
        // Need no store.
        Command::Token(token) => return token::run(&token),
        Command::Acl => return acl(),
        // Check reports a connection that fails as one of its problems.
        Command::Check => return check::run(&store, json).await,
        Command::DeadLetters {
            command: DeadLettersCommand::Purge { yes: false },
        } => {
            eprintln!("esr: purging deletes every dead letter for good: add --yes");
            return Ok(ExitCode::from(2));
        }
        other => other,
    };
    let store = store.open_redis(&modules()).await?;
    match command {
        Command::Check => return check::run_on(&store, json).await,
        Command::Token(token) => return token::run(&token),
        Command::Acl => return acl(),
        Command::Events {
            aggregate,
            id,
            from,
        } => streams::events(store, &aggregate, &id, from, json).await?,
        Command::Tail { category, from } => streams::tail(store, &category, from, json).await?,
        Command::Groups => groups::list(&store, json).await?,
        Command::Consumers {
            command: ConsumersCommand::Prune { idle },
        } => groups::prune(&store, std::time::Duration::from_secs(idle), json).await?,
        Command::Partitions { command: None } => partitions::list(&store, json).await?,
        Command::Partitions {
            command:
                Some(PartitionsCommand::Spread {
                    dry_run,
                    max_key_mb,
                }),
        } => partitions::spread(&store, dry_run, max_key_mb).await?,
        Command::Projection {
            command: ProjectionCommand::Rebuild { name, skip_poison },
        } => return projection::rebuild(store, &name, skip_poison).await,
        Command::DeadLetters { command } => match command {
            DeadLettersCommand::List { limit } => dead_letters::list(&store, limit, json).await?,
            DeadLettersCommand::Show { id } => dead_letters::show(&store, &id, json).await?,
            DeadLettersCommand::Redrive { ids } => dead_letters::redrive(&store, &ids).await?,
            DeadLettersCommand::Purge { .. } => dead_letters::purge(&store).await?,
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The modules this tool operates: their categories, groups, events and views.
fn modules() -> esr_app::Modules {
    MODULES.get().cloned().unwrap_or_default()
}

/// `esr acl`: the least-privilege users, from the code's key layout and each side's uses.
fn acl() -> anyhow::Result<std::process::ExitCode> {
    let layout = esr_wiring::layout(&modules());
    for side in esr_redis::acl::Side::ALL {
        let password = uuid::Uuid::new_v4().simple().to_string();
        println!("{}", layout.setuser(side, &password));
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Print `rows` as a table under `header`, columns as wide as their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}
