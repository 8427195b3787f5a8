//! The social routes' answer bodies besides the views (whose schemas come from their own types,
//! `Profile` and `GroupView`), for the OpenAPI document; a test holds them to what the routes
//! really answer.

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::openapi::EventBody;

/// A command accepted on a user: the stream's version after it.
#[derive(Serialize, ToSchema)]
pub struct UserAccepted {
    pub user_id: String,
    pub version: u64,
}

/// A command accepted on a group.
#[derive(Serialize, ToSchema)]
pub struct GroupAccepted {
    pub group_id: String,
    pub version: u64,
}

/// A page of a user's history; `next_from` is the next page's `from`, null at the end.
#[derive(Serialize, ToSchema)]
pub struct UserEventsPage {
    pub user_id: String,
    pub version: u64,
    pub events: Vec<EventBody>,
    pub next_from: Option<u64>,
}

/// A page of a group's history.
#[derive(Serialize, ToSchema)]
pub struct GroupEventsPage {
    pub group_id: String,
    pub version: u64,
    pub events: Vec<EventBody>,
    pub next_from: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ObjectLikes {
    pub object: String,
    pub likes: u64,
}
