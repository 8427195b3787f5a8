//! What every side serves its operators: `/livez` (the process answers), `/readyz` (it can do
//! its work: the store answers, the consumer groups exist, it is not shutting down) and
//! `/metrics` (Prometheus text); and the middleware that counts, times and logs each request.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use esr_schema::Category;
use esr_store::Store;
use serde_json::json;
use tokio::sync::watch;

use crate::error_chain;
use crate::metrics;
use crate::projector::{Handler, Projectors};

/// How long a probe's answer is reused: `/readyz` and the projector's `/healthz` read every
/// group of every partition (hundreds of `XINFO` calls), so a flood of probes must not become
/// a flood of reads.
pub const PROBE_CACHE: std::time::Duration = std::time::Duration::from_secs(1);

/// A probe's answer, computed at most once per [`PROBE_CACHE`]; probes that arrive meanwhile,
/// or while it is computed, get the same answer.
#[derive(Clone, Default)]
pub struct CachedProbe(Arc<tokio::sync::Mutex<Option<(Instant, StatusCode, serde_json::Value)>>>);

impl CachedProbe {
    pub async fn answer(
        &self,
        compute: impl std::future::Future<Output = (StatusCode, serde_json::Value)>,
    ) -> Response {
        let mut held = self.0.lock().await;
        let (status, body) = match held.as_ref() {
            Some((at, status, body)) if at.elapsed() < PROBE_CACHE => (*status, body.clone()),
            _ => {
                let (status, body) = compute.await;
                *held = Some((Instant::now(), status, body.clone()));
                (status, body)
            }
        };
        (status, Json(body)).into_response()
    }
}

/// What `/readyz` checks and `/metrics` reads.
#[derive(Clone)]
pub struct Ops {
    store: Arc<dyn Store>,
    groups: Arc<Vec<(String, Vec<Category>)>>,
    shutdown: watch::Receiver<bool>,
    projectors: Option<Arc<Projectors>>,
    readiness: CachedProbe,
}

impl Ops {
    /// Ready when `store` answers, the groups of `handlers` exist and `shutdown` is false.
    pub fn new(
        store: Arc<dyn Store>,
        handlers: &[Arc<dyn Handler>],
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let groups = handlers
            .iter()
            .map(|h| (h.group().to_owned(), h.categories().to_vec()))
            .collect();
        Self::with_groups(store, groups, shutdown)
    }

    /// Ready when `store` answers, `groups` exist and `shutdown` is false: for the sides that
    /// run no handlers but serve what those groups write.
    pub fn for_groups(
        store: Arc<dyn Store>,
        groups: &[crate::module::GroupDecl],
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let groups = groups
            .iter()
            .map(|g| (g.name.to_owned(), g.categories.to_vec()))
            .collect();
        Self::with_groups(store, groups, shutdown)
    }

    fn with_groups(
        store: Arc<dyn Store>,
        groups: Vec<(String, Vec<Category>)>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            groups: Arc::new(groups),
            shutdown,
            projectors: None,
            readiness: CachedProbe::default(),
        }
    }

    /// The projector side's: `/metrics` also reads each group's lag and pending entries.
    pub fn with_projectors(mut self, projectors: Arc<Projectors>) -> Self {
        self.projectors = Some(projectors);
        self
    }
}

pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/livez", get(live))
        .route("/readyz", get(ready))
        .route("/metrics", get(scrape))
        .with_state(ops)
}

async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

async fn ready(State(ops): State<Ops>) -> Response {
    if *ops.shutdown.borrow() {
        let (status, body) = not_ready(
            "shutting_down",
            "shutting down: send requests elsewhere".into(),
        );
        return (status, Json(body)).into_response();
    }
    ops.readiness.answer(readiness(&ops)).await
}

async fn readiness(ops: &Ops) -> (StatusCode, serde_json::Value) {
    let mut missing = Vec::new();
    for (group, categories) in ops.groups.iter() {
        match ops.store.group_present(group, categories).await {
            Ok(true) => {}
            Ok(false) => missing.push(group.as_str()),
            Err(error) => return not_ready("store_unavailable", error_chain(&error)),
        }
    }
    if !missing.is_empty() {
        return not_ready(
            "groups_missing",
            format!(
                "consumer groups not created yet (a projector creates them when it starts): {}",
                missing.join(", ")
            ),
        );
    }
    (StatusCode::OK, json!({"status": "ready"}))
}

fn not_ready(code: &'static str, message: String) -> (StatusCode, serde_json::Value) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "not_ready", "error": code, "message": message}),
    )
}

async fn scrape(State(ops): State<Ops>) -> Response {
    if let Some(projectors) = &ops.projectors
        && let Err(error) = projectors.record_metrics().await
    {
        // The counters are still worth having: the gauges keep their last values.
        tracing::warn!(error = %error_chain(&error), "lag and pending not read for /metrics");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(),
    )
        .into_response()
}

/// Count, time and log every request, labelled by the route's pattern (`/users/{id}`), so the
/// series stay few whatever the paths.
pub async fn observe(State(side): State<&'static str>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let response = if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        method_not_allowed(response, &method)
    } else {
        response
    };
    let took = started.elapsed();
    let status = response.status().as_u16();
    metrics::http_request(side, route, &method, status, took);
    tracing::info!(
        %method,
        %path,
        status,
        elapsed_us = took.as_micros() as u64,
        "request"
    );
    response
}

/// The span every log line of a request is written in: method, route and correlation id.
pub fn request_span(request: &Request) -> tracing::Span {
    let correlation_id = request
        .headers()
        .get(&super::CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    tracing::info_span!("request", method = %request.method(), route, correlation_id)
}

/// axum answers a known path with an unsupported method by 405, an `Allow` header (added
/// outside this middleware) and no body: the body becomes the JSON error every other refusal
/// has.
fn method_not_allowed(response: Response, method: &axum::http::Method) -> Response {
    let (mut parts, _) = response.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    let (body_parts, body) = super::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not served on this path: the Allow header lists what is"),
    )
    .into_response()
    .into_parts();
    parts.headers.extend(body_parts.headers);
    Response::from_parts(parts, body)
}
