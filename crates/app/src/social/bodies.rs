//! The social routes' answer bodies besides the views (whose schemas come from their own types,
//! `Profile` and `GroupView`), for the OpenAPI document; a test holds them to what the routes
//! really answer.

use serde::Serialize;
use utoipa::ToSchema;

use crate::bounded_text_schema;
use crate::http::openapi::EventBody;

bounded_text_schema!(
    /// A user's name or surname.
    pub Name,
    esr_domain::user::MAX_NAME_CHARS
);
bounded_text_schema!(
    /// What an activity is done to.
    pub ObjectName,
    esr_domain::user::MAX_OBJECT_CHARS
);
bounded_text_schema!(
    /// An activity's text.
    pub Note,
    esr_domain::user::MAX_TEXT_CHARS
);
bounded_text_schema!(
    /// A group's name.
    pub GroupName,
    esr_domain::group::MAX_GROUP_NAME_CHARS
);

/// A group's capacity, as `decide` bounds it.
pub struct Capacity;

impl utoipa::PartialSchema for Capacity {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(esr_domain::group::MAX_CAPACITY))
            .into()
    }
}

impl ToSchema for Capacity {}

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
