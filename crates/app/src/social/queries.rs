//! The social domain's read routes: `GET /users/{id}` and `GET /groups/{id}` (with
//! `min_version` or `at`), `GET /users/{id}/events` and `GET /groups/{id}/events`, and the
//! most-liked objects `GET /objects/top`, `GET /objects/{object}`. Each names its view or
//! tally; the reading is [`crate::http::query`]'s, written once.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use esr_domain::{GroupView, MostLiked, Profile};
use esr_kernel::Tally as _;
use esr_schema::EntityId;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::paths::user_id;
use crate::auth::Caller;
use crate::http::openapi::QueryErrors;
use crate::http::query::{
    EventsParams, TopParams, ViewParams, events, tally_count, tally_top, view,
};
use crate::http::{ApiError, QueryParams};
use crate::query::QueryService;

/// Every read route, served and documented from the annotations below.
pub fn routes() -> OpenApiRouter<Arc<QueryService>> {
    OpenApiRouter::new()
        .routes(routes!(user_view))
        .routes(routes!(user_events))
        .routes(routes!(group_view))
        .routes(routes!(group_events))
        .routes(routes!(top_objects))
        .routes(routes!(object))
}

/// How the most-liked tally's keys and counts are named in answers.
const LIKES: (&str, &str) = ("object", "likes");

#[utoipa::path(
    get,
    path = "/users/{id}",
    tag = "users",
    params(("id" = inline(EntityId), Path, description = "The user"), ViewParams),
    responses(
        (status = 200, description = "The profile; ETag: its version", body = Profile),
        QueryErrors,
    )
)]
async fn user_view(
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
    params(("id" = inline(EntityId), Path, description = "The user"), EventsParams),
    responses(
        (status = 200, description = "A page of the user's history", body = super::bodies::UserEventsPage),
        QueryErrors,
    )
)]
async fn user_events(
    Caller(actor): Caller,
    state: State<Arc<QueryService>>,
    path: Path<String>,
    params: QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    let user = user_id(&path.0)?;
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
    params(("id" = inline(EntityId), Path, description = "The group"), ViewParams),
    responses(
        (status = 200, description = "The group; ETag: its version", body = GroupView),
        QueryErrors,
    )
)]
async fn group_view(
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
    params(("id" = inline(EntityId), Path, description = "The group"), EventsParams),
    responses(
        (status = 200, description = "A page of the group's history", body = super::bodies::GroupEventsPage),
        QueryErrors,
    )
)]
async fn group_events(
    state: State<Arc<QueryService>>,
    path: Path<String>,
    params: QueryParams<EventsParams>,
) -> Result<Response, ApiError> {
    events::<GroupView>(state, path, params).await
}

#[utoipa::path(
    get,
    path = "/objects/top",
    tag = "objects",
    params(TopParams),
    responses(
        (status = 200, description = "Most liked first, then by name", body = Vec<super::bodies::ObjectLikes>),
        QueryErrors,
    )
)]
async fn top_objects(
    State(queries): State<Arc<QueryService>>,
    QueryParams(params): QueryParams<TopParams>,
) -> Result<Response, ApiError> {
    tally_top(&queries, MostLiked::NAME, params, LIKES).await
}

#[utoipa::path(
    get,
    path = "/objects/{object}",
    tag = "objects",
    params(("object" = String, Path, description = "The object")),
    responses(
        (status = 200, description = "How many like it", body = super::bodies::ObjectLikes),
        QueryErrors,
    )
)]
async fn object(
    State(queries): State<Arc<QueryService>>,
    Path(object): Path<String>,
) -> Result<Response, ApiError> {
    tally_count(&queries, MostLiked::NAME, &object, LIKES, "unknown_object").await
}
