//! How the routes name each aggregate's resources: written once for the command and the query
//! side, keyed by the aggregate's events.

use esr_schema::{DomainEvent, GroupEvent, UserEvent};

pub trait Resource: DomainEvent {
    /// Where the resources live: `Location` of a created one.
    const PATH: &'static str;
    /// The 404 code for an id with no stream.
    const UNKNOWN: &'static str;
    /// The 422 code for an id that is not one.
    const INVALID_ID: &'static str;

    /// `user`, `group`: in messages.
    fn noun() -> &'static str;

    /// `user_id`, `group_id`: in answers, as in stream entries.
    fn id_field() -> String {
        esr_schema::entry::id_field(&Self::AGGREGATE)
    }
}

impl Resource for UserEvent {
    const PATH: &'static str = "/users";
    const UNKNOWN: &'static str = "unknown_user";
    const INVALID_ID: &'static str = "invalid_user_id";
    fn noun() -> &'static str {
        "user"
    }
}

impl Resource for GroupEvent {
    const PATH: &'static str = "/groups";
    const UNKNOWN: &'static str = "unknown_group";
    const INVALID_ID: &'static str = "invalid_group_id";
    fn noun() -> &'static str {
        "group"
    }
}
