//! Prometheus metrics: the process's one recorder, and every series this project exports,
//! named here and nowhere else.
//!
//! HTTP: `esr_http_requests_total` and `esr_http_request_duration_seconds` by side, route
//! (the route's pattern, never the raw path), method (the nine standard ones, any other
//! `other`) and status: every label from a fixed set, whatever clients send. Command runtime:
//! `esr_append_duration_seconds`, `esr_command_conflicts_total`, `esr_command_retries_total`,
//! `esr_command_replays_total` by aggregate. Projector: `esr_projector_batch_size`,
//! `esr_projector_batch_duration_seconds`, `esr_projector_events_applied_total`,
//! `esr_projector_events_deferred_total`, `esr_projector_claimed_total`,
//! `esr_projector_dead_lettered_total` by group; `esr_projector_lag` and
//! `esr_projector_pending` by group and partition, and `esr_dead_letters`, read from the
//! store at each scrape; `esr_category_entries_trimmed_total` when trimming is on.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Seconds: from a fast Redis round trip to a request near its timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_SIZE_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Install the process's recorder (the first call does; the others find it). Series recorded
/// before it are lost, so every side calls this before it serves. `None` when another
/// recorder was installed first (an embedding application's own): the series go there.
pub fn install() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("esr_projector_batch_size".into()),
                        BATCH_SIZE_BUCKETS,
                    )
                });
            match builder.and_then(|b| b.install_recorder()) {
                Ok(handle) => Some(handle),
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics stays empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text of every series so far.
pub fn render() -> String {
    install().map(PrometheusHandle::render).unwrap_or_default()
}

/// The method as a label: the standard ones by name, any other `other`, so that a client
/// making up methods cannot grow the series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

pub fn http_request(
    side: &'static str,
    route: String,
    method: &axum::http::Method,
    status: u16,
    took: Duration,
) {
    let method = method_label(method);
    let status = status.to_string();
    counter!("esr_http_requests_total", "side" => side, "route" => route.clone(), "method" => method, "status" => status).increment(1);
    histogram!("esr_http_request_duration_seconds", "side" => side, "route" => route, "method" => method)
        .record(took.as_secs_f64());
}

pub fn append(aggregate: &str, took: Duration) {
    histogram!("esr_append_duration_seconds", "aggregate" => aggregate.to_owned())
        .record(took.as_secs_f64());
}

pub fn conflict(aggregate: &str) {
    counter!("esr_command_conflicts_total", "aggregate" => aggregate.to_owned()).increment(1);
}

pub fn retry(aggregate: &str) {
    counter!("esr_command_retries_total", "aggregate" => aggregate.to_owned()).increment(1);
}

pub fn replay(aggregate: &str) {
    counter!("esr_command_replays_total", "aggregate" => aggregate.to_owned()).increment(1);
}

/// One batch handed to a group's handler, and what came of its entries.
pub struct Batch<'a> {
    pub group: &'a str,
    pub size: usize,
    pub took: Duration,
    pub applied: usize,
    pub deferred: usize,
    pub dead_lettered: usize,
}

pub fn batch(batch: &Batch<'_>) {
    let group = batch.group.to_owned();
    histogram!("esr_projector_batch_size", "group" => group.clone()).record(batch.size as f64);
    histogram!("esr_projector_batch_duration_seconds", "group" => group.clone())
        .record(batch.took.as_secs_f64());
    counter!("esr_projector_events_applied_total", "group" => group.clone())
        .increment(batch.applied as u64);
    counter!("esr_projector_events_deferred_total", "group" => group.clone())
        .increment(batch.deferred as u64);
    counter!("esr_projector_dead_lettered_total", "group" => group)
        .increment(batch.dead_lettered as u64);
}

pub fn claimed(group: &str, entries: usize) {
    counter!("esr_projector_claimed_total", "group" => group.to_owned()).increment(entries as u64);
}

pub fn group_partition(group: &str, partition: u32, lag: u64, pending: u64) {
    let (group, partition) = (group.to_owned(), partition.to_string());
    gauge!("esr_projector_lag", "group" => group.clone(), "partition" => partition.clone())
        .set(lag as f64);
    gauge!("esr_projector_pending", "group" => group, "partition" => partition).set(pending as f64);
}

pub fn trimmed(entries: u64) {
    counter!("esr_category_entries_trimmed_total").increment(entries);
}

pub fn dead_letters(count: u64) {
    gauge!("esr_dead_letters").set(count as f64);
}
