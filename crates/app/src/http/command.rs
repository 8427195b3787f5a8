//! The command API: `POST /users`, `PATCH /users/{id}`, `POST /users/{id}/activity`,
//! `POST /users/{id}/friends`, `DELETE /users/{id}/friends/{friend_id}`; `POST /groups`,
//! `POST /groups/{id}/members`, `DELETE /groups/{id}/members/{user_id}`.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use esr_domain::{Command, GroupCommand};
use esr_kernel::{Actor, Aggregate};
use esr_schema::{Action, EntityId, GroupEvent};
use serde::Deserialize;
use serde_json::json;

use super::extract::{
    FriendPath, GroupPath, JsonBody, MemberPath, UserPath, entity_id, token_header, user_id,
};
use super::resource::Resource;
use super::{ApiError, BODY_LIMIT_BYTES, health};
use crate::auth::{self, Authentication, Caller};
use crate::command::{Accepted, CommandMeta, CommandService, Commands};

/// The command routes, each behind `authentication`; the OpenAPI document and health checks
/// are open.
pub fn router(commands: Arc<Commands>, authentication: Authentication) -> Router {
    let store = commands.store().clone();
    let rate = commands.rate.clone();
    Router::new()
        .route("/users", post(register))
        .route("/users/{id}", patch(change_personal_info))
        .route("/users/{id}/activity", post(act))
        .route("/users/{id}/friends", post(add_friend))
        .route("/users/{id}/friends/{friend_id}", delete(remove_friend))
        .route("/groups", post(create_group))
        .route("/groups/{id}/members", post(add_member))
        .route("/groups/{id}/members/{user_id}", delete(remove_member))
        // Inside authentication: the rate is the caller's.
        .route_layer(axum::middleware::from_fn_with_state(
            rate,
            super::rate::limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            authentication,
            auth::authenticate,
        ))
        .route("/openapi.json", get(super::openapi::command_document))
        .with_state(commands)
        .merge(health::store_health_router(store))
        .fallback(health::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RegisterBody {
    user_id: Option<String>,
    name: String,
    surname: String,
    birth_date: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PersonalInfoBody {
    name: Option<String>,
    surname: Option<String>,
    birth_date: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ActivityBody {
    action: String,
    object: String,
    text: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct FriendBody {
    friend_id: String,
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = RegisterBody,
    params(
        super::openapi::CommandHeaders
    ),
    responses(
        (status = 201, description = "Registered (a missing user_id is the token's subject; with authentication off, generated)", body = super::openapi::UserAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn register(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<RegisterBody>,
) -> Result<Response, ApiError> {
    // An authenticated user registers as their token's subject.
    let user_id = match (&body.user_id, actor.user_id()) {
        (Some(raw), _) => user_id(raw)?,
        (None, Some(subject)) => subject,
        (None, None) => generated_id(&headers)?,
    };
    let command = Command::Register {
        name: body.name,
        surname: body.surname,
        birth_date: date(body.birth_date.as_deref())?,
    };
    run(
        &commands.users,
        &headers,
        actor,
        user_id,
        command,
        StatusCode::CREATED,
    )
    .await
}

#[utoipa::path(
    patch,
    path = "/users/{id}",
    tag = "users",
    request_body = PersonalInfoBody,
    params(
        super::openapi::CommandHeaders,
        ("id" = String, Path, description = "The user")
    ),
    responses(
        (status = 200, description = "Changed", body = super::openapi::UserAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn change_personal_info(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    UserPath(user_id): UserPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PersonalInfoBody>,
) -> Result<Response, ApiError> {
    let command = Command::ChangePersonalInfo {
        name: body.name,
        surname: body.surname,
        birth_date: date(body.birth_date.as_deref())?,
    };
    run(
        &commands.users,
        &headers,
        actor,
        user_id,
        command,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/users/{id}/activity",
    tag = "users",
    request_body = ActivityBody,
    params(
        super::openapi::CommandHeaders,
        ("id" = String, Path, description = "The user")
    ),
    responses(
        (status = 200, description = "Recorded", body = super::openapi::UserAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn act(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    UserPath(user_id): UserPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ActivityBody>,
) -> Result<Response, ApiError> {
    let action = Action::from_name(&body.action).ok_or_else(|| {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
        ApiError::invalid(
            "invalid_field",
            format!("action: one of {}", known.join(", ")),
        )
    })?;
    let command = Command::Act {
        action,
        object: body.object,
        text: body.text,
    };
    run(
        &commands.users,
        &headers,
        actor,
        user_id,
        command,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/users/{id}/friends",
    tag = "users",
    request_body = FriendBody,
    params(
        super::openapi::CommandHeaders,
        ("id" = String, Path, description = "The user")
    ),
    responses(
        (status = 200, description = "Added (the friend's side follows through the friendship policy)", body = super::openapi::UserAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn add_friend(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    UserPath(user_id): UserPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<FriendBody>,
) -> Result<Response, ApiError> {
    let command = Command::AddFriend {
        friend_id: super::extract::user_id(&body.friend_id)?,
        reciprocal: false,
    };
    run(
        &commands.users,
        &headers,
        actor,
        user_id,
        command,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/users/{id}/friends/{friend_id}",
    tag = "users",
    params(
        super::openapi::CommandHeaders,
        ("id" = String, Path, description = "The user"),
        ("friend_id" = String, Path, description = "The friend")
    ),
    responses(
        (status = 200, description = "Removed", body = super::openapi::UserAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn remove_friend(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    FriendPath(user_id, friend_id): FriendPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = Command::RemoveFriend {
        friend_id,
        reciprocal: false,
    };
    run(
        &commands.users,
        &headers,
        actor,
        user_id,
        command,
        StatusCode::OK,
    )
    .await
}

fn date(raw: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    raw.map(|text| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ApiError::invalid(
                "invalid_field",
                format!("birth_date: {text:?} is not a YYYY-MM-DD date"),
            )
        })
    })
    .transpose()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewGroupBody {
    group_id: Option<String>,
    name: String,
    capacity: u32,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberBody {
    user_id: String,
}

#[utoipa::path(
    post,
    path = "/groups",
    tag = "groups",
    request_body = NewGroupBody,
    params(
        super::openapi::CommandHeaders
    ),
    responses(
        (status = 201, description = "Created (a missing group_id is generated)", body = super::openapi::GroupAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn create_group(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewGroupBody>,
) -> Result<Response, ApiError> {
    let group_id = match &body.group_id {
        Some(raw) => entity_id(GroupEvent::INVALID_ID, raw)?,
        None => generated_id(&headers)?,
    };
    let command = GroupCommand::Create {
        name: body.name,
        capacity: body.capacity,
    };
    run(
        &commands.groups,
        &headers,
        actor,
        group_id,
        command,
        StatusCode::CREATED,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/groups/{id}/members",
    tag = "groups",
    request_body = MemberBody,
    params(
        super::openapi::CommandHeaders,
        ("id" = String, Path, description = "The group")
    ),
    responses(
        (status = 200, description = "Added", body = super::openapi::GroupAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn add_member(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    GroupPath(group_id): GroupPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<MemberBody>,
) -> Result<Response, ApiError> {
    let command = GroupCommand::AddMember {
        user_id: user_id(&body.user_id)?,
    };
    run(
        &commands.groups,
        &headers,
        actor,
        group_id,
        command,
        StatusCode::OK,
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/groups/{id}/members/{user_id}",
    tag = "groups",
    params(
        super::openapi::CommandHeaders,
        ("id" = String, Path, description = "The group"),
        ("user_id" = String, Path, description = "The member")
    ),
    responses(
        (status = 200, description = "Removed", body = super::openapi::GroupAccepted),
        super::openapi::CommandErrors,
    )
)]
pub(super) async fn remove_member(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    MemberPath(group_id, user_id): MemberPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = GroupCommand::RemoveMember { user_id };
    run(
        &commands.groups,
        &headers,
        actor,
        group_id,
        command,
        StatusCode::OK,
    )
    .await
}

/// The id of a resource created without one. With an `Idempotency-Key`, derived from the key,
/// so that a retry names the same stream and gets the first answer instead of creating a
/// second resource; without one, a fresh UUID v7.
fn generated_id(headers: &HeaderMap) -> Result<EntityId, ApiError> {
    /// Namespace of the ids derived from idempotency keys (UUID v5); fixed forever.
    const KEYED_IDS: uuid::Uuid = uuid::Uuid::from_u128(0x6573_722d_6b65_7965_642d_6964_7300_0001);
    let id = match token_header(headers, "idempotency-key")? {
        Some(key) => uuid::Uuid::new_v5(&KEYED_IDS, key.as_bytes()),
        None => uuid::Uuid::now_v7(),
    };
    EntityId::parse(&id.simple().to_string())
        .map_err(|e| ApiError::invalid("invalid_field", e.to_string()))
}

async fn run<A: Aggregate<Event: Resource>>(
    commands: &CommandService<A>,
    headers: &HeaderMap,
    actor: Actor,
    id: EntityId,
    command: A::Command,
    success: StatusCode,
) -> Result<Response, ApiError> {
    let mut meta = CommandMeta::new(token_header(headers, "x-correlation-id")?, actor);
    meta.idempotency_key = token_header(headers, "idempotency-key")?;
    meta.fingerprint = Some(crate::command::fingerprint::<A>(&command, &meta.actor));
    meta.if_match = if_match(headers)?;
    let accepted = commands.execute(&id, command, &meta).await?;
    Ok(answer::<A>(&id, accepted, &meta, success))
}

/// `If-Match: "3"` (or `3`); `*` means no version check.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_matches('"').parse().map(Some).map_err(|_| {
        ApiError::malformed(format!(
            "If-Match must be a version like \"3\", not {text:?}"
        ))
    })
}

fn answer<A: Aggregate<Event: Resource>>(
    id: &EntityId,
    accepted: Accepted,
    meta: &CommandMeta,
    status: StatusCode,
) -> Response {
    let body = Json(json!({A::Event::id_field(): id, "version": accepted.version}));
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", accepted.version)) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(correlation) = HeaderValue::from_str(&meta.correlation_id) {
        headers.insert("x-correlation-id", correlation);
    }
    if accepted.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("{}/{id}", A::Event::PATH))
    {
        headers.insert(header::LOCATION, location);
    }
    response
}
