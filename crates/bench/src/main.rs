//! `just bench`: our figures beside raw Redis on the same machine, in the same run.
//!
//! Starts its own `redis-server` processes (no persistence unless a figure asks for AOF), first
//! measures raw Redis (pipelined XADD, an EVALSHA shaped like our append), then the event store
//! through its port, the command service over HTTP and the projector, and prints a table; the
//! same rows go to `BENCH_OUT` as JSON. Every ratio is ours / raw.

mod measure;
mod migrate;
mod raw;
mod report;
mod scaleout;
mod siege;
mod store;
mod top;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use report::Row;

// glibc malloc and free were a third of a projector's CPU under load (perf); mimalloc is cheaper.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(about = "Benchmarks against raw Redis measured in the same run")]
struct Args {
    /// Run each measurement briefly, on small data: proves the benchmarks still run.
    #[arg(long)]
    quick: bool,
    /// Only these groups (comma-separated): appends, loads, projector, http, top, migrate,
    /// siege, scaleout, memory, aof.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Events in the projector's backlog (default: 1,000,000; 5,000 with --quick), for
    /// profiling a shorter catch-up.
    #[arg(long)]
    backlog: Option<usize>,
    /// Where to write the JSON results.
    #[arg(long, env = "BENCH_OUT", default_value = "target/bench/results.json")]
    out: PathBuf,
}

/// How big and how long each measurement is.
#[derive(Debug, Clone)]
pub struct Scale {
    pub duration: Duration,
    pub load_sizes: [usize; 3],
    pub backlog: usize,
    pub memory_events: usize,
    pub load_runs: usize,
    pub only: Vec<String>,
    pub quick: bool,
}

impl Scale {
    pub fn wants(&self, group: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|g| g == group)
    }

    fn new(quick: bool, only: Vec<String>) -> Self {
        if quick {
            Self {
                duration: Duration::from_millis(400),
                load_sizes: [10, 100, 1_000],
                backlog: 5_000,
                memory_events: 5_000,
                load_runs: 3,
                only,
                quick,
            }
        } else {
            Self {
                duration: Duration::from_secs(5),
                load_sizes: [10, 1_000, 100_000],
                backlog: 1_000_000,
                memory_events: 100_000,
                load_runs: 31,
                only,
                quick,
            }
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut scale = Scale::new(args.quick, args.only);
    if let Some(backlog) = args.backlog {
        scale.backlog = backlog.max(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows: Vec<Row> = runtime.block_on(store::run_all(&scale))?;
    println!("{}", report::table(&rows));
    report::write_json(&args.out, &rows)?;
    println!("results written to {}", args.out.display());
    Ok(())
}
