//! `esr projection rebuild <name>`: a read model folded again from the start of history into a
//! new generation, while the served one keeps serving and the projectors keep writing it; then
//! the switch, one write that every reader follows.
//!
//! The rebuild walks each partition of each category the view reads, a page at a time, with a
//! position per partition (entry ids are made per stream, and by each master's clock on
//! Cluster: one position for all would pass over a later entry with a lower id), and hands the
//! pages to the same projection runtime the projectors run, pinned to the new generation: every
//! write is conditioned on the stored version and gaps are filled from the streams, so the
//! order of the pages, a page handled twice after a resume, or a projector writing the same
//! stream never matter. An entry that cannot be folded stops it (unless `--skip-poison`), and so
//! does trimming that starts while it runs: either would leave the new generation short.
//! Caught up (a page shorter than a full one in every partition), it switches. A
//! projector may still write the old generation for up to `GENERATION_TTL` after that (it
//! trusts the generation it read that long), so the rebuild waits longer, then folds whatever
//! arrived into the new one. Its position is saved after every page: Ctrl-C or a crash loses
//! at most a page, and the same command resumes.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use esr_app::module::ViewDecl;
use esr_app::projector::{Handler, HandlerError};
use esr_app::read_model::GENERATION_TTL;
use esr_redis::RedisStore;
use esr_store::{EntryId, ReadModels as _, Store, generation_name};

/// Category entries read and folded at a time.
const PAGE: usize = 1000;
/// Tries of a page whose writes kept losing races or met an outage.
const PAGE_TRIES: u32 = 10;

pub async fn rebuild(store: RedisStore, name: &str, skip_poison: bool) -> anyhow::Result<ExitCode> {
    let views = crate::modules().views();
    match views.iter().find(|view| view.name == name) {
        Some(view) => run(view, store, skip_poison).await,
        None => {
            let names: Vec<&str> = views.iter().map(|view| view.name).collect();
            anyhow::bail!(
                "no read model {name:?} to rebuild: one of {}",
                names.join(", ")
            )
        }
    }
}

/// Refuse when a category's history no longer starts at its first event.
async fn refuse_trimmed(view: &ViewDecl, store: &RedisStore, when: &str) -> anyhow::Result<()> {
    for category in view.group.categories {
        if store.category_trimmed(category).await? {
            anyhow::bail!(
                "{category} has been trimmed{when} (CATEGORY_TRIM_EVERY_MS): its history no \
                 longer starts at the first event, so a rebuild from it would miss events; \
                 nothing was switched"
            );
        }
    }
    Ok(())
}

async fn run(view: &ViewDecl, store: RedisStore, skip_poison: bool) -> anyhow::Result<ExitCode> {
    refuse_trimmed(view, &store, "").await?;
    let shared: Arc<dyn Store> = Arc::new(store.clone());
    let live = store.live_generation(view.name).await?;
    let (generation, done, positions, switched) = match store.rebuild_state(view.name).await? {
        Some(state) if state.generation > live => {
            eprintln!(
                "resuming the rebuild of {} into generation {} after {} entries",
                view.name, state.generation, state.done
            );
            (state.generation, state.done, state.positions, false)
        }
        Some(state) if state.generation == live => {
            eprintln!(
                "finishing the rebuild of {} into generation {} (already served)",
                view.name, state.generation
            );
            (state.generation, state.done, state.positions, true)
        }
        _ => {
            store.start_rebuild(view.name, live + 1).await?;
            (live + 1, 0, Default::default(), false)
        }
    };
    let mut rebuild = Rebuild {
        name: view.name,
        projection: view.pinned(shared, generation),
        store: store.clone(),
        done,
        positions: view
            .group
            .categories
            .iter()
            .flat_map(|c| (0..store.partitions()).map(move |p| (c.clone(), p)))
            .map(|(c, p)| {
                let at = positions
                    .get(&(c.as_str().to_owned(), p))
                    .copied()
                    .unwrap_or(EntryId::ZERO);
                (c, p, at)
            })
            .collect(),
        skip_poison,
        progress: Progress::new(
            format!(
                "{} -> {}",
                view.name,
                generation_name(view.name, generation)
            ),
            total_entries(view, &store).await?,
            done,
        ),
    };

    let interrupted = Arc::new(AtomicBool::new(false));
    tokio::spawn({
        let interrupted = interrupted.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                interrupted.store(true, Ordering::SeqCst);
            }
        }
    });

    if !switched {
        // Until a pass reaches the end of every category.
        loop {
            let caught_up = rebuild.pass(&interrupted).await?;
            if interrupted.load(Ordering::SeqCst) {
                rebuild.progress.finish();
                eprintln!(
                    "interrupted after {} entries; the same command resumes",
                    rebuild.done
                );
                return Ok(ExitCode::from(130));
            }
            // Trimming that started meanwhile may have removed entries not read yet.
            refuse_trimmed(view, &store, " while the rebuild ran").await?;
            if caught_up {
                break;
            }
            rebuild.progress.total = rebuild
                .progress
                .total
                .max(total_entries(view, &store).await?);
        }
        store.set_live_generation(view.name, generation).await?;
        rebuild.progress.say(&format!(
            "switched: {} now serves generation {generation}",
            view.name
        ));
    }
    // Projectors trusting the old generation a little longer wrote there: fold what arrived
    // since into the new one.
    tokio::time::sleep(GENERATION_TTL * 3).await;
    while !rebuild.pass(&AtomicBool::new(false)).await? {}
    store.finish_rebuild(view.name).await?;
    rebuild.progress.finish();
    println!(
        "rebuilt {} from {} entries: generation {generation} ({}) is served; generation {live} ({}) \
         is no longer written and can be deleted",
        view.name,
        rebuild.done,
        generation_name(view.name, generation),
        generation_name(view.name, live),
    );
    Ok(ExitCode::SUCCESS)
}

