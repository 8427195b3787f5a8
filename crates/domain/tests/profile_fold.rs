//! Given/when/then for the profile projection: given a history, then this profile.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, NaiveDate, Utc};
use esr_domain::Profile;
use esr_kernel::View;
use esr_schema::{
    ActedOn, Action, DomainEvent, EventEnvelope, FriendAdded, FriendRemoved, PersonalInfoChanged,
    Registered, StreamId, UserEvent, UserId,
};
use uuid::Uuid;

fn id(raw: &str) -> UserId {
    UserId::parse(raw).unwrap()
}

/// Fold `history` for user 1, one second apart from a fixed start, so snapshots are stable.
fn profile_after(history: &[UserEvent]) -> Profile {
    let start = DateTime::parse_from_rfc3339("2019-12-29T20:12:37Z")
        .unwrap()
        .with_timezone(&Utc);
    let mut profile = Profile::empty(id("1"));
    for (i, event) in history.iter().enumerate() {
        let envelope = EventEnvelope {
            event_id: Uuid::nil(),
            stream: StreamId::of::<UserEvent>(id("1")),
            version: i as u64 + 1,
            event_type: event.event_type().into(),
            schema_version: 1,
            occurred_at: start + chrono::Duration::seconds(i as i64),
            correlation_id: "test".into(),
            causation_id: "test".into(),
            actor: None,
        };
        profile.apply(&envelope, event);
    }
    profile
}

fn registered() -> UserEvent {
    UserEvent::Registered(Registered {
        name: "Duffy".into(),
        surname: "Duck".into(),
        birth_date: None,
    })
}

fn acted(action: Action, object: &str) -> UserEvent {
    UserEvent::ActedOn(ActedOn {
        action,
        object: object.into(),
        text: None,
    })
}

#[test]
fn registered_fills_personal_info() {
    insta::assert_yaml_snapshot!(profile_after(&[registered()]));
}

#[test]
fn personal_info_change_keeps_fields_it_does_not_name() {
    insta::assert_yaml_snapshot!(profile_after(&[
        registered(),
        UserEvent::PersonalInfoChanged(PersonalInfoChanged {
            birth_date: NaiveDate::from_ymd_opt(1937, 4, 17),
            ..Default::default()
        }),
    ]));
}

#[test]
fn like_adds_to_liked_and_dislike_takes_it_back() {
    insta::assert_yaml_snapshot!(profile_after(&[
        registered(),
        acted(Action::Like, "carrots"),
        acted(Action::Like, "Elmer"),
        acted(Action::Dislike, "Elmer"),
    ]));
}

/// The liked list is bounded: the most recent likes still standing, newest first; an older
/// like falls off once the list is full, and liking again brings an object to the front.
#[test]
fn liked_keeps_the_most_recent_likes_newest_first_up_to_its_bound() {
    let bound = Profile::MAX_LIKED;
    let mut history = vec![registered()];
    history.extend((0..bound + 50).map(|i| acted(Action::Like, &format!("o{i}"))));
    let profile = profile_after(&history);
    assert_eq!(profile.liked.len(), bound);
    assert_eq!(profile.liked[0], format!("o{}", bound + 49));
    assert_eq!(profile.liked[bound - 1], "o50");
    assert!(!profile.liked.contains(&"o49".to_owned()));
    assert_eq!(profile.activity_count, bound as u64 + 50);

    history.push(acted(Action::Like, "o60"));
    history.push(acted(Action::Dislike, &format!("o{}", bound + 49)));
    let profile = profile_after(&history);
    assert_eq!(profile.liked[0], "o60");
    assert_eq!(profile.liked.len(), bound - 1);
    assert_eq!(
        profile.liked.iter().filter(|o| *o == "o60").count(),
        1,
        "an object is listed once"
    );
}

#[test]
fn the_posts_scenario_for_user_1() {
    insta::assert_yaml_snapshot!(profile_after(&[
        registered(),
        acted(Action::Kick, "Bugs"),
        acted(Action::Dislike, "Bugs face"),
        UserEvent::FriendAdded(FriendAdded {
            friend_id: id("2"),
            reciprocal: false
        }),
        UserEvent::FriendRemoved(FriendRemoved {
            friend_id: id("2"),
            reciprocal: false
        }),
    ]));
}

#[test]
fn friends_from_both_directions() {
    insta::assert_yaml_snapshot!(profile_after(&[
        registered(),
        UserEvent::FriendAdded(FriendAdded {
            friend_id: id("2"),
            reciprocal: false
        }),
        UserEvent::FriendAdded(FriendAdded {
            friend_id: id("3"),
            reciprocal: true
        }),
    ]));
}

#[test]
fn read_model_fields_round_trip_and_read_plainly() {
    let profile = profile_after(&[
        registered(),
        acted(Action::Like, "carrots, \"fresh\""),
        UserEvent::FriendAdded(FriendAdded {
            friend_id: id("2"),
            reciprocal: false,
        }),
    ]);
    let fields = profile.to_fields();
    assert_eq!(Profile::from_fields(&id("1"), &fields), Ok(profile));
    insta::assert_yaml_snapshot!(fields);
}

#[test]
fn corrupt_read_model_fields_are_a_typed_error() {
    let good = profile_after(&[registered()]).to_fields();
    let mut fields = good.clone();
    fields.insert("friends".into(), "[not json".into());
    assert_eq!(
        Profile::from_fields(&id("1"), &fields).map_err(|e| e.field),
        Err("friends")
    );
    let mut fields = good;
    fields.insert("version".into(), "seven".into());
    assert_eq!(
        Profile::from_fields(&id("1"), &fields).map_err(|e| e.field),
        Err("version")
    );
}

/// A profile stored by a build whose profile had fewer fields (here: before `liked`,
/// `activity_count` and `last_activity` existed) still reads, with those at their defaults.
#[test]
fn a_profile_stored_before_a_field_existed_still_reads() {
    let full = profile_after(&[registered()]);
    let mut older = full.to_fields();
    for added_later in ["liked", "activity_count", "last_activity"] {
        older.remove(added_later);
    }
    assert_eq!(Profile::from_fields(&id("1"), &older), Ok(full));
}
