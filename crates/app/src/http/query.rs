//! What every module's read routes share: the query side's router over the modules' routes,
//! and one generic answer per kind of read: a view (with `min_version` or `at`), a stream's
//! history, a tally's top and one key's count.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use esr_kernel::View;
use esr_schema::EntityId;
use serde::Deserialize;
use serde_json::json;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use super::extract::{QueryParams, entity_id};
use super::resource::Resource;
use super::{ApiError, health};
use crate::auth::{self, Authentication};
use crate::module::Modules;
use crate::query::{Fresh, QueryService};

pub const MAX_EVENTS_PAGE: usize = 1000;
pub const MAX_TOP: usize = 100;

/// The read routes of `modules`, each behind `authentication`; the OpenAPI document (read off
/// the same routes) and health checks are open.
pub fn router(
    queries: Arc<QueryService>,
    modules: &Modules,
    authentication: Authentication,
) -> Router {
    let store = queries.store().clone();
    let (routes, document) = OpenApiRouter::with_openapi(super::openapi::QueryApi::openapi())
        .merge(modules.query_api())
        .split_for_parts();
    let document = Arc::new(document);
    routes
        .route_layer(axum::middleware::from_fn_with_state(
            authentication,
            auth::authenticate,
        ))
        .route(
            "/openapi.json",
            get(move || async move { Json(document.as_ref().clone()) }),
        )
        .with_state(queries)
        .merge(health::store_health_router(store))
        .fallback(health::not_found)
}

fn unknown<R: Resource>(id: &EntityId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        R::UNKNOWN,
        format!("no {} {id}", R::noun()),
    )
}

fn path_id<R: Resource>(raw: &str) -> Result<EntityId, ApiError> {
    entity_id(R::INVALID_ID, raw)
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ViewParams {
    /// Wait (a bounded time) until the read model reaches this version: read your own writes.
    /// Not with `at` (400).
    pub min_version: Option<u64>,
    /// RFC 3339: the state as it was then, folded from the stream. Not with `min_version`.
    #[param(format = DateTime)]
    pub at: Option<String>,
}

pub async fn view<V: View<Event: Resource>>(
    State(queries): State<Arc<QueryService>>,
    Path(raw): Path<String>,
    QueryParams(params): QueryParams<ViewParams>,
) -> Result<Response, ApiError> {
    let id = path_id::<V::Event>(&raw)?;
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
            match queries.view_as_of::<V>(&id, at).await? {
                Some(view) => Ok(view_response(&view)),
                None => Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    V::Event::UNKNOWN,
                    format!("no {} {id} at {at}", V::Event::noun()),
                )),
            }
        }
        (Some(min_version), None) => match queries.view_at_least::<V>(&id, min_version).await? {
            Fresh::Reached(view) => Ok(view_response(&view)),
            Fresh::TimedOut(None) if queries.stream_version::<V::Event>(&id).await? == 0 => {
                Err(unknown::<V::Event>(&id))
            }
            Fresh::TimedOut(stale) => Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "min_version_not_reached",
                format!(
                    "the {} {} of {id} is at version {}, not yet {min_version}, after waiting {} ms",
                    V::Event::noun(),
                    V::NAME,
                    stale.map_or(0, |v| v.version()),
                    queries.max_wait.as_millis()
                ),
            )),
        },
        (None, None) => match queries.view::<V>(&id).await? {
            Some(view) => Ok(view_response(&view)),
            None => Err(unknown::<V::Event>(&id)),
        },
    }
}

fn view_response<V: View>(view: &V) -> Response {
    let mut response = Json(view).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", view.version())) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventsParams {
    /// The first version (default 1).
    pub from: Option<u64>,
    /// Events per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

pub async fn events<V: View<Event: Resource>>(
    State(queries): State<Arc<QueryService>>,
    Path(raw): Path<String>,
    QueryParams(params): QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    let id = path_id::<V::Event>(&raw)?;
    let from = params.from.unwrap_or(1).max(1);
    let limit = params.limit.unwrap_or(100);
    if !(1..=MAX_EVENTS_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("limit: 1 to {MAX_EVENTS_PAGE}"),
        ));
    }
    let version = queries.stream_version::<V::Event>(&id).await?;
    if version == 0 {
        return Err(unknown::<V::Event>(&id));
    }
    let events = queries.events::<V::Event>(&id, from, limit).await?;
    let next_from = events
        .last()
        .map(|e| e.version + 1)
        .filter(|next| *next <= version);
    Ok(Json(json!({
        V::Event::id_field(): id,
        "version": version,
        "events": events,
        "next_from": next_from,
    }))
    .into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TopParams {
    /// 1 to 100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

/// The first `limit` keys of tally `tally`, most counted first, as `[{key_field: key,
/// count_field: n}]`.
pub async fn tally_top(
    queries: &QueryService,
    tally: &str,
    params: TopParams,
    (key_field, count_field): (&str, &str),
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(10);
    if !(1..=MAX_TOP).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("limit: 1 to {MAX_TOP}"),
        ));
    }
    let top = queries.tally_top(tally, limit).await?;
    let body: Vec<_> = top
        .into_iter()
        .map(|(key, count)| json!({key_field: key, count_field: count}))
        .collect();
    Ok(Json(body).into_response())
}

/// One key's count in tally `tally`; 404 `unknown` when nothing counts it.
pub async fn tally_count(
    queries: &QueryService,
    tally: &str,
    key: &str,
    (key_field, count_field): (&str, &str),
    unknown: &'static str,
) -> Result<Response, ApiError> {
    match queries.tally_count(tally, key).await? {
        0 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            unknown,
            format!("nothing counts {key:?} in {tally}"),
        )),
        count => Ok(Json(json!({key_field: key, count_field: count})).into_response()),
    }
}
