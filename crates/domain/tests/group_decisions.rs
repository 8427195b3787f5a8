//! Given/when/then for the `Group` aggregate, and its view's fold. Each case is an insta
//! snapshot small enough to review.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::NaiveDate;
use esr_domain::{Group, GroupCommand, GroupView};
use esr_kernel::scenario::{self, Case};
use esr_kernel::{Actor, View};
use esr_schema::{
    EntityId, GroupCreated, GroupEvent, MemberJoined, MemberLeft, StreamId, UserEvent,
};

fn id(raw: &str) -> EntityId {
    EntityId::parse(raw).unwrap()
}

/// User 1 makes the command: the owner of the groups `created` makes.
fn given(history: Vec<GroupEvent>, when: GroupCommand) -> Case<Group> {
    given_by(Actor::user("1", []), history, when)
}

/// The kernel's given/when/then on group "looney", users 1, 2 and 3 registered ("ghost" is
/// not), today 2026-11-26.
fn given_by(by: Actor, history: Vec<GroupEvent>, when: GroupCommand) -> Case<Group> {
    let mut given = scenario::given::<Group>(history)
        .by(by)
        .today(NaiveDate::from_ymd_opt(2026, 11, 26).unwrap());
    for user in ["1", "2", "3"] {
        given = given.existing(StreamId::of::<UserEvent>(id(user)));
    }
    given.when("looney", when)
}

fn created(capacity: u32) -> GroupEvent {
    GroupCreated {
        name: "Looney Tunes".into(),
        capacity,
        owner: Some(id("1")),
    }
    .into()
}

fn joined(user: &str) -> GroupEvent {
    MemberJoined { user_id: id(user) }.into()
}

fn join(user: &str) -> GroupCommand {
    GroupCommand::AddMember { user_id: id(user) }
}

fn create(name: &str, capacity: u32) -> GroupCommand {
    GroupCommand::Create {
        name: name.into(),
        capacity,
    }
}

#[test]
fn create_a_group() {
    insta::assert_debug_snapshot!(given(vec![], create("  Looney Tunes ", 2)));
}

#[test]
fn create_twice_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![created(2)], create("Again", 2)));
}

#[test]
fn capacity_outside_1_to_10000_is_rejected() {
    insta::assert_debug_snapshot!((
        given(vec![], create("Empty", 0)),
        given(vec![], create("Huge", 10_001))
    ));
}

#[test]
fn a_registered_user_joins() {
    insta::assert_debug_snapshot!(given(vec![created(2)], join("1")));
}

#[test]
fn joining_an_unknown_group_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![], join("1")));
}

#[test]
fn an_unregistered_user_cannot_join() {
    insta::assert_debug_snapshot!(given(vec![created(2)], join("ghost")));
}

#[test]
fn a_full_group_takes_nobody_more() {
    insta::assert_debug_snapshot!(given(vec![created(2), joined("1"), joined("2")], join("3")));
}

#[test]
fn taking_the_last_place_fills_the_group() {
    insta::assert_debug_snapshot!(given(vec![created(2), joined("1")], join("2")));
}

#[test]
fn joining_twice_is_rejected() {
    insta::assert_debug_snapshot!(given(vec![created(2), joined("1")], join("1")));
}

#[test]
fn a_member_leaves_and_a_non_member_cannot() {
    let leave = |user: &str| GroupCommand::RemoveMember { user_id: id(user) };
    insta::assert_debug_snapshot!((
        given(vec![created(2), joined("1")], leave("1")),
        given(vec![created(2), joined("1")], leave("2"))
    ));
}

fn leave(user: &str) -> GroupCommand {
    GroupCommand::RemoveMember { user_id: id(user) }
}

#[test]
fn the_creator_owns_the_group() {
    insta::assert_debug_snapshot!(given_by(Actor::user("2", []), vec![], create("Twos", 5)));
}

#[test]
fn a_user_joins_and_leaves_themself() {
    let by_2 = |history, command| given_by(Actor::user("2", []), history, command);
    insta::assert_debug_snapshot!((
        by_2(vec![created(5)], join("2")),
        by_2(vec![created(5), joined("2")], leave("2")),
    ));
}

#[test]
fn only_the_owner_or_an_admin_adds_or_removes_others() {
    let by_2 = |history, command| given_by(Actor::user("2", []), history, command);
    let admin = Actor::user("root", ["admin".to_owned()]);
    insta::assert_debug_snapshot!((
        by_2(vec![created(5)], join("3")),
        by_2(vec![created(5), joined("3")], leave("3")),
        given(vec![created(5), joined("3")], leave("3")),
        given_by(admin, vec![created(5)], join("3")),
    ));
}

#[test]
fn a_group_created_before_owners_were_recorded_is_managed_by_admins_only() {
    let ownerless: GroupEvent = GroupCreated {
        name: "Old".into(),
        capacity: 5,
        owner: None,
    }
    .into();
    insta::assert_debug_snapshot!((
        given(vec![ownerless.clone()], join("3")),
        given(vec![ownerless], join("1")),
    ));
}

#[test]
fn the_group_view_folds_members_sorted_and_reads_back_from_its_fields() {
    let history = [
        created(3),
        joined("3"),
        joined("1"),
        joined("2"),
        MemberLeft { user_id: id("3") }.into(),
    ];
    let view: GroupView = scenario::folded("looney", &history);
    let fields = view.to_fields();
    assert_eq!(
        GroupView::from_fields(&id("looney"), &fields),
        Ok(view.clone())
    );
    insta::assert_yaml_snapshot!((view, fields));
}