async fn total_entries(view: &ViewDecl, store: &RedisStore) -> anyhow::Result<u64> {
    let mut total = 0;
    for category in view.group.categories {
        total += store.category_length(category).await?;
    }
    Ok(total)
}

struct Rebuild {
    name: &'static str,
    projection: Arc<dyn Handler>,
    store: RedisStore,
    done: u64,
    /// The last entry handled per category and partition.
    positions: Vec<(esr_schema::Category, u32, EntryId)>,
    skip_poison: bool,
    progress: Progress,
}

impl Rebuild {
    /// One page of every partition of every category; true when every page was the last
    /// (shorter than full).
    async fn pass(&mut self, interrupted: &AtomicBool) -> anyhow::Result<bool> {
        let mut caught_up = true;
        for i in 0..self.positions.len() {
            if interrupted.load(Ordering::SeqCst) {
                return Ok(false);
            }
            let (category, partition, after) = self.positions[i].clone();
            let page = self
                .store
                .read_category_partition(&category, partition, after, PAGE)
                .await?;
            if page.len() >= PAGE {
                caught_up = false;
            }
            let Some(last) = page.last().map(|e| e.id) else {
                continue;
            };
            // Entries that are not events are the projectors' dead letters, not this fold's.
            let events: Vec<_> = page.iter().filter_map(|e| e.event().ok()).collect();
            self.fold(&events).await?;
            self.done += page.len() as u64;
            self.positions[i].2 = last;
            self.store
                .save_rebuild_position(self.name, &category, partition, last, self.done)
                .await?;
            self.progress.set(self.done);
        }
        Ok(caught_up)
    }

    async fn fold(&self, events: &[esr_schema::StoredEvent]) -> anyhow::Result<()> {
        let mut pause = Duration::from_millis(50);
        for _ in 0..PAGE_TRIES {
            let outcomes = self
                .projection
                .handle_batch(events, &esr_store::Fence::Unfenced)
                .await;
            let mut retry = false;
            for (event, outcome) in events.iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {}
                    Err(HandlerError::Poison(reason)) if self.skip_poison => {
                        self.progress.say(&format!(
                            "skipped (--skip-poison): {} version {}: {reason}",
                            event.envelope.stream, event.envelope.version
                        ))
                    }
                    // A store error (a key of another type, say) comes as poison too: either
                    // way the new generation would lack what the entry holds.
                    Err(HandlerError::Poison(reason)) => anyhow::bail!(
                        "{} version {} cannot be folded ({reason}); nothing was switched: fix \
                         it and run the same command (it resumes), or add --skip-poison to fold \
                         past such entries",
                        event.envelope.stream,
                        event.envelope.version
                    ),
                    Err(HandlerError::FromNewerBuild(reason)) => anyhow::bail!(
                        "an event this build does not know ({reason}): rebuild with the build \
                         that wrote it"
                    ),
                    // A rebuild writes unfenced, so `NotHeld` cannot come; retried if it does.
                    Err(
                        HandlerError::Transient(_)
                        | HandlerError::StoreUnavailable(_)
                        | HandlerError::NotHeld(_),
                    ) => retry = true,
                }
            }
            if !retry {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        anyhow::bail!(
            "a page kept failing after {PAGE_TRIES} tries (the store unavailable?); the same \
             command resumes"
        )
    }
}

/// A progress bar with rate and ETA on a terminal; a line per page otherwise (a log, a test).
struct Progress {
    label: String,
    total: u64,
    started: Instant,
    started_at: u64,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(label: String, total: u64, done: u64) -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{msg} {wide_bar} {pos}/{len} entries, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style);
            }
            bar.set_message(label.clone());
            bar.set_position(done);
            bar
        });
        Self {
            label,
            total,
            started: Instant::now(),
            started_at: done,
            bar,
        }
    }

    fn set(&mut self, done: u64) {
        self.total = self.total.max(done);
        match &self.bar {
            Some(bar) => {
                bar.set_length(self.total);
                bar.set_position(done);
            }
            None => {
                let seconds = self.started.elapsed().as_secs_f64().max(0.001);
                let rate = (done - self.started_at.min(done)) as f64 / seconds;
                let eta = if rate > 0.0 {
                    format!("{:.0} s", (self.total - done) as f64 / rate)
                } else {
                    "unknown".to_owned()
                };
                eprintln!(
                    "{}: {done}/{} entries, {rate:.0} entries/s, ETA {eta}",
                    self.label, self.total
                );
            }
        }
    }

    fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
