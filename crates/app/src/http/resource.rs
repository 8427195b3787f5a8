//! How the routes name each aggregate's resources: declared once per aggregate (beside its
//! module) for the command and the query side, keyed by the aggregate's events.

use esr_schema::DomainEvent;

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
