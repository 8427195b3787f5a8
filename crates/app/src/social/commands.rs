//! The social domain's command routes: `POST /users`, `PATCH /users/{id}`,
//! `POST /users/{id}/activity`, `POST /users/{id}/friends`,
//! `DELETE /users/{id}/friends/{friend_id}`; `POST /groups`, `POST /groups/{id}/members`,
//! `DELETE /groups/{id}/members/{user_id}`. Each handler turns its request into a command; the
//! rest (idempotency, `If-Match`, answers) is [`crate::http::run_command`]'s.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use esr_domain::{Group, GroupCommand, User, UserCommand};
use esr_schema::{Action, EntityId, GroupEvent};
use serde::Deserialize;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, KnownFormat, ObjectBuilder, OneOfBuilder,
    Schema, SchemaFormat, Type,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::bodies::{Capacity, GroupName, Name, Note, ObjectName};
use super::paths::{FriendPath, GroupPath, MemberPath, UserPath, user_id};
use crate::auth::Caller;
use crate::command::Commands;
use crate::http::openapi::{CommandErrors, CommandHeaders};
use crate::http::{
    ApiError, JsonBody, Resource, date, entity_id, generated_id, run_command as run,
};

/// Every command route, served and documented from the annotations below.
pub fn routes() -> OpenApiRouter<Arc<Commands>> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(change_personal_info))
        .routes(routes!(act))
        .routes(routes!(add_friend))
        .routes(routes!(remove_friend))
        .routes(routes!(create_group))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    /// The token's subject when absent (generated with authentication off).
    #[schema(value_type = Option<EntityId>)]
    user_id: Option<String>,
    #[schema(value_type = Name)]
    name: String,
    #[schema(value_type = Name)]
    surname: String,
    /// Not after today.
    #[schema(value_type = Option<chrono::NaiveDate>)]
    birth_date: Option<String>,
}

/// At least one field, not null (documented by its schema below).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonalInfoBody {
    name: Option<String>,
    surname: Option<String>,
    birth_date: Option<String>,
}

/// `PersonalInfoBody`: the fields of a registration, at least one of them given.
impl utoipa::PartialSchema for PersonalInfoBody {
    fn schema() -> RefOr<Schema> {
        let fields = [
            ("name", Name::schema()),
            ("surname", Name::schema()),
            ("birth_date", birth_date()),
        ];
        let mut at_least_one = AnyOfBuilder::new();
        for (field, schema) in &fields {
            at_least_one = at_least_one.item(
                ObjectBuilder::new()
                    .property(*field, schema.clone())
                    .required(*field),
            );
        }
        let mut body = ObjectBuilder::new()
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some("The fields to change; at least one, not null"));
        for (field, schema) in fields {
            body = body.property(field, nullable(schema));
        }
        AllOfBuilder::new().item(body).item(at_least_one).into()
    }
}

impl utoipa::ToSchema for PersonalInfoBody {}

fn birth_date() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .description(Some("Not after today."))
        .into()
}

fn nullable(schema: RefOr<Schema>) -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(schema)
        .into()
}

/// A comment has a text and nothing else has one (documented by its schema below).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityBody {
    action: String,
    object: String,
    text: Option<String>,
}

/// `ActivityBody`: a comment with its text, or another action without one.
impl utoipa::PartialSchema for ActivityBody {
    fn schema() -> RefOr<Schema> {
        let actions = |comment: bool| -> Vec<serde_json::Value> {
            Action::ALL
                .iter()
                .filter(|a| (**a == Action::Comment) == comment)
                .map(|a| serde_json::Value::from(a.name()))
                .collect()
        };
        let action = |names: Vec<serde_json::Value>| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names))
        };
        let comment = ObjectBuilder::new()
            .property("action", action(actions(true)))
            .property("object", ObjectName::schema())
            .property("text", Note::schema())
            .required("action")
            .required("object")
            .required("text")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let other = ObjectBuilder::new()
            .property("action", action(actions(false)))
            .property("object", ObjectName::schema())
            .property("text", ObjectBuilder::new().schema_type(Type::Null))
            .required("action")
            .required("object")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        OneOfBuilder::new().item(comment).item(other).into()
    }
}

impl utoipa::ToSchema for ActivityBody {}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FriendBody {
    #[schema(value_type = EntityId)]
    friend_id: String,
}

