//! The most-liked tally: what each event counts.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use esr_domain::MostLiked;
use esr_kernel::Tally;
use esr_schema::{
    ActedOn, Action, DomainEvent, EntityId, EventEnvelope, FriendAdded, Registered, StreamId,
    UserEvent,
};
use uuid::Uuid;

fn envelope(event: &UserEvent) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::nil(),
        stream: StreamId::of::<UserEvent>(EntityId::parse("1").unwrap()),
        version: 1,
        event_type: event.event_type().into(),
        schema_version: 1,
        occurred_at: DateTime::<Utc>::UNIX_EPOCH,
        correlation_id: String::new(),
        causation_id: String::new(),
        actor: None,
    }
}

#[test]
fn only_likes_count_one_each() {
    let act = |action, object: &str| {
        UserEvent::ActedOn(ActedOn {
            action,
            object: object.into(),
            text: (action == Action::Comment).then(|| "nice".to_owned()),
        })
    };
    let history = vec![
        UserEvent::Registered(Registered {
            name: "Duffy".into(),
            surname: "Duck".into(),
            birth_date: None,
        }),
        act(Action::Like, "carrots"),
        act(Action::Dislike, "carrots"),
        act(Action::Like, "carrots"),
        act(Action::Kick, "Bugs"),
        act(Action::Comment, "post-7"),
        act(Action::Share, "post-7"),
        act(Action::Like, "post-7"),
        UserEvent::FriendAdded(FriendAdded {
            friend_id: EntityId::parse("2").unwrap(),
            reciprocal: false,
        }),
    ];
    let counted: Vec<(String, i64)> = history
        .iter()
        .flat_map(|event| MostLiked::count(&envelope(event), event))
        .collect();
    insta::assert_yaml_snapshot!(counted);
}
