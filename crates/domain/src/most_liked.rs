//! Most-liked objects: every `like` on an object counted once, across all users. The proof
//! that a read model spanning many streams keeps an exactly-once effect.

use esr_kernel::Tally;
use esr_schema::user::USER_ACTIVITY;
use esr_schema::{Action, Category, EventEnvelope, UserEvent};

pub struct MostLiked;

impl Tally for MostLiked {
    type Event = UserEvent;
    const NAME: &'static str = "most_liked";

    fn categories() -> &'static [Category] {
        const READS: &[Category] = &[USER_ACTIVITY];
        READS
    }

    fn count(_envelope: &EventEnvelope, event: &UserEvent) -> Vec<(String, i64)> {
        match event {
            UserEvent::ActedOn(e) if e.action == Action::Like => vec![(e.object.clone(), 1)],
            _ => vec![],
        }
    }
}
