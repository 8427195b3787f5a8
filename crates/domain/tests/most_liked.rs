//! The most-liked tally: what each event counts.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use esr_domain::MostLiked;
use esr_kernel::scenario;
use esr_schema::{ActedOn, Action, EntityId, FriendAdded, Registered, UserEvent};

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
    insta::assert_yaml_snapshot!(scenario::counted::<MostLiked>("1", &history));
}
