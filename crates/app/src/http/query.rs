//! The query API: `GET /users/{id}` (with `min_version` or `at`) and
//! `GET /users/{id}/events?from=&limit=`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use esr_domain::Profile;
use serde::Deserialize;
use serde_json::json;

use super::extract::{QueryParams, UserPath};
use super::{ApiError, health};
use crate::query::{Fresh, QueryService};

pub const MAX_EVENTS_PAGE: usize = 1000;

pub fn router(queries: Arc<QueryService>) -> Router {
    let store = queries.store().clone();
    Router::new()
        .route("/users/{id}", get(profile))
        .route("/users/{id}/events", get(events))
        .with_state(queries)
        .merge(health::store_health_router(store))
        .fallback(health::not_found)
        .layer(axum::middleware::from_fn(super::log_request))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileParams {
    min_version: Option<u64>,
    at: Option<String>,
}

async fn profile(
    State(queries): State<Arc<QueryService>>,
    UserPath(user_id): UserPath,
    QueryParams(params): QueryParams<ProfileParams>,
) -> Result<Response, ApiError> {
    match (params.min_version, params.at) {
        (Some(_), Some(_)) => Err(ApiError::malformed("use min_version or at, not both")),
        (None, Some(at)) => {
            let at = DateTime::parse_from_rfc3339(&at)
                .map_err(|_| {
                    ApiError::invalid(
                        "invalid_field",
                        format!("at: {at:?} is not an RFC 3339 time"),
                    )
                })?
                .with_timezone(&Utc);
            match queries.profile_as_of(&user_id, at).await? {
                Some(profile) => Ok(profile_response(&profile)),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_user",
                    format!("no user {user_id} at {at}"),
                )),
            }
        }
        (Some(min_version), None) => match queries.profile_at_least(&user_id, min_version).await? {
            Fresh::Reached(profile) => Ok(profile_response(&profile)),
            Fresh::TimedOut(None) if queries.user_version(&user_id).await? == 0 => {
                Err(ApiError::unknown_user(&user_id))
            }
            Fresh::TimedOut(stale) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "min_version_not_reached",
                format!(
                    "the profile of {user_id} is at version {}, not yet {min_version}, after waiting {} ms",
                    stale.map_or(0, |p| p.version),
                    queries.max_wait.as_millis()
                ),
            )),
        },
        (None, None) => match queries.profile(&user_id).await? {
            Some(profile) => Ok(profile_response(&profile)),
            None => Err(ApiError::unknown_user(&user_id)),
        },
    }
}

fn profile_response(profile: &Profile) -> Response {
    let mut response = Json(profile).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", profile.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsParams {
    from: Option<u64>,
    limit: Option<usize>,
}

async fn events(
    State(queries): State<Arc<QueryService>>,
    UserPath(user_id): UserPath,
    QueryParams(params): QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    let from = params.from.unwrap_or(1).max(1);
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("limit: 1 to {MAX_EVENTS_PAGE}"),
        ));
    }
    let version = queries.user_version(&user_id).await?;
    if version == 0 {
        return Err(ApiError::unknown_user(&user_id));
    }
    let events = queries.events(&user_id, from, limit).await?;
    let next_from = events
        .last()
        .map(|e| e.version + 1)
        .filter(|next| *next <= version);
    Ok(Json(json!({
        "user_id": user_id,
        "version": version,
        "events": events,
        "next_from": next_from,
    }))
    .into_response())
}
