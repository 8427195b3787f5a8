//! A read model or tally named like an aggregate type: its keys (`<name>:{pN}:<stream>`)
//! would meet that aggregate's streams (`<aggregate>:{pN}:<id>`), so the store refuses it.

#![allow(clippy::unwrap_used)]

mod support;

use esr_schema::{EntityId, StreamId, group::GROUP, user::USER};
use esr_store::{
    AppendRequest, EventStore, ExpectedVersion, ReadModel, ReadModels, StoreError, Tallies,
};

#[tokio::test]
async fn a_view_named_like_an_aggregate_type_is_refused_and_its_streams_stay_whole() {
    let (store, _server) = support::single().await;
    let user = StreamId::new(USER, EntityId::parse("g7").unwrap());
    let model = ReadModel {
        version: 1,
        fields: [("name".to_owned(), "x".to_owned())].into(),
    };
    // A view named `group` over user `g7` would write `group:{p0}:g7`: group g7's stream.
    let written = store.put_read_model("group", &user, 0, &model).await;
    assert!(
        matches!(&written, Err(StoreError::Invalid(reason)) if reason.contains("aggregate type")),
        "{written:?}"
    );
    let counted = store.tally_top("user", 10).await;
    assert!(
        matches!(counted, Err(StoreError::Invalid(_))),
        "{counted:?}"
    );
    let group = StreamId::new(GROUP, EntityId::parse("g7").unwrap());
    let appended = store
        .append(AppendRequest {
            stream: group,
            expected: ExpectedVersion::NoStream,
            events: vec![esr_store::contract::kick("x")],
            idempotency: None,
        })
        .await;
    assert!(appended.is_ok(), "{appended:?}");
}
