//! `/healthz` for every side, and the JSON 404 for unknown routes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use esr_schema::{StreamId, UserEvent, UserId};
use esr_store::Store;
use serde_json::json;

use super::ApiError;
use crate::projector::Projectors;

/// `GET /healthz` that answers 200 only when the store answers.
pub fn store_health_router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/healthz", get(store_health))
        .with_state(store)
}

async fn store_health(State(store): State<Arc<dyn Store>>) -> Response {
    // Any cheap read proves the store answers.
    let probe = UserId::parse("healthz").map_err(|e| e.to_string());
    match probe {
        Ok(probe) => match store
            .stream_version(&StreamId::of::<UserEvent>(probe))
            .await
        {
            Ok(_) => Json(json!({"status": "ok"})).into_response(),
            Err(error) => unavailable(&error.to_string()),
        },
        Err(error) => unavailable(&error),
    }
}

fn unavailable(reason: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unavailable", "error": "store_unavailable", "message": reason})),
    )
        .into_response()
}

/// What the projector's `/healthz` reports.
#[derive(Clone)]
pub struct ProjectorHealth {
    pub projectors: Arc<Projectors>,
    /// The answer, reused for a second (see [`super::ops::PROBE_CACHE`]).
    pub cache: super::ops::CachedProbe,
}

/// The projector side's HTTP: `/healthz` with each group's lag and pending count and the
/// dead-letter count.
pub fn projector_router(health: ProjectorHealth) -> Router {
    Router::new()
        .route("/healthz", get(projector_health))
        .with_state(health)
        .fallback(not_found)
}

async fn projector_health(State(health): State<ProjectorHealth>) -> Response {
    let projectors = health.projectors.clone();
    health
        .cache
        .answer(async move {
            match projectors.health().await {
                Ok((groups, dead_letters)) => (
                    StatusCode::OK,
                    json!({
                        "status": "ok",
                        "groups": groups,
                        "dead_letters": dead_letters,
                    }),
                ),
                Err(error) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"status": "unavailable", "error": "store_unavailable", "message": error.to_string()}),
                ),
            }
        })
        .await
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}
