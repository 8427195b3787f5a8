//! The social routes' answer bodies, for the OpenAPI document; a test holds them to what the
//! routes really answer.

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

/// A user's profile, as the projector folded it.
#[derive(Serialize, ToSchema)]
pub struct ProfileBody {
    pub user_id: String,
    pub name: String,
    pub surname: String,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    pub friends: Vec<String>,
    /// The most recent likes, newest first, at most 100.
    pub liked: Vec<String>,
    pub activity_count: u64,
    pub last_activity: Option<LastActivityBody>,
    pub version: u64,
}

#[derive(Serialize, ToSchema)]
pub struct LastActivityBody {
    pub action: String,
    pub object: String,
    /// RFC 3339.
    pub at: String,
}

/// A group, as the projector folded it.
#[derive(Serialize, ToSchema)]
pub struct GroupBody {
    pub group_id: String,
    pub name: String,
    pub capacity: u32,
    pub members: Vec<String>,
    pub member_count: u64,
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
