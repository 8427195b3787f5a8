//! The posts' routes: `POST /posts`, `PATCH /posts/{id}`, `DELETE /posts/{id}`,
//! `POST /posts/{id}/restore` on the command side, `GET /posts/{id}` (with `min_version` or `at`) on the query side. Each is declared
//! once, by its annotation: served and documented from it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use esr_app::auth::Caller;
use esr_app::http::openapi::{CommandErrors, CommandHeaders, QueryErrors};
use esr_app::http::query::{ViewParams, view};
use esr_app::http::{
    ApiError, IdPath, JsonBody, QueryParams, Resource, entity_id, generated_id, run_command,
};
use esr_app::{Commands, QueryService};
use esr_schema::EntityId;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::events::PostEvent;
use crate::post::{Post, PostCommand, PostView};

impl Resource for PostEvent {
    const PATH: &'static str = "/posts";
    const UNKNOWN: &'static str = "unknown_post";
    const INVALID_ID: &'static str = "invalid_post_id";
    fn noun() -> &'static str {
        "post"
    }
}

pub fn command_routes() -> OpenApiRouter<Arc<Commands>> {
    OpenApiRouter::new()
        .routes(routes!(publish))
        .routes(routes!(edit, delete))
        .routes(routes!(restore))
}

pub fn query_routes() -> OpenApiRouter<Arc<QueryService>> {
    OpenApiRouter::new().routes(routes!(post_view))
}

/// A command accepted on a post.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct PostAccepted {
    pub post_id: String,
    pub version: u64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    /// Generated when absent (from the `Idempotency-Key` when given).
    #[schema(value_type = Option<EntityId>)]
    post_id: Option<String>,
    /// The author; the token's subject when absent (required with authentication off).
    #[schema(value_type = Option<EntityId>)]
    author: Option<String>,
    #[schema(value_type = Title)]
    title: String,
    #[schema(value_type = Body)]
    body: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    #[schema(value_type = Option<Title>)]
    title: Option<String>,
    #[schema(value_type = Option<Body>)]
    body: Option<String>,
}

esr_app::bounded_text_schema!(
    /// A post's title.
    pub Title,
    crate::post::MAX_TITLE_CHARS
);
esr_app::bounded_text_schema!(
    /// A post's text.
    pub Body,
    crate::post::MAX_BODY_CHARS
);

#[utoipa::path(
    post,
    path = "/posts",
    tag = "posts",
    request_body = PublishBody,
    params(CommandHeaders),
    responses(
        (status = 201, description = "Published", body = PostAccepted),
        CommandErrors,
    )
)]
async fn publish(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PublishBody>,
) -> Result<Response, ApiError> {
    let post_id = match &body.post_id {
        Some(raw) => entity_id(PostEvent::INVALID_ID, raw)?,
        None => generated_id(&headers)?,
    };
    let author = match (&body.author, actor.user_id()) {
        (Some(raw), _) => entity_id("invalid_user_id", raw)?,
        (None, Some(subject)) => subject,
        (None, None) => {
            return Err(ApiError::invalid(
                "invalid_field",
                "author: required without a bearer token",
            ));
        }
    };
    let command = PostCommand::Publish {
        author,
        title: body.title,
        body: body.body,
    };
    let posts = commands.of::<Post>();
    run_command(
        &posts,
        &headers,
        actor,
        post_id,
        command,
        StatusCode::CREATED,
    )
    .await
}

#[utoipa::path(
    patch,
    path = "/posts/{id}",
    tag = "posts",
    request_body = EditBody,
    params(CommandHeaders, ("id" = inline(EntityId), Path, description = "The post")),
    responses(
        (status = 200, description = "Edited", body = PostAccepted),
        CommandErrors,
    )
)]
async fn edit(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    id: IdPath<PostEvent>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EditBody>,
) -> Result<Response, ApiError> {
    let command = PostCommand::Edit {
        title: body.title,
        body: body.body,
    };
    let posts = commands.of::<Post>();
    run_command(
        &posts,
        &headers,
        actor,
        id.into_id(),
        command,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/posts/{id}",
    tag = "posts",
    params(CommandHeaders, ("id" = inline(EntityId), Path, description = "The post")),
    responses(
        (status = 200, description = "Deleted (or already deleted)", body = PostAccepted),
        CommandErrors,
    )
)]
async fn delete(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    id: IdPath<PostEvent>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let posts = commands.of::<Post>();
    let command = PostCommand::Delete;
    run_command(
        &posts,
        &headers,
        actor,
        id.into_id(),
        command,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/posts/{id}/restore",
    tag = "posts",
    params(CommandHeaders, ("id" = inline(EntityId), Path, description = "The post")),
    responses(
        (status = 200, description = "Restored (or not deleted)", body = PostAccepted),
        CommandErrors,
    )
)]
async fn restore(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    id: IdPath<PostEvent>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let posts = commands.of::<Post>();
    let command = PostCommand::Restore;
    run_command(
        &posts,
        &headers,
        actor,
        id.into_id(),
        command,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    get,
    path = "/posts/{id}",
    tag = "posts",
    params(("id" = inline(EntityId), Path, description = "The post"), ViewParams),
    responses(
        (status = 200, description = "The post; ETag: its version", body = PostView),
        QueryErrors,
    )
)]
async fn post_view(
    state: State<Arc<QueryService>>,
    path: Path<String>,
    params: QueryParams<ViewParams>,
) -> Result<Response, ApiError> {
    view::<PostView>(state, path, params).await
}
