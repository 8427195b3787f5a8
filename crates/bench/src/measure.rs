//! Running an operation from many tasks for a while, and percentiles.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Outcome counts of a timed run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counted {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
}

impl Counted {
    /// Another run's counts and time added to these.
    pub fn add(&mut self, other: &Counted) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.seconds += other.seconds;
    }

    pub fn ok_per_second(&self) -> f64 {
        self.ok as f64 / self.seconds
    }

    pub fn failed_per_second(&self) -> f64 {
        self.failed as f64 / self.seconds
    }
}

/// Run `op(task, i)` from `tasks` tasks until `duration` passes; `op` says whether it succeeded.
pub async fn run_for<F, Fut>(tasks: usize, duration: Duration, op: F) -> Counted
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let deadline = started + duration;
    let mut handles = Vec::new();
    for task in 0..tasks {
        let (op, ok, failed) = (op.clone(), ok.clone(), failed.clone());
        handles.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                if op(task, i).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for handle in handles {
        let _ = handle.await;
    }
    Counted {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The `p`-th percentile (0..=100) of `samples`, in the samples' unit.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Median wall time of `runs` runs of `op`, in ms.
pub async fn median_ms<F, Fut>(runs: usize, mut op: F) -> anyhow::Result<f64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        op().await?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(percentile(&mut samples, 50.0))
}

pub fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
