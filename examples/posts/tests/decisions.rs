//! Given/when/then for `Post`, and its view's fold, as insta snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use esr_kernel::scenario::{folded, given};
use esr_kernel::{Actor, View};
use esr_posts::events::{PostDeleted, PostEdited, PostPublished, PostRestored};
use esr_posts::{Post, PostCommand, PostEvent, PostView};
use esr_schema::{EntityId, StreamId, UserEvent};

fn id(raw: &str) -> EntityId {
    EntityId::parse(raw).unwrap()
}

fn ann() -> Actor {
    Actor::user("ann", [])
}

fn published() -> PostEvent {
    PostPublished {
        author: id("ann"),
        title: "Hello".into(),
        body: "First post".into(),
    }
    .into()
}

fn publish(author: &str) -> PostCommand {
    PostCommand::Publish {
        author: id(author),
        title: " Hello ".into(),
        body: "First post".into(),
    }
}

#[test]
fn a_registered_author_publishes() {
    insta::assert_debug_snapshot!(
        given::<Post>(vec![])
            .by(ann())
            .existing(StreamId::of::<UserEvent>(id("ann")))
            .when("p1", publish("ann"))
    );
}

#[test]
fn an_unregistered_author_is_refused() {
    insta::assert_debug_snapshot!(given::<Post>(vec![]).by(ann()).when("p1", publish("ann")));
}

#[test]
fn nobody_publishes_as_someone_else() {
    insta::assert_debug_snapshot!(
        given::<Post>(vec![])
            .by(Actor::user("bo", []))
            .existing(StreamId::of::<UserEvent>(id("ann")))
            .when("p1", publish("ann"))
    );
}

#[test]
fn the_author_edits_and_another_user_may_not() {
    let edit = || PostCommand::Edit {
        title: Some("Hello again".into()),
        body: None,
    };
    insta::assert_debug_snapshot!(
        given::<Post>(vec![published()])
            .by(ann())
            .when("p1", edit())
    );
    insta::assert_debug_snapshot!(
        given::<Post>(vec![published()])
            .by(Actor::user("bo", []))
            .when("p1", edit())
    );
}

#[test]
fn a_deleted_post_is_not_edited_and_deleting_again_changes_nothing() {
    let history = vec![published(), PostDeleted {}.into()];
    insta::assert_debug_snapshot!(given::<Post>(history.clone()).by(ann()).when(
        "p1",
        PostCommand::Edit {
            title: None,
            body: Some("x".into())
        }
    ));
    insta::assert_debug_snapshot!(
        given::<Post>(history)
            .by(ann())
            .when("p1", PostCommand::Delete)
    );
}

#[test]
fn the_author_restores_a_deleted_post_and_nobody_else_may() {
    let history = vec![published(), PostDeleted {}.into()];
    insta::assert_debug_snapshot!(
        given::<Post>(history.clone())
            .by(ann())
            .when("p1", PostCommand::Restore)
    );
    insta::assert_debug_snapshot!(
        given::<Post>(history)
            .by(Actor::user("bo", []))
            .when("p1", PostCommand::Restore)
    );
}

#[test]
fn a_title_over_its_limit_is_invalid() {
    insta::assert_debug_snapshot!(given::<Post>(vec![published()]).by(ann()).when(
        "p1",
        PostCommand::Edit {
            title: Some("t".repeat(201)),
            body: None
        }
    ));
}

#[test]
fn the_view_folds_publish_edits_delete_and_restore() {
    let events: Vec<PostEvent> = vec![
        published(),
        PostEdited {
            title: None,
            body: Some("Edited".into()),
        }
        .into(),
        PostDeleted {}.into(),
        PostRestored {}.into(),
    ];
    let view: PostView = folded("p1", &events);
    let stored = view.to_fields();
    assert_eq!(PostView::from_fields(&id("p1"), &stored).unwrap(), view);
    insta::assert_debug_snapshot!(view);
}
