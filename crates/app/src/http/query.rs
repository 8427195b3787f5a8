//! The query API, one generic handler per kind of read: `GET /users/{id}` and
//! `GET /groups/{id}` (with `min_version` or `at`), `GET /users/{id}/events` and
//! `GET /groups/{id}/events`, and the most-liked objects `GET /objects/top`,
//! `GET /objects/{object}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use esr_domain::{GroupView, MostLiked, Profile};
use esr_kernel::{Tally, View};
use esr_schema::EntityId;
use serde::Deserialize;
use serde_json::json;

use super::extract::{QueryParams, entity_id};
use super::resource::Resource;
use super::{ApiError, health};
use crate::auth::{self, Authentication, Caller};
use crate::query::{Fresh, QueryService};

pub const MAX_EVENTS_PAGE: usize = 1000;
pub const MAX_TOP: usize = 100;

/// The query routes, each behind `authentication`; the OpenAPI document and health checks
/// are open.
pub fn router(queries: Arc<QueryService>, authentication: Authentication) -> Router {
    let store = queries.store().clone();
    Router::new()
        .route("/users/{id}", get(user_view))
        .route("/users/{id}/events", get(user_events))
        .route("/groups/{id}", get(group_view))
        .route("/groups/{id}/events", get(group_events))
        .route("/objects/top", get(top_objects))
        .route("/objects/{object}", get(object))
        .route_layer(axum::middleware::from_fn_with_state(
            authentication,
            auth::authenticate,
        ))
        .route("/openapi.json", get(super::openapi::query_document))
        .with_state(queries)
        .merge(health::store_health_router(store))
        .fallback(health::not_found)
}

#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(("id" = String, Path, description = "The user"), ViewParams),
    responses(
        (status = 200, description = "The profile; ETag: its version", body = super::openapi::ProfileBody),
        super::openapi::QueryErrors,
    )
)]
pub(super) async fn user_view(
    state: State<Arc<QueryService>>,
    path: Path<String>,
    params: QueryParams<ViewParams>,
) -> Result<Response, ApiError> {
    view::<Profile>(state, path, params).await
}

#[utoipa::path(
    get,
    path = "/users/{id}/events",
    tag = "users",
    params(("id" = String, Path, description = "The user"), EventsParams),
    responses(
        (status = 200, description = "A page of the user's history", body = super::openapi::UserEventsPage),
        super::openapi::QueryErrors,
    )
)]
pub(super) async fn user_events(
    Caller(actor): Caller,
    state: State<Arc<QueryService>>,
    path: Path<String>,
    params: QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    let user = super::extract::user_id(&path.0)?;
    if !esr_domain::may_read_history(&actor, &user) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{actor} may read only their own history, not user {user}'s"),
        ));
    }
    events::<Profile>(state, path, params).await
}

#[utoipa::path(
    get,
    path = "/groups/{id}",
    tag = "groups",
    params(("id" = String, Path, description = "The group"), ViewParams),
    responses(
        (status = 200, description = "The group; ETag: its version", body = super::openapi::GroupBody),
        super::openapi::QueryErrors,
    )
)]
pub(super) async fn group_view(
    state: State<Arc<QueryService>>,
    path: Path<String>,
    params: QueryParams<ViewParams>,
) -> Result<Response, ApiError> {
    view::<GroupView>(state, path, params).await
}

#[utoipa::path(
    get,
    path = "/groups/{id}/events",
    tag = "groups",
    params(("id" = String, Path, description = "The group"), EventsParams),
    responses(
        (status = 200, description = "A page of the group's history", body = super::openapi::GroupEventsPage),
        super::openapi::QueryErrors,
    )
)]
pub(super) async fn group_events(
    state: State<Arc<QueryService>>,
    path: Path<String>,
    params: QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    events::<GroupView>(state, path, params).await
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
pub(super) struct ViewParams {
    /// Wait (a bounded time) until the read model reaches this version: read your own writes.
    min_version: Option<u64>,
    /// RFC 3339: the state as it was then, folded from the stream.
    at: Option<String>,
}

async fn view<V: View<Event: Resource>>(
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
pub(super) struct EventsParams {
    /// The first version (default 1).
    from: Option<u64>,
    /// Events per page, 1 to 1000 (default 100).
    limit: Option<usize>,
}

async fn events<V: View<Event: Resource>>(
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
pub(super) struct TopParams {
    /// 1 to 100 (default 10).
    limit: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/objects/top",
    tag = "objects",
    params(TopParams),
    responses(
        (status = 200, description = "Most liked first, then by name", body = Vec<super::openapi::ObjectLikes>),
        super::openapi::QueryErrors,
    )
)]
pub(super) async fn top_objects(
    State(queries): State<Arc<QueryService>>,
    QueryParams(params): QueryParams<TopParams>,
) -> Result<Response, ApiError> {
    let limit = params.limit.unwrap_or(10);
    if !(1..=MAX_TOP).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_field",
            format!("limit: 1 to {MAX_TOP}"),
        ));
    }
    let top = queries.tally_top(MostLiked::NAME, limit).await?;
    let body: Vec<_> = top
        .into_iter()
        .map(|(object, likes)| json!({"object": object, "likes": likes}))
        .collect();
    Ok(Json(body).into_response())
}

#[utoipa::path(
    get,
    path = "/objects/{object}",
    tag = "objects",
    params(("object" = String, Path, description = "The object")),
    responses(
        (status = 200, description = "How many like it", body = super::openapi::ObjectLikes),
        super::openapi::QueryErrors,
    )
)]
pub(super) async fn object(
    State(queries): State<Arc<QueryService>>,
    Path(object): Path<String>,
) -> Result<Response, ApiError> {
    match queries.tally_count(MostLiked::NAME, &object).await? {
        0 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_object",
            format!("nobody likes {object:?}"),
        )),
        likes => Ok(Json(json!({"object": object, "likes": likes})).into_response()),
    }
}
