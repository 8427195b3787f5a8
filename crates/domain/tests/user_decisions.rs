//! Given/when/then for the `User` aggregate: given past events, when a command arrives, then
//! these events (or this rejection). Each case is an insta snapshot small enough to review.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::NaiveDate;
use esr_domain::{User, UserCommand, UserRejection};
use esr_kernel::scenario::{self, Case};
use esr_kernel::{Actor, Aggregate};
use esr_schema::{
    ActedOn, Action, FriendAdded, FriendRemoved, PersonalInfoChanged, Registered, StreamId,
    UserEvent, UserId,
};

/// The kernel's given/when/then, with this file's defaults: user 1 makes the command on its
/// own stream, today is 2026-11-26, and users 2 and 3 are registered unless a case says which.
fn given(history: Vec<UserEvent>) -> Given {
    Given(
        scenario::given::<User>(history)
            .by(Actor::user("1", []))
            .today(date(2026, 11, 26)),
    )
}

struct Given(scenario::Given<User>);

impl Given {
    fn by(self, actor: Actor) -> Given {
        Given(self.0.by(actor))
    }

    /// Users 2 and 3 are registered.
    fn when(self, command: UserCommand) -> Case<User> {
        self.when_registered(&["2", "3"], command)
    }

    fn when_registered(self, others: &[&'static str], command: UserCommand) -> Case<User> {
        let mut given = self.0;
        for other in others {
            given = given.existing(StreamId::of::<UserEvent>(id(other)));
        }
        given.when("1", command)
    }
}

fn id(raw: &str) -> UserId {
    UserId::parse(raw).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn registered() -> UserEvent {
    UserEvent::Registered(Registered {
        name: "Duffy".into(),
        surname: "Duck".into(),
        birth_date: Some(date(1937, 4, 17)),
    })
}

fn friend_added(friend: &str) -> UserEvent {
    UserEvent::FriendAdded(FriendAdded {
        friend_id: id(friend),
        reciprocal: false,
    })
}

fn register(name: &str, surname: &str, birth_date: Option<NaiveDate>) -> UserCommand {
    UserCommand::Register {
        name: name.into(),
        surname: surname.into(),
        birth_date,
    }
}

fn act(action: Action, object: &str, text: Option<&str>) -> UserCommand {
    UserCommand::Act {
        action,
        object: object.into(),
        text: text.map(Into::into),
    }
}

fn add_friend(friend: &str, reciprocal: bool) -> UserCommand {
    UserCommand::AddFriend {
        friend_id: id(friend),
        reciprocal,
    }
}

fn remove_friend(friend: &str, reciprocal: bool) -> UserCommand {
    UserCommand::RemoveFriend {
        friend_id: id(friend),
        reciprocal,
    }
}

#[test]
fn register_a_new_user() {
    insta::assert_debug_snapshot!(given(vec![]).when(register(
        " Duffy ",
        "Duck",
        Some(date(1937, 4, 17))
    )));
}

#[test]
fn register_twice_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(register("Duffy", "Duck", None)));
}

#[test]
fn register_with_an_empty_name_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![]).when(register("  ", "Duck", None)));
}

#[test]
fn register_with_a_name_over_100_characters_is_rejected() {
    let scenario = given(vec![]).when(register(&"D".repeat(101), "Duck", None));
    assert!(matches!(
        scenario.then(),
        Err(UserRejection::InvalidField { field: "name", .. })
    ));
    insta::assert_debug_snapshot!(scenario.then());
}

#[test]
fn register_born_in_the_future_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![]).when(register(
        "Duffy",
        "Duck",
        Some(date(2030, 1, 1))
    )));
}

#[test]
fn change_personal_info_records_only_what_differs() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(
        UserCommand::ChangePersonalInfo {
            name: Some("Daffy".into()),
            surname: Some("Duck".into()),
            birth_date: None,
        }
    ));
}

#[test]
fn change_personal_info_to_the_current_values_changes_nothing() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(
        UserCommand::ChangePersonalInfo {
            name: Some("Duffy".into()),
            surname: None,
            birth_date: Some(date(1937, 4, 17)),
        }
    ));
}

#[test]
fn change_personal_info_with_no_field_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(
        UserCommand::ChangePersonalInfo {
            name: None,
            surname: None,
            birth_date: None,
        }
    ));
}

#[test]
fn change_personal_info_of_an_unregistered_user_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![]).when(UserCommand::ChangePersonalInfo {
        name: Some("Daffy".into()),
        surname: None,
        birth_date: None,
    }));
}

#[test]
fn kick_an_object() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(act(Action::Kick, "Bugs", None)));
}

#[test]
fn comment_with_a_text() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(act(
        Action::Comment,
        "post-7",
        Some("Sufferin' succotash")
    )));
}

#[test]
fn comment_without_a_text_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(act(
        Action::Comment,
        "post-7",
        None
    )));
}

