//! The social routes' path parameters, validated: ids of users and groups.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use esr_schema::{EntityId, GroupEvent, UserEvent, UserId};

use crate::http::{ApiError, Resource, entity_id, path};

/// A user's id, 422 `invalid_user_id` when it is not one.
pub fn user_id(raw: &str) -> Result<UserId, ApiError> {
    entity_id(<UserEvent as Resource>::INVALID_ID, raw)
}

/// The `{id}` of a user route, validated.
pub struct UserPath(pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for UserPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw: String = path(parts, state).await?;
        Ok(UserPath(user_id(&raw)?))
    }
}

/// The `{id}` and `{friend_id}` of a route, validated.
pub struct FriendPath(pub UserId, pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for FriendPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let (user, friend): (String, String) = path(parts, state).await?;
        Ok(FriendPath(user_id(&user)?, user_id(&friend)?))
    }
}

/// The `{id}` of a group route, validated.
pub struct GroupPath(pub EntityId);

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw: String = path(parts, state).await?;
        Ok(GroupPath(entity_id(
            <GroupEvent as Resource>::INVALID_ID,
            &raw,
        )?))
    }
}

/// The `{id}` and `{user_id}` of a group member route, validated.
pub struct MemberPath(pub EntityId, pub UserId);

impl<S: Send + Sync> FromRequestParts<S> for MemberPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let (group, user): (String, String) = path(parts, state).await?;
        Ok(MemberPath(
            entity_id(<GroupEvent as Resource>::INVALID_ID, &group)?,
            user_id(&user)?,
        ))
    }
}
