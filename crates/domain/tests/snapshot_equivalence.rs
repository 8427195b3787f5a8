//! Property: folding a history in one go equals folding its first part, snapshotting (through
//! the real snapshot encoding), and folding the rest from the snapshot.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, NaiveDate, Utc};
use esr_domain::{Profile, User};
use esr_kernel::{Aggregate, View};
use esr_schema::{
    ActedOn, Action, DomainEvent, EventEnvelope, FriendAdded, FriendRemoved, PersonalInfoChanged,
    Registered, StreamId, UserEvent, UserId,
};
use proptest::prelude::*;
use uuid::Uuid;

fn user_id() -> impl Strategy<Value = UserId> {
    "[a-c0-2]{1,2}".prop_map(|s| UserId::parse(&s).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z ]{0,8}"
}

fn date() -> impl Strategy<Value = Option<NaiveDate>> {
    proptest::option::of(
        (1900i32..2026, 1u32..13, 1u32..29)
            .prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap()),
    )
}

fn event() -> impl Strategy<Value = UserEvent> {
    prop_oneof![
        (text(), text(), date()).prop_map(|(name, surname, birth_date)| UserEvent::Registered(
            Registered {
                name,
                surname,
                birth_date
            }
        )),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            date()
        )
            .prop_map(
                |(name, surname, birth_date)| UserEvent::PersonalInfoChanged(PersonalInfoChanged {
                    name,
                    surname,
                    birth_date
                })
            ),
        (
            proptest::sample::select(Action::ALL.to_vec()),
            text(),
            proptest::option::of(text())
        )
            .prop_map(|(action, object, text)| UserEvent::ActedOn(ActedOn {
                action,
                object,
                text
            })),
        (user_id(), any::<bool>()).prop_map(|(friend_id, reciprocal)| UserEvent::FriendAdded(
            FriendAdded {
                friend_id,
                reciprocal
            }
        )),
        (user_id(), any::<bool>()).prop_map(|(friend_id, reciprocal)| UserEvent::FriendRemoved(
            FriendRemoved {
                friend_id,
                reciprocal
            }
        )),
    ]
}

fn envelope(version: u64, event: &UserEvent) -> EventEnvelope {
    EventEnvelope {
        event_id: Uuid::nil(),
        stream: StreamId::of::<UserEvent>(UserId::parse("me").unwrap()),
        version,
        event_type: event.event_type().into(),
        schema_version: 1,
        occurred_at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(version as i64),
        correlation_id: String::new(),
        causation_id: String::new(),
        actor: None,
    }
}

fn fold_profile(mut profile: Profile, events: &[UserEvent], first_version: u64) -> Profile {
    for (i, event) in events.iter().enumerate() {
        profile.apply(&envelope(first_version + i as u64, event), event);
    }
    profile
}

proptest! {
    #[test]
    fn user_snapshot_then_rest_equals_full_fold(
        history in proptest::collection::vec(event(), 0..40),
        cut in any::<proptest::sample::Index>(),
    ) {
        let split = cut.index(history.len() + 1);
        let full = User::from_history(&history);

        let prefix = User::from_history(&history[..split]);
        let mut resumed = User::from_snapshot(&prefix.to_snapshot().unwrap()).unwrap();
        for event in &history[split..] {
            resumed.evolve(event);
        }
        prop_assert_eq!(resumed, full);
    }

    #[test]
    fn profile_snapshot_then_rest_equals_full_fold(
        history in proptest::collection::vec(event(), 0..40),
        cut in any::<proptest::sample::Index>(),
    ) {
        let split = cut.index(history.len() + 1);
        let me = UserId::parse("me").unwrap();
        let full = fold_profile(Profile::empty(me.clone()), &history, 1);

        let prefix = fold_profile(Profile::empty(me), &history[..split], 1);
        let stored = Profile::from_fields(&prefix.user_id, &prefix.to_fields()).unwrap();
        let resumed = fold_profile(stored, &history[split..], split as u64 + 1);
        prop_assert_eq!(resumed, full);
    }
}