#[test]
fn like_with_a_text_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(act(
        Action::Like,
        "post-7",
        Some("nice")
    )));
}

#[test]
fn an_object_with_control_characters_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(act(
        Action::Like,
        "post\n7",
        None
    )));
}

#[test]
fn act_as_an_unregistered_user_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![]).when(act(Action::Kick, "Bugs", None)));
}

#[test]
fn add_a_registered_friend() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(add_friend("2", false)));
}

#[test]
fn befriending_yourself_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(add_friend("1", false)));
}

#[test]
fn befriending_an_unregistered_user_is_rejected() {
    insta::assert_debug_snapshot!(
        given(vec![registered()]).when_registered(&["3"], add_friend("2", false))
    );
}

#[test]
fn adding_an_existing_friend_is_rejected() {
    insta::assert_debug_snapshot!(
        given(vec![registered(), friend_added("2")]).when(add_friend("2", false))
    );
}

#[test]
fn the_policy_mirroring_an_existing_friendship_changes_nothing() {
    insta::assert_debug_snapshot!(
        given(vec![registered(), friend_added("2")])
            .by(policy_of_user_2())
            .when(add_friend("2", true))
    );
}

#[test]
fn remove_a_friend() {
    insta::assert_debug_snapshot!(
        given(vec![registered(), friend_added("2")]).when(remove_friend("2", false))
    );
}

#[test]
fn removing_a_non_friend_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(remove_friend("2", false)));
}

#[test]
fn the_policy_mirroring_a_removal_already_done_changes_nothing() {
    insta::assert_debug_snapshot!(
        given(vec![
            registered(),
            friend_added("2"),
            UserEvent::FriendRemoved(FriendRemoved {
                friend_id: id("2"),
                reciprocal: false
            }),
        ])
        .by(policy_of_user_2())
        .when(remove_friend("2", true))
    );
}

/// The friendship policy mirroring user 2's change.
fn policy_of_user_2() -> Actor {
    Actor::system(Some("user:2".into()))
}

fn admin() -> Actor {
    Actor::user("root", ["admin".to_owned()])
}

#[test]
fn a_user_cannot_change_another_user() {
    insta::assert_debug_snapshot!(given(vec![registered()]).by(Actor::user("2", [])).when(
        UserCommand::ChangePersonalInfo {
            name: Some("Evil".into()),
            surname: None,
            birth_date: None,
        }
    ));
}

#[test]
fn a_user_cannot_register_under_another_id() {
    insta::assert_debug_snapshot!(
        given(vec![])
            .by(Actor::user("2", []))
            .when(register("Duffy", "Duck", None))
    );
}

#[test]
fn a_user_cannot_act_or_befriend_for_another_user_even_an_unregistered_one() {
    let by_2 = |command| given(vec![]).by(Actor::user("2", [])).when(command);
    insta::assert_debug_snapshot!([
        by_2(act(Action::Like, "carrots", None)),
        by_2(add_friend("3", false)),
        by_2(remove_friend("3", false)),
    ]);
}

#[test]
fn a_user_cannot_write_the_mirror_side_of_a_friendship() {
    insta::assert_debug_snapshot!(given(vec![registered()]).when(add_friend("2", true)));
}

#[test]
fn an_admin_acts_on_anyone() {
    insta::assert_debug_snapshot!([
        given(vec![])
            .by(admin())
            .when(register("Duffy", "Duck", None)),
        given(vec![registered()])
            .by(admin())
            .when(act(Action::Kick, "can", None)),
        given(vec![registered(), friend_added("2")])
            .by(admin())
            .when(remove_friend("2", true)),
    ]);
}

#[test]
fn history_is_read_by_its_user_or_an_admin() {
    let readers = [
        Actor::user("1", []),
        Actor::user("2", []),
        admin(),
        Actor::Anonymous,
    ];
    let may: Vec<(String, bool)> = readers
        .iter()
        .map(|actor| {
            (
                actor.recorded(),
                esr_domain::may_read_history(actor, &id("1")),
            )
        })
        .collect();
    insta::assert_debug_snapshot!(may);
}

#[test]
fn with_authentication_off_anyone_may_act() {
    insta::assert_debug_snapshot!(
        given(vec![registered()])
            .by(Actor::Anonymous)
            .when(add_friend("3", false))
    );
}

#[test]
fn evolve_counts_every_event_as_one_version() {
    let history = vec![
        registered(),
        UserEvent::PersonalInfoChanged(PersonalInfoChanged {
            name: Some("Daffy".into()),
            ..Default::default()
        }),
        UserEvent::ActedOn(ActedOn {
            action: Action::Like,
            object: "carrots".into(),
            text: None,
        }),
        friend_added("2"),
    ];
    insta::assert_debug_snapshot!(User::from_history(&history));
}