#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = RegisterBody,
    params(
        CommandHeaders
    ),
    responses(
        (status = 201, description = "Registered (a missing user_id is the token's subject; with authentication off, generated)", body = super::bodies::UserAccepted),
        CommandErrors,
    )
)]
async fn register(
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
    let command = UserCommand::Register {
        name: body.name,
        surname: body.surname,
        birth_date: date("birth_date", body.birth_date.as_deref())?,
    };
    run(
        &commands.of::<User>(),
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
        CommandHeaders,
        ("id" = inline(EntityId), Path, description = "The user")
    ),
    responses(
        (status = 200, description = "Changed", body = super::bodies::UserAccepted),
        CommandErrors,
    )
)]
async fn change_personal_info(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    UserPath(user_id): UserPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<PersonalInfoBody>,
) -> Result<Response, ApiError> {
    let command = UserCommand::ChangePersonalInfo {
        name: body.name,
        surname: body.surname,
        birth_date: date("birth_date", body.birth_date.as_deref())?,
    };
    run(
        &commands.of::<User>(),
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
        CommandHeaders,
        ("id" = inline(EntityId), Path, description = "The user")
    ),
    responses(
        (status = 200, description = "Recorded", body = super::bodies::UserAccepted),
        CommandErrors,
    )
)]
async fn act(
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
    let command = UserCommand::Act {
        action,
        object: body.object,
        text: body.text,
    };
    run(
        &commands.of::<User>(),
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
        CommandHeaders,
        ("id" = inline(EntityId), Path, description = "The user")
    ),
    responses(
        (status = 200, description = "Added (the friend's side follows through the friendship policy)", body = super::bodies::UserAccepted),
        CommandErrors,
    )
)]
async fn add_friend(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    UserPath(user_id): UserPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody<FriendBody>,
) -> Result<Response, ApiError> {
    let command = UserCommand::AddFriend {
        friend_id: super::paths::user_id(&body.friend_id)?,
        reciprocal: false,
    };
    run(
        &commands.of::<User>(),
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
        CommandHeaders,
        ("id" = inline(EntityId), Path, description = "The user"),
        ("friend_id" = inline(EntityId), Path, description = "The friend")
    ),
    responses(
        (status = 200, description = "Removed", body = super::bodies::UserAccepted),
        CommandErrors,
    )
)]
async fn remove_friend(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    FriendPath(user_id, friend_id): FriendPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = UserCommand::RemoveFriend {
        friend_id,
        reciprocal: false,
    };
    run(
        &commands.of::<User>(),
        &headers,
        actor,
        user_id,
        command,
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewGroupBody {
    /// Generated when absent (from the `Idempotency-Key` when given).
    #[schema(value_type = Option<EntityId>)]
    group_id: Option<String>,
    #[schema(value_type = GroupName)]
    name: String,
    #[schema(value_type = Capacity)]
    capacity: u32,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MemberBody {
    #[schema(value_type = EntityId)]
    user_id: String,
}

#[utoipa::path(
    post,
    path = "/groups",
    tag = "groups",
    request_body = NewGroupBody,
    params(
        CommandHeaders
    ),
    responses(
        (status = 201, description = "Created (a missing group_id is generated)", body = super::bodies::GroupAccepted),
        CommandErrors,
    )
)]
async fn create_group(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewGroupBody>,
) -> Result<Response, ApiError> {
    let group_id = match &body.group_id {
        Some(raw) => entity_id(<GroupEvent as Resource>::INVALID_ID, raw)?,
        None => generated_id(&headers)?,
    };
    let command = GroupCommand::Create {
        name: body.name,
        capacity: body.capacity,
    };
    run(
        &commands.of::<Group>(),
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
        CommandHeaders,
        ("id" = inline(EntityId), Path, description = "The group")
    ),
    responses(
        (status = 200, description = "Added", body = super::bodies::GroupAccepted),
        CommandErrors,
    )
)]
async fn add_member(
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
        &commands.of::<Group>(),
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
        CommandHeaders,
        ("id" = inline(EntityId), Path, description = "The group"),
        ("user_id" = inline(EntityId), Path, description = "The member")
    ),
    responses(
        (status = 200, description = "Removed", body = super::bodies::GroupAccepted),
        CommandErrors,
    )
)]
async fn remove_member(
    State(commands): State<Arc<Commands>>,
    Caller(actor): Caller,
    MemberPath(group_id, user_id): MemberPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let command = GroupCommand::RemoveMember { user_id };
    run(
        &commands.of::<Group>(),
        &headers,
        actor,
        group_id,
        command,
        StatusCode::OK,
    )
    .await
}
