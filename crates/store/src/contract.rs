//! The contract every adapter must pass, written once.
//!
//! An adapter's tests run it with [`contract_suite!`](crate::contract_suite), giving a future
//! of a store and a guard kept alive for the case (a server, say, or `()`):
//!
//! ```text
//! esr_store::contract_suite!(async { (esr_store::MemoryStore::new(), ()) });
//! ```
//!
//! Each case uses fresh user ids and its own group names, so cases may share one server.
// The cases are tests: a failed `unwrap` is a failed assertion with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use esr_schema::entry::Fields;
use esr_schema::user::{USER, USER_ACTIVITY, USER_FRIENDS, USER_UPDATES};
use esr_schema::{
    ActedOn, Action, Category, DomainEvent, EntityId, StoredEvent, StreamId, UserEvent, codec,
};
use uuid::Uuid;

use crate::{
    AppendOutcome, AppendRequest, EntryId, EventStore, ExpectedVersion, Fence, Idempotency,
    NewEvent, ReadModel, ReadModelWrite, Snapshot, Store, StoreError, TallyCount, TallyWrite,
};

/// Lets the suite write an entry the way a foreign producer would (`XADD` by hand).
#[async_trait]
pub trait ForeignProducer: Send + Sync {
    async fn write_foreign(&self, category: &Category, fields: Fields);
}

#[async_trait]
impl ForeignProducer for crate::MemoryStore {
    async fn write_foreign(&self, category: &Category, fields: Fields) {
        self.append_foreign(category, fields);
    }
}

/// What the suite needs of an adapter.
pub trait ContractStore: Store + ForeignProducer + Clone + 'static {}
impl<T: Store + ForeignProducer + Clone + 'static> ContractStore for T {}

/// Runs every case as its own `#[tokio::test]`.
#[macro_export]
macro_rules! contract_suite {
    ($make:expr) => {
        $crate::contract_suite!(@cases $make;
            append_to_a_new_user_numbers_versions_from_1,
            append_expecting_no_stream_conflicts_once_the_user_exists,
            append_with_a_stale_version_conflicts_with_both_versions_and_writes_nothing,
            append_any_version_always_appends,
            append_of_no_events_is_refused,
            append_writes_the_category_stream_with_readable_fields,
            envelopes_read_back_as_appended,
            time_never_goes_back_within_a_stream,
            two_aggregate_types_with_one_id_are_separate_streams,
            read_user_pages_from_a_version,
            unknown_user_reads_empty_at_version_0,
            idempotency_key_returns_the_first_outcome_and_appends_once,
            an_append_delivered_twice_is_applied_once,
            an_idempotency_key_names_one_stream_and_is_recorded,
            an_idempotency_key_reused_for_another_request_is_refused,
            concurrent_appends_on_one_user_have_one_winner_per_version,
            concurrent_appends_on_distinct_users_all_succeed,
            read_category_pages_after_a_position,
            read_category_from_a_point_in_time,
            a_new_group_sees_history,
            creating_an_existing_group_is_fine,
            read_new_waits_for_an_append,
            read_new_respects_count_and_never_redelivers_new_entries,
            unacked_entries_are_claimed_after_idle_with_delivery_counts,
            a_consumer_resumes_its_own_pending_entries_at_once,
            idle_consumers_with_nothing_pending_are_pruned,
            acked_entries_are_never_claimed,
            consumers_sharing_a_group_split_entries_without_overlap,
            foreign_entries_are_delivered_as_undecodable,
            dead_letter_records_the_reason_and_acks,
            group_stats_count_lag_and_pending,
            snapshots_keep_the_newest,
            read_model_writes_only_over_the_expected_version,
            read_models_in_a_batch_answer_each_user_in_order,
            missing_read_model_is_none,
            trimming_removes_only_what_every_group_has_acked,
            a_read_model_is_served_from_generation_1_until_switched,
            checkpoints_answer_the_latest_at_or_before_a_time,
            tallies_count_each_position_once_and_rank_across_partitions,
            overlapping_tally_writes_count_each_event_once,
            a_tally_top_ranks_a_long_tail_by_count_then_key,
            a_lease_has_one_holder_and_a_new_token_for_each_new_holder,
            members_are_listed_by_name_while_their_time_runs,
            a_former_holders_writes_are_refused_once_another_holds_the_lease,
            a_read_model_written_again_keeps_only_its_new_fields
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (store, _guard) = $make.await;
                $crate::contract::$case(store).await;
            }
        )*
    };
}

fn fresh_id() -> EntityId {
    EntityId::parse(&Uuid::new_v4().simple().to_string()).unwrap()
}

fn fresh_user() -> StreamId {
    StreamId::new(USER, fresh_id())
}

/// Idempotency keys name one request in the whole store: each case makes its own.
fn fresh_key(name: &str) -> String {
    format!("{name}-{}", Uuid::new_v4().simple())
}

fn fresh_group() -> String {
    format!("contract-{}", Uuid::new_v4().simple())
}

/// A user's `kick` of `object`, as a new event: what adapters' own tests append too.
pub fn kick(object: &str) -> NewEvent {
    let encoded = codec::encode(&UserEvent::ActedOn(ActedOn {
        action: Action::Kick,
        object: object.to_owned(),
        text: None,
    }))
    .unwrap();
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: encoded.event_type.to_owned(),
        schema_version: encoded.schema_version,
        category: encoded.category,
        occurred_at: chrono::Utc::now(),
        correlation_id: "contract".into(),
        causation_id: "contract".into(),
        actor: Some("user:contract".into()),
        payload: encoded.payload,
    }
}

fn request(stream: &StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.clone(),
        expected,
        events,
        idempotency: None,
    }
}

async fn append_n(store: &impl EventStore, user: &StreamId, n: usize) {
    for i in 0..n {
        store
            .append(request(
                user,
                ExpectedVersion::Any,
                vec![kick(&format!("o{i}"))],
            ))
            .await
            .unwrap();
    }
}

/// Entries of `user` in a category, read from the start.
async fn category_entries_of(
    store: &impl Store,
    category: Category,
    user: &StreamId,
) -> Vec<crate::CategoryEntry> {
    let mut found = Vec::new();
    let mut after = EntryId::ZERO;
    loop {
        let page = store.read_category(&category, after, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.id;
        found.extend(
            page.into_iter()
                .filter(|e| e.event().is_ok_and(|ev| ev.envelope.stream == *user)),
        );
    }
    found
}

pub async fn append_to_a_new_user_numbers_versions_from_1<S: ContractStore>(store: S) {
    let user = fresh_user();
    let outcome = store
        .append(request(
            &user,
            ExpectedVersion::NoStream,
            vec![kick("a"), kick("b")],
        ))
        .await
        .unwrap();
    assert_eq!(outcome.version, 2);
    assert!(!outcome.duplicate);
    let events = store.read_stream(&user, 1, 10).await.unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.envelope.version).collect();
    assert_eq!(versions, [1, 2]);
    assert!(events.iter().all(|e| e.envelope.stream == user));
    assert_eq!(store.stream_version(&user).await.unwrap(), 2);
}

pub async fn append_expecting_no_stream_conflicts_once_the_user_exists<S: ContractStore>(store: S) {
    let user = fresh_user();
    append_n(&store, &user, 1).await;
    let err = store
        .append(request(&user, ExpectedVersion::NoStream, vec![kick("x")]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: ExpectedVersion::NoStream,
                actual: 1
            }
        ),
        "{err:?}"
    );
}

pub async fn append_with_a_stale_version_conflicts_with_both_versions_and_writes_nothing<
    S: ContractStore,
>(
    store: S,
) {
    let user = fresh_user();
    append_n(&store, &user, 3).await;
    let before = category_entries_of(&store, USER_ACTIVITY, &user)
        .await
        .len();
    let err = store
        .append(request(
            &user,
            ExpectedVersion::Exactly(2),
            vec![kick("late")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: ExpectedVersion::Exactly(2),
                actual: 3
            }
        ),
        "{err:?}"
    );
    assert_eq!(store.stream_version(&user).await.unwrap(), 3);
    assert_eq!(store.read_stream(&user, 1, 10).await.unwrap().len(), 3);
    assert_eq!(
        category_entries_of(&store, USER_ACTIVITY, &user)
            .await
            .len(),
        before
    );
    let ok = store
        .append(request(
            &user,
            ExpectedVersion::Exactly(3),
            vec![kick("on time")],
        ))
        .await
        .unwrap();
    assert_eq!(ok.version, 4);
}

pub async fn append_any_version_always_appends<S: ContractStore>(store: S) {
    let user = fresh_user();
    append_n(&store, &user, 5).await;
    assert_eq!(store.stream_version(&user).await.unwrap(), 5);
}

pub async fn append_of_no_events_is_refused<S: ContractStore>(store: S) {
    let user = fresh_user();
    let err = store
        .append(request(&user, ExpectedVersion::Any, vec![]))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.stream_version(&user).await.unwrap(), 0);
}

pub async fn append_writes_the_category_stream_with_readable_fields<S: ContractStore>(store: S) {
    let user = fresh_user();
    let event = kick("Bugs");
    let event_id = event.event_id;
    store
        .append(request(&user, ExpectedVersion::NoStream, vec![event]))
        .await
        .unwrap();
    let entries = category_entries_of(&store, USER_ACTIVITY, &user).await;
    assert_eq!(entries.len(), 1);
    let field = |name: &str| {
        entries[0]
            .fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    assert_eq!(field("type").as_deref(), Some("acted_on"));
    assert_eq!(field("user_id"), Some(user.id.to_string()));
    assert_eq!(field("version").as_deref(), Some("1"));
    assert_eq!(field("event_id"), Some(event_id.to_string()));
    let decoded = entries[0].event().unwrap().decode::<UserEvent>().unwrap();
    assert!(matches!(decoded, UserEvent::ActedOn(ActedOn { ref object, .. }) if object == "Bugs"));
    assert!(
        category_entries_of(&store, USER_UPDATES, &user)
            .await
            .is_empty()
    );
}

fn joined(user: &EntityId) -> NewEvent {
    let encoded = codec::encode(&esr_schema::GroupEvent::MemberJoined(
        esr_schema::MemberJoined {
            user_id: user.clone(),
        },
    ))
    .unwrap();
    NewEvent {
        event_type: encoded.event_type.to_owned(),
        schema_version: encoded.schema_version,
        category: encoded.category,
        payload: encoded.payload,
        ..kick("unused")
    }
}

/// A user and a group with the same id share a partition (the id picks it) but nothing else:
/// versions, histories, snapshots and read models are per stream (an idempotency key names one
/// request, so it is not).
pub async fn two_aggregate_types_with_one_id_are_separate_streams<S: ContractStore>(store: S) {
    use esr_schema::group::{GROUP, GROUP_MEMBERSHIP};
    let id = fresh_id();
    let (user, group) = (
        StreamId::new(USER, id.clone()),
        StreamId::new(GROUP, id.clone()),
    );
    let same_key = fresh_key("same-key");
    let keyed = |stream: &StreamId, event: NewEvent| AppendRequest {
        idempotency: Some(Idempotency {
            key: same_key.clone(),
            ttl: Duration::from_secs(60),
            fingerprint: String::new(),
        }),
        ..request(stream, ExpectedVersion::Any, vec![event])
    };
    // Interleaved: user 1, group 1, user 2, group 2, group 3.
    for (stream, event) in [
        (&user, kick("a")),
        (&group, joined(&id)),
        (&user, kick("b")),
        (&group, joined(&id)),
        (&group, joined(&id)),
    ] {
        store
            .append(request(stream, ExpectedVersion::Any, vec![event]))
            .await
            .unwrap();
    }
    assert_eq!(store.stream_version(&user).await.unwrap(), 2);
    assert_eq!(store.stream_version(&group).await.unwrap(), 3);
    let users = store.read_stream(&user, 1, 10).await.unwrap();
    let groups = store.read_stream(&group, 1, 10).await.unwrap();
    assert!(
        users
            .iter()
            .all(|e| e.envelope.stream == user && e.decode::<UserEvent>().is_ok())
    );
    assert!(groups.iter().all(|e| e.envelope.stream == group));
    assert_eq!(
        groups
            .iter()
            .map(|e| e.envelope.version)
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(
        groups[0].decode::<UserEvent>().is_err(),
        "a group event is not a user event"
    );

    // The group's category entries name the group, with a readable `group_id`.
    let entries = category_entries_of(&store, GROUP_MEMBERSHIP, &group).await;
    assert_eq!(entries.len(), 3);
    assert!(
        entries[0]
            .fields
            .iter()
            .any(|(k, v)| k == "group_id" && v == id.as_str().as_bytes())
    );
    assert!(
        category_entries_of(&store, USER_ACTIVITY, &group)
            .await
            .is_empty()
    );
    assert_eq!(
        category_entries_of(&store, USER_ACTIVITY, &user)
            .await
            .len(),
        2
    );

    // The same idempotency key on the other stream: refused, the key still the user's.
    let first = store.append(keyed(&user, kick("k"))).await.unwrap();
    assert_eq!((first.version, first.duplicate), (3, false));
    let second = store.append(keyed(&group, joined(&id))).await;
    assert!(
        matches!(second, Err(StoreError::KeyReused { .. })),
        "{second:?}"
    );
    assert_eq!(store.stream_version(&group).await.unwrap(), 3);
    assert_eq!(
        store
            .idempotent_outcome(&user, &same_key, "")
            .await
            .unwrap()
            .map(|o| o.version),
        Some(3)
    );

    // Snapshots and read models are per stream too.
    store
        .save_snapshot(
            &group,
            Snapshot {
                version: 4,
                state: vec![1],
            },
        )
        .await
        .unwrap();
    assert_eq!(store.load_snapshot(&user).await.unwrap(), None);
    let model = ReadModel {
        version: 4,
        fields: [("members".to_owned(), "1".to_owned())].into(),
    };
    store
        .put_read_model("contract", &group, 0, &model)
        .await
        .unwrap();
    assert_eq!(store.get_read_model("contract", &user).await.unwrap(), None);
    assert_eq!(
        store
            .get_read_model("contract", &group)
            .await
            .unwrap()
            .map(|m| m.version),
        Some(4)
    );
}

/// An instance whose clock stepped back (or another instance's clock behind) must not write a
/// stream's history out of time order: `?at=` folds up to the first event after a time. An
/// event is stored at the stream's last time when its own is earlier.
pub async fn time_never_goes_back_within_a_stream<S: ContractStore>(store: S) {
    let user = fresh_user();
    let at = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let stamped = |time: &str| NewEvent {
        occurred_at: at(time),
        ..kick("x")
    };
    for (time, expected) in [
        ("2026-11-27T10:00:00.000001Z", ExpectedVersion::NoStream),
        ("2026-11-27T09:59:00Z", ExpectedVersion::Exactly(1)),
        ("2026-11-27T10:00:05Z", ExpectedVersion::Exactly(2)),
    ] {
        store
            .append(request(&user, expected, vec![stamped(time)]))
            .await
            .unwrap();
    }
    // In one request too: the later event of it is earlier than the first.
    store
        .append(request(
            &user,
            ExpectedVersion::Exactly(3),
            vec![
                stamped("2026-11-27T11:00:00Z"),
                stamped("2026-11-27T10:30:00Z"),
            ],
        ))
        .await
        .unwrap();
    let times: Vec<_> = store
        .read_stream(&user, 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.envelope.occurred_at)
        .collect();
    assert_eq!(
        times,
        [
            at("2026-11-27T10:00:00.000001Z"),
            at("2026-11-27T10:00:00.000001Z"),
            at("2026-11-27T10:00:05Z"),
            at("2026-11-27T11:00:00Z"),
            at("2026-11-27T11:00:00Z"),
        ]
    );
    // The category entries say the same times.
    let category: Vec<_> = category_entries_of(&store, USER_ACTIVITY, &user)
        .await
        .iter()
        .map(|e| e.event().unwrap().envelope.occurred_at)
        .collect();
    assert_eq!(category, times);
}

pub async fn envelopes_read_back_as_appended<S: ContractStore>(store: S) {
    let user = fresh_user();
    // Stored at microsecond precision.
    let at = chrono::DateTime::parse_from_rfc3339("2026-11-26T14:00:00.123456Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let own_command = NewEvent {
        occurred_at: at,
        correlation_id: "cmd-7".into(),
        causation_id: "cmd-7".into(),
        ..kick("a")
    };
    let from_a_policy = NewEvent {
        occurred_at: at,
        correlation_id: "request-1".into(),
        causation_id: "event-9".into(),
        actor: Some("system:user:1".into()),
        ..kick("b")
    };
    let appended = [own_command, from_a_policy];
    store
        .append(request(&user, ExpectedVersion::NoStream, appended.to_vec()))
        .await
        .unwrap();
    let from_user_stream = store.read_stream(&user, 1, 10).await.unwrap();
    let from_category: Vec<StoredEvent> = category_entries_of(&store, USER_ACTIVITY, &user)
        .await
        .iter()
        .map(|entry| entry.event().unwrap())
        .collect();
    assert_eq!(from_user_stream, from_category);
    assert_eq!(from_user_stream.len(), 2);
    for (version, (read, sent)) in (1..).zip(from_user_stream.iter().zip(&appended)) {
        let e = &read.envelope;
        assert_eq!(
            (e.version, &e.stream, e.event_id, e.event_type.as_str()),
            (version, &user, sent.event_id, sent.event_type.as_str())
        );
        assert_eq!((e.occurred_at, e.schema_version), (at, sent.schema_version));
        assert_eq!(
            (e.correlation_id.as_str(), e.causation_id.as_str()),
            (sent.correlation_id.as_str(), sent.causation_id.as_str())
        );
        assert_eq!(e.actor, sent.actor);
        assert_eq!(read.payload, sent.payload);
    }
}

pub async fn read_user_pages_from_a_version<S: ContractStore>(store: S) {
    let user = fresh_user();
    append_n(&store, &user, 7).await;
    let page = store.read_stream(&user, 3, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.envelope.version).collect::<Vec<_>>(),
        [3, 4]
    );
    let rest = store.read_stream(&user, 5, 100).await.unwrap();
    assert_eq!(
        rest.iter().map(|e| e.envelope.version).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert!(store.read_stream(&user, 8, 10).await.unwrap().is_empty());
}

pub async fn unknown_user_reads_empty_at_version_0<S: ContractStore>(store: S) {
    let user = fresh_user();
    assert!(store.read_stream(&user, 1, 10).await.unwrap().is_empty());
    assert_eq!(store.stream_version(&user).await.unwrap(), 0);
    assert_eq!(store.load_snapshot(&user).await.unwrap(), None);
}

pub async fn idempotency_key_returns_the_first_outcome_and_appends_once<S: ContractStore>(
    store: S,
) {
    let user = fresh_user();
    let retry_key = fresh_key("retry-me");
    let with_key = |expected| AppendRequest {
        idempotency: Some(Idempotency {
            key: retry_key.clone(),
            ttl: Duration::from_secs(60),
            fingerprint: "kick once".into(),
        }),
        ..request(&user, expected, vec![kick("once")])
    };
    let first = store
        .append(with_key(ExpectedVersion::NoStream))
        .await
        .unwrap();
    // The retry carries a stale expectation: the key is checked before the version.
    let again = store
        .append(with_key(ExpectedVersion::NoStream))
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert!(!first.duplicate);
    assert_eq!(again.version, 1);
    assert!(again.duplicate);
    assert_eq!(store.stream_version(&user).await.unwrap(), 1);
    assert_eq!(
        category_entries_of(&store, USER_ACTIVITY, &user)
            .await
            .len(),
        1
    );
}

/// A client library may send a call again after a dropped connection although the first one
/// ran (the Cluster client does): the second delivery, with its events' ids unchanged, answers
/// the first's version as a duplicate instead of a conflict or a second copy.
pub async fn an_append_delivered_twice_is_applied_once<S: ContractStore>(store: S) {
    let user = fresh_user();
    let first_call = request(
        &user,
        ExpectedVersion::NoStream,
        vec![kick("one"), kick("two")],
    );
    let first = store.append(first_call.clone()).await.unwrap();
    assert_eq!((first.version, first.duplicate), (2, false));
    let again = store.append(first_call.clone()).await.unwrap();
    assert_eq!((again.version, again.duplicate), (2, true));

    let next_call = request(&user, ExpectedVersion::Exactly(2), vec![kick("three")]);
    assert_eq!(store.append(next_call.clone()).await.unwrap().version, 3);
    // Still recognised after later appends, and so is the later call itself.
    let late = store.append(first_call).await.unwrap();
    assert_eq!((late.version, late.duplicate), (2, true));
    let late = store.append(next_call).await.unwrap();
    assert_eq!((late.version, late.duplicate), (3, true));

    // Another request with a stale expectation is still a conflict.
    let stale = store
        .append(request(
            &user,
            ExpectedVersion::Exactly(2),
            vec![kick("four")],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(stale, StoreError::Conflict { actual: 3, .. }),
        "{stale:?}"
    );
    assert_eq!(store.read_stream(&user, 1, 10).await.unwrap().len(), 3);
    assert_eq!(
        category_entries_of(&store, USER_ACTIVITY, &user)
            .await
            .len(),
        3
    );
}

pub async fn an_idempotency_key_names_one_stream_and_is_recorded<S: ContractStore>(store: S) {
    let (a, b) = (fresh_user(), fresh_user());
    let key = fresh_key("same");
    let keyed = |user: &StreamId| AppendRequest {
        idempotency: Some(Idempotency {
            key: key.clone(),
            ttl: Duration::from_secs(60),
            fingerprint: String::new(),
        }),
        ..request(user, ExpectedVersion::Any, vec![kick("x")])
    };
    let first = store.append(keyed(&a)).await.unwrap();
    assert!(!first.duplicate);
    // The same key for another stream is another request: refused, nothing appended.
    let other = store.append(keyed(&b)).await;
    assert!(
        matches!(&other, Err(StoreError::KeyReused { key: k }) if *k == key),
        "{other:?}"
    );
    assert_eq!(store.stream_version(&b).await.unwrap(), 0);
    let batch = store
        .append_batch(vec![keyed(&b), keyed(&a)])
        .await
        .unwrap();
    assert!(
        matches!(batch[0], Err(StoreError::KeyReused { .. })),
        "{batch:?}"
    );
    assert!(
        matches!(
            batch[1],
            Ok(AppendOutcome {
                version: 1,
                duplicate: true
            })
        ),
        "{batch:?}"
    );
    let recorded = store
        .idempotent_outcome(&a, &key, "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(recorded.version, 1);
    assert_eq!(
        store.idempotent_outcome(&a, "other", "").await.unwrap(),
        None
    );
}

/// A key names one request: the same key with another request (its fingerprint) is refused,
/// by the append and by the look-up, and nothing is appended; an empty fingerprint (a record
/// written before fingerprints, or a caller that has none) is not compared.
pub async fn an_idempotency_key_reused_for_another_request_is_refused<S: ContractStore>(store: S) {
    let user = fresh_user();
    let k1 = fresh_key("k-1");
    let keyed = |fingerprint: &str, object: &str| AppendRequest {
        idempotency: Some(Idempotency {
            key: k1.clone(),
            ttl: Duration::from_secs(60),
            fingerprint: fingerprint.into(),
        }),
        ..request(&user, ExpectedVersion::Any, vec![kick(object)])
    };
    let first = store.append(keyed("like a", "a")).await.unwrap();
    assert_eq!((first.version, first.duplicate), (1, false));
    let reused = store.append(keyed("like b", "b")).await;
    assert!(
        matches!(&reused, Err(StoreError::KeyReused { key }) if *key == k1),
        "{reused:?}"
    );
    let replay = store.append(keyed("like a", "a")).await.unwrap();
    assert_eq!((replay.version, replay.duplicate), (1, true));
    let unchecked = store.append(keyed("", "c")).await.unwrap();
    assert_eq!((unchecked.version, unchecked.duplicate), (1, true));
    assert!(matches!(
        store.idempotent_outcome(&user, &k1, "like b").await,
        Err(StoreError::KeyReused { .. })
    ));
    let looked_up = store
        .idempotent_outcome(&user, &k1, "like a")
        .await
        .unwrap();
    assert_eq!(looked_up.map(|o| o.version), Some(1));
    assert_eq!(store.stream_version(&user).await.unwrap(), 1);
}

pub async fn concurrent_appends_on_one_user_have_one_winner_per_version<S: ContractStore>(
    store: S,
) {
    const WRITERS: usize = 32;
    const ROUNDS: u64 = 4;
    let user = fresh_user();
    let wins = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let (store, user, wins) = (store.clone(), user.clone(), wins.clone());
        tasks.push(tokio::spawn(async move {
            // Each writer tries versions in turn with an exact expectation, like a command
            // handler that reloads after every conflict.
            let mut next = 0;
            while next < ROUNDS * WRITERS as u64 {
                match store
                    .append(request(
                        &user,
                        ExpectedVersion::Exactly(next),
                        vec![kick(&format!("w{writer}"))],
                    ))
                    .await
                {
                    Ok(outcome) => {
                        wins.lock().unwrap().push(outcome.version);
                        next = outcome.version;
                    }
                    Err(StoreError::Conflict { actual, .. }) => next = actual,
                    Err(other) => panic!("unexpected error: {other}"),
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = ROUNDS * WRITERS as u64;
    let mut wins = wins.lock().unwrap().clone();
    wins.sort_unstable();
    assert_eq!(
        wins,
        (1..=total).collect::<Vec<_>>(),
        "exactly one winner per version"
    );
    let stored = store.read_stream(&user, 1, usize::MAX).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|e| e.envelope.version)
            .collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    let ids: BTreeSet<Uuid> = stored.iter().map(|e| e.envelope.event_id).collect();
    assert_eq!(ids.len() as u64, total, "no event doubled");
    assert_eq!(
        category_entries_of(&store, USER_ACTIVITY, &user)
            .await
            .len() as u64,
        total
    );
}

pub async fn concurrent_appends_on_distinct_users_all_succeed<S: ContractStore>(store: S) {
    let users: Vec<StreamId> = (0..32).map(|_| fresh_user()).collect();
    let tasks: Vec<_> = users
        .iter()
        .cloned()
        .map(|user| {
            let store = store.clone();
            tokio::spawn(async move {
                for v in 0..5 {
                    store
                        .append(request(&user, ExpectedVersion::Exactly(v), vec![kick("x")]))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for user in &users {
        assert_eq!(store.stream_version(user).await.unwrap(), 5);
    }
}

pub async fn read_category_pages_after_a_position<S: ContractStore>(store: S) {
    let user = fresh_user();
    append_n(&store, &user, 5).await;
    let all = category_entries_of(&store, USER_ACTIVITY, &user).await;
    assert_eq!(all.len(), 5);
    let ids: Vec<EntryId> = all.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    let versions: Vec<u64> = all
        .iter()
        .map(|e| e.event().unwrap().envelope.version)
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    // Other cases may append to the same category meanwhile: a page holds entries after the
    // position, in order, and this user's entries after it are exactly its later ones.
    let page = store
        .read_category(&USER_ACTIVITY, ids[1], 2)
        .await
        .unwrap();
    assert!(!page.is_empty());
    assert!(
        page.len() == 2 || page.windows(2).any(|w| w[0].id == w[1].id),
        "limit kept: {}",
        page.len()
    );
    assert!(page.iter().all(|e| e.id > ids[1]));
    assert!(page.windows(2).all(|w| w[0].id <= w[1].id));
    let rest: Vec<EntryId> = store
        .read_category(&USER_ACTIVITY, ids[1], 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event().is_ok_and(|ev| ev.envelope.stream == user))
        .map(|e| e.id)
        .collect();
    assert_eq!(rest, ids[2..]);
}

pub async fn read_category_from_a_point_in_time<S: ContractStore>(store: S) {
    let user = fresh_user();
    append_n(&store, &user, 2).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .append(request(
            &user,
            ExpectedVersion::Exactly(2),
            vec![kick("later")],
        ))
        .await
        .unwrap();
    let since: Vec<u64> = store
        .read_category(&USER_ACTIVITY, EntryId::before(cut), 1000)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.event().ok())
        .filter(|e| e.envelope.stream == user)
        .map(|e| e.envelope.version)
        .collect();
    assert_eq!(since, [3]);
}

pub async fn a_new_group_sees_history<S: ContractStore>(store: S) {
    let user = fresh_user();
    append_n(&store, &user, 3).await;
    let group = fresh_group();
    store.create_group(&group, &[USER_ACTIVITY]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let batch = store
            .read_new(
                &group,
                "c1",
                &[USER_ACTIVITY],
                1000,
                Duration::from_millis(50),
            )
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        seen.extend(
            batch
                .into_iter()
                .filter_map(|d| d.event().ok())
                .filter(|e| e.envelope.stream == user),
        );
    }
    assert_eq!(
        seen.iter().map(|e| e.envelope.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

pub async fn creating_an_existing_group_is_fine<S: ContractStore>(store: S) {
    let group = fresh_group();
    store
        .create_group(&group, UserEvent::CATEGORIES)
        .await
        .unwrap();
    store
        .create_group(&group, UserEvent::CATEGORIES)
        .await
        .unwrap();
}

/// Drain whatever the group has not delivered yet, so a case sees only its own appends.
async fn drain(store: &impl Store, group: &str, categories: &[Category]) {
    loop {
        let batch = store
            .read_new(group, "drain", categories, 1000, Duration::from_millis(10))
            .await
            .unwrap();
        if batch.is_empty() {
            return;
        }
        let refs: Vec<_> = batch.into_iter().map(|d| d.entry).collect();
        store.ack(group, &refs).await.unwrap();
    }
}

pub async fn read_new_waits_for_an_append<S: ContractStore>(store: S) {
    let group = fresh_group();
    store.create_group(&group, &[USER_FRIENDS]).await.unwrap();
    drain(&store, &group, &[USER_FRIENDS]).await;
    let user = fresh_user();
    let writer = {
        let (store, user) = (store.clone(), user.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let event = codec::encode(&UserEvent::FriendAdded(esr_schema::FriendAdded {
                friend_id: EntityId::parse("2").unwrap(),
                reciprocal: false,
            }))
            .unwrap();
            let new = NewEvent {
                event_type: event.event_type.into(),
                schema_version: event.schema_version,
                category: event.category,
                payload: event.payload,
                ..kick("unused")
            };
            store
                .append(request(&user, ExpectedVersion::Any, vec![new]))
                .await
                .unwrap();
        })
    };
    let started = std::time::Instant::now();
    let batch = store
        .read_new(&group, "c1", &[USER_FRIENDS], 10, Duration::from_secs(5))
        .await
        .unwrap();
    writer.await.unwrap();
    assert!(
        !batch.is_empty(),
        "the blocked read returns the appended entry"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "woken by the append, not the timeout"
    );
    assert!(
        batch
            .iter()
            .any(|d| d.event().is_ok_and(|e| e.envelope.stream == user))
    );
}

pub async fn read_new_respects_count_and_never_redelivers_new_entries<S: ContractStore>(store: S) {
    let group = fresh_group();
    store.create_group(&group, &[USER_ACTIVITY]).await.unwrap();
    drain(&store, &group, &[USER_ACTIVITY]).await;
    let user = fresh_user();
    append_n(&store, &user, 5).await;
    let cats = [USER_ACTIVITY];
    let first = store
        .read_new(&group, "c1", &cats, 3, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(first.len() <= 3 && !first.is_empty(), "got {}", first.len());
    let mut ids: Vec<_> = first.iter().map(|d| d.entry.clone()).collect();
    loop {
        let more = store
            .read_new(&group, "c1", &cats, 3, Duration::from_millis(50))
            .await
            .unwrap();
        if more.is_empty() {
            break;
        }
        assert!(more.len() <= 3);
        ids.extend(more.into_iter().map(|d| d.entry));
    }
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "no entry handed out twice as new");
    assert!(ids.len() >= 5);
}

/// A consumer restarted under its stable name takes back what it held, without waiting for
/// the idle time; another consumer's entries are not its own.
pub async fn a_consumer_resumes_its_own_pending_entries_at_once<S: ContractStore>(store: S) {
    let group = fresh_group();
    let cats = [USER_ACTIVITY];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    append_n(&store, &fresh_user(), 3).await;
    let held = store
        .read_new(&group, "stable-1", &cats, 100, Duration::from_millis(50))
        .await
        .unwrap();
    // Other cases may write to the category meanwhile: at least ours.
    assert!(held.len() >= 3, "{held:?}");
    append_n(&store, &fresh_user(), 2).await;
    let others = store
        .read_new(&group, "other", &cats, 100, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(others.len() >= 2, "{others:?}");
    // "stable-1" restarts: its own three, at once, as their second delivery.
    let resumed = store
        .read_own_pending(&group, "stable-1", &cats, 100)
        .await
        .unwrap();
    let ids = |ds: &[crate::Delivery]| {
        let mut ids: Vec<_> = ds.iter().map(|d| d.entry.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(&resumed), ids(&held));
    assert!(resumed.iter().all(|d| d.deliveries == 2), "{resumed:?}");
    assert!(resumed.iter().all(|d| d.event().is_ok()));
    store.ack(&group, &ids(&resumed)).await.unwrap();
    assert!(
        store
            .read_own_pending(&group, "stable-1", &cats, 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Consumers of processes long gone pile up; those idle long enough with nothing pending are
/// removed, one holding entries is not, nor the one asking.
pub async fn idle_consumers_with_nothing_pending_are_pruned<S: ContractStore>(store: S) {
    let group = fresh_group();
    let cats = [USER_ACTIVITY];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    // Redis creates a consumer with the first entry it hands it: each of the three gets one.
    append_n(&store, &fresh_user(), 3).await;
    let done = store
        .read_new(&group, "gone-done", &cats, 1, Duration::from_millis(50))
        .await
        .unwrap();
    store
        .ack(
            &group,
            &done.iter().map(|d| d.entry.clone()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let holding = store
        .read_new(&group, "gone-holding", &cats, 1, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(holding.len(), 1);
    let mine = store
        .read_new(&group, "me", &cats, 1, Duration::from_millis(50))
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    store
        .ack(
            &group,
            &mine.iter().map(|d| d.entry.clone()).collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    let removed = store
        .prune_consumers(&group, &cats, Duration::from_millis(50), "me")
        .await
        .unwrap();
    assert!(removed >= 1, "{removed}");
    let names: Vec<String> = store
        .consumers(&group, &cats)
        .await
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(!names.contains(&"gone-done".to_owned()), "{names:?}");
    assert!(names.contains(&"gone-holding".to_owned()), "{names:?}");
    assert!(names.contains(&"me".to_owned()), "{names:?}");
    // What it holds stays pending, for a claim.
    assert_eq!(store.group_stats(&group, &cats).await.unwrap().pending, 1);
}

pub async fn unacked_entries_are_claimed_after_idle_with_delivery_counts<S: ContractStore>(
    store: S,
) {
    let group = fresh_group();
    let cats = [USER_ACTIVITY];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    let user = fresh_user();
    append_n(&store, &user, 2).await;
    // "dead" reads and then dies without acking.
    let taken = store
        .read_new(&group, "dead", &cats, 100, Duration::from_millis(50))
        .await
        .unwrap();
    assert!(!taken.is_empty());
    let too_soon = store
        .claim_idle(&group, "alive", &cats, Duration::from_secs(60), 100)
        .await
        .unwrap();
    assert!(
        too_soon.is_empty(),
        "entries are not claimed before they are idle"
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let claimed = store
        .claim_idle(&group, "alive", &cats, Duration::from_millis(100), 100)
        .await
        .unwrap();
    let mut want: Vec<_> = taken.iter().map(|d| d.entry.clone()).collect();
    let mut got: Vec<_> = claimed.iter().map(|d| d.entry.clone()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want, "every unacked entry is claimed");
    assert!(
        claimed.iter().all(|d| d.deliveries == 2),
        "second delivery each"
    );
    store.ack(&group, &got).await.unwrap();
    assert_eq!(store.group_stats(&group, &cats).await.unwrap().pending, 0);
}

pub async fn acked_entries_are_never_claimed<S: ContractStore>(store: S) {
    let group = fresh_group();
    let cats = [USER_ACTIVITY];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    append_n(&store, &fresh_user(), 3).await;
    let taken = store
        .read_new(&group, "c1", &cats, 100, Duration::from_millis(50))
        .await
        .unwrap();
    let refs: Vec<_> = taken.iter().map(|d| d.entry.clone()).collect();
    store.ack(&group, &refs).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claimed = store
        .claim_idle(&group, "c2", &cats, Duration::from_millis(1), 100)
        .await
        .unwrap();
    assert!(claimed.is_empty(), "claimed {claimed:?}");
}

pub async fn consumers_sharing_a_group_split_entries_without_overlap<S: ContractStore>(store: S) {
    let group = fresh_group();
    let cats = [USER_ACTIVITY];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    let user = fresh_user();
    append_n(&store, &user, 20).await;
    let mut by_consumer = [Vec::new(), Vec::new()];
    loop {
        let mut got_any = false;
        for (i, consumer) in ["c1", "c2"].iter().enumerate() {
            let batch = store
                .read_new(&group, consumer, &cats, 3, Duration::from_millis(20))
                .await
                .unwrap();
            got_any |= !batch.is_empty();
            by_consumer[i].extend(batch.into_iter().map(|d| d.entry));
        }
        if !got_any {
            break;
        }
    }
    let a: BTreeSet<_> = by_consumer[0].iter().cloned().collect();
    let b: BTreeSet<_> = by_consumer[1].iter().cloned().collect();
    assert!(a.is_disjoint(&b));
    assert!(!a.is_empty() && !b.is_empty(), "both consumers got work");
    assert!(a.len() + b.len() >= 20);
}

pub async fn foreign_entries_are_delivered_as_undecodable<S: ContractStore>(store: S) {
    let group = fresh_group();
    let cats = [USER_UPDATES];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    let posts_entry: Fields = vec![
        ("user_id".into(), b"1".to_vec()),
        ("command".into(), b"register".to_vec()),
        ("name".into(), b"Duffy".to_vec()),
    ];
    store
        .write_foreign(&USER_UPDATES, posts_entry.clone())
        .await;
    let batch = store
        .read_new(&group, "c1", &cats, 10, Duration::from_millis(200))
        .await
        .unwrap();
    let foreign = batch
        .iter()
        .find(|d| d.fields == posts_entry)
        .expect("the foreign entry is delivered");
    assert!(foreign.event().is_err());
}

pub async fn dead_letter_records_the_reason_and_acks<S: ContractStore>(store: S) {
    let group = fresh_group();
    let cats = [USER_UPDATES];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    let garbage: Fields = vec![("payload".into(), vec![0xff, 0x00, 0xc1])];
    store.write_foreign(&USER_UPDATES, garbage.clone()).await;
    let batch = store
        .read_new(&group, "c1", &cats, 10, Duration::from_millis(200))
        .await
        .unwrap();
    let poison = batch
        .iter()
        .find(|d| d.fields == garbage)
        .expect("delivered")
        .clone();
    store
        .dead_letter(&group, &poison, "no type field")
        .await
        .unwrap();
    let letters = store.dead_letters(10_000).await.unwrap();
    let letter = letters.iter().find(|l| l.group == group).expect("recorded");
    // Other cases may dead-letter meanwhile: the count, read after, is at least what was read.
    assert!(store.dead_letter_count().await.unwrap() >= letters.len() as u64);
    assert_eq!(letter.entry, poison.entry);
    assert_eq!(letter.reason, "no type field");
    assert_eq!(letter.deliveries, 1);
    assert_eq!(letter.fields, garbage);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claimed = store
        .claim_idle(&group, "c2", &cats, Duration::from_millis(1), 100)
        .await
        .unwrap();
    assert!(
        claimed.iter().all(|d| d.entry != poison.entry),
        "a dead letter is acked"
    );
}

pub async fn group_stats_count_lag_and_pending<S: ContractStore>(store: S) {
    let group = fresh_group();
    let cats = [USER_ACTIVITY];
    store.create_group(&group, &cats).await.unwrap();
    drain(&store, &group, &cats).await;
    assert_eq!(store.group_stats(&group, &cats).await.unwrap().pending, 0);
    append_n(&store, &fresh_user(), 4).await;
    let stats = store.group_stats(&group, &cats).await.unwrap();
    assert!(stats.lag >= 4, "{stats:?}");
    let taken = store
        .read_new(&group, "c1", &cats, 2, Duration::from_millis(50))
        .await
        .unwrap();
    let stats = store.group_stats(&group, &cats).await.unwrap();
    assert_eq!(stats.pending, taken.len() as u64);
}

pub async fn snapshots_keep_the_newest<S: ContractStore>(store: S) {
    let user = fresh_user();
    let snap = |version: u64| Snapshot {
        version,
        state: vec![version as u8; 3],
    };
    assert!(store.save_snapshot(&user, snap(5)).await.unwrap());
    assert!(
        !store.save_snapshot(&user, snap(3)).await.unwrap(),
        "an older snapshot is refused"
    );
    assert!(
        !store.save_snapshot(&user, snap(5)).await.unwrap(),
        "the same version is kept once"
    );
    assert_eq!(store.load_snapshot(&user).await.unwrap(), Some(snap(5)));
    assert!(store.save_snapshot(&user, snap(9)).await.unwrap());
    assert_eq!(store.load_snapshot(&user).await.unwrap(), Some(snap(9)));
}

pub async fn read_model_writes_only_over_the_expected_version<S: ContractStore>(store: S) {
    let user = fresh_user();
    let model = |version: u64| ReadModel {
        version,
        fields: [("name".to_owned(), format!("v{version}"))].into(),
    };
    store
        .put_read_model("contract", &user, 0, &model(1))
        .await
        .unwrap();
    store
        .put_read_model("contract", &user, 1, &model(2))
        .await
        .unwrap();
    // A redelivered event computes version 2 again from a stale read: refused, nothing changes.
    let err = store
        .put_read_model("contract", &user, 1, &model(2))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                expected: ExpectedVersion::Exactly(1),
                actual: 2
            }
        ),
        "{err:?}"
    );
    let err = store
        .put_read_model("contract", &user, 0, &model(1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { actual: 2, .. }),
        "{err:?}"
    );
    let stored = store
        .get_read_model("contract", &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 2);
    assert_eq!(stored.fields.get("name").map(String::as_str), Some("v2"));
    assert_eq!(
        stored.fields.get("version").map(String::as_str),
        Some("2"),
        "the version is a field too"
    );
    assert_eq!(stored.fields.len(), 2);
}

pub async fn read_models_in_a_batch_answer_each_user_in_order<S: ContractStore>(store: S) {
    // Enough users to spread over every partition of a multi-partition store.
    let users: Vec<StreamId> = (0..40).map(|_| fresh_user()).collect();
    let model = |user: usize, version: u64| ReadModel {
        version,
        fields: [("name".to_owned(), format!("u{user}v{version}"))].into(),
    };
    let first: Vec<ReadModelWrite> = (0..40)
        .map(|i| ReadModelWrite {
            stream: users[i].clone(),
            expected: 0,
            model: model(i, 1),
        })
        .collect();
    let outcomes = store
        .put_read_models("contract", first, &crate::Fence::Unfenced)
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

    // Every other user's write is stale (expects 0, finds 1): those fail alone.
    let second: Vec<ReadModelWrite> = (0..40)
        .map(|i| ReadModelWrite {
            stream: users[i].clone(),
            expected: if i % 2 == 0 { 1 } else { 0 },
            model: model(i, 2),
        })
        .collect();
    let outcomes = store
        .put_read_models("contract", second, &crate::Fence::Unfenced)
        .await
        .unwrap();
    for (i, outcome) in outcomes.iter().enumerate() {
        if i % 2 == 0 {
            assert!(outcome.is_ok(), "user {i}: {outcome:?}");
        } else {
            assert!(
                matches!(outcome, Err(StoreError::Conflict { actual: 1, .. })),
                "user {i}: {outcome:?}"
            );
        }
    }

    let mut asked = users.clone();
    asked.insert(17, fresh_user());
    let models = store.get_read_models("contract", &asked).await.unwrap();
    assert_eq!(models.len(), 41);
    assert_eq!(models[17], None, "a user with no read model");
    for (i, user_model) in models.iter().enumerate().filter(|(i, _)| *i != 17) {
        let user = if i < 17 { i } else { i - 1 };
        let version = if user % 2 == 0 { 2 } else { 1 };
        let stored = user_model.as_ref().unwrap();
        assert_eq!(stored.version, version, "user {user}");
        assert_eq!(
            stored.fields.get("name"),
            Some(&format!("u{user}v{version}")),
            "user {user}"
        );
    }
}

pub async fn checkpoints_answer_the_latest_at_or_before_a_time<S: ContractStore>(store: S) {
    let (user, other) = (fresh_user(), fresh_user());
    let start = chrono::DateTime::from_timestamp_micros(1_790_000_000_000_001).unwrap();
    let checkpoint = |version: u64| crate::Checkpoint {
        version,
        at: start + chrono::Duration::seconds(i64::try_from(version).unwrap()),
        fields: std::collections::BTreeMap::from([
            ("name".to_owned(), format!("Dafé {version}")),
            ("liked".to_owned(), String::new()),
        ]),
    };
    store
        .save_checkpoints(
            "profile",
            vec![
                (user.clone(), checkpoint(100)),
                (user.clone(), checkpoint(200)),
                (other.clone(), checkpoint(150)),
            ],
            &crate::Fence::Unfenced,
        )
        .await
        .unwrap();
    // Saving one again changes nothing.
    store
        .save_checkpoints(
            "profile",
            vec![(user.clone(), checkpoint(100))],
            &crate::Fence::Unfenced,
        )
        .await
        .unwrap();
    let at = |seconds: i64| start + chrono::Duration::seconds(seconds);
    let found = |seconds| {
        let (store, user) = (store.clone(), user.clone());
        async move {
            store
                .checkpoint_at("profile", &user, at(seconds))
                .await
                .unwrap()
        }
    };
    assert_eq!(found(99).await, None);
    assert_eq!(found(100).await, Some(checkpoint(100)));
    assert_eq!(found(199).await, Some(checkpoint(100)));
    assert_eq!(found(200).await, Some(checkpoint(200)));
    assert_eq!(found(1_000_000).await, Some(checkpoint(200)));
    assert_eq!(
        store
            .checkpoint_at("group_view", &user, at(1_000))
            .await
            .unwrap(),
        None
    );
}

pub async fn missing_read_model_is_none<S: ContractStore>(store: S) {
    assert_eq!(
        store
            .get_read_model("contract", &fresh_user())
            .await
            .unwrap(),
        None
    );
}

pub async fn trimming_removes_only_what_every_group_has_acked<S: ContractStore>(store: S) {
    // A category of its own: other cases' groups on the shared ones would hold the floor.
    let name = format!("trim_{}", &Uuid::new_v4().simple().to_string()[..8]);
    let category = Category::parse(&name).unwrap();
    let cats = [category.clone()];
    for i in 0..10 {
        store
            .write_foreign(
                &category,
                vec![("n".to_owned(), i.to_string().into_bytes())],
            )
            .await;
    }
    // No group reads it yet: nothing is trimmed.
    assert_eq!(store.trim_consumed(&cats).await.unwrap(), 0);
    let (behind, ahead) = (fresh_group(), fresh_group());
    store.create_group(&behind, &cats).await.unwrap();
    store.create_group(&ahead, &cats).await.unwrap();
    assert_eq!(
        store.trim_consumed(&cats).await.unwrap(),
        0,
        "nothing read yet"
    );
    // `behind` is handed 6 and acks 4 (5 and 6 pending); `ahead` is handed and acks 8.
    let handed = store
        .read_new(&behind, "c", &cats, 6, Duration::from_millis(10))
        .await
        .unwrap();
    let refs: Vec<_> = handed.iter().map(|d| d.entry.clone()).collect();
    store.ack(&behind, &refs[..4]).await.unwrap();
    let handed = store
        .read_new(&ahead, "c", &cats, 8, Duration::from_millis(10))
        .await
        .unwrap();
    let acked: Vec<_> = handed.iter().map(|d| d.entry.clone()).collect();
    store.ack(&ahead, &acked).await.unwrap();

    assert_eq!(store.trim_consumed(&cats).await.unwrap(), 4);
    let numbers = |entries: Vec<crate::CategoryEntry>| -> Vec<String> {
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(&e.fields[0].1).into_owned())
            .collect()
    };
    let left = store
        .read_category(&category, EntryId::ZERO, 100)
        .await
        .unwrap();
    assert_eq!(numbers(left), ["4", "5", "6", "7", "8", "9"]);
    // Both groups go on where they were: the pending ones can be claimed, the rest read.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let claimed = store
        .claim_idle(&behind, "c2", &cats, Duration::from_millis(10), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let rest = store
        .read_new(&ahead, "c", &cats, 10, Duration::from_millis(10))
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert_eq!(
        store.trim_consumed(&cats).await.unwrap(),
        0,
        "the floor did not move"
    );
}

pub async fn a_read_model_is_served_from_generation_1_until_switched<S: ContractStore>(store: S) {
    // A name of its own: the generation pointer outlives any one stream.
    let name = format!(
        "contract_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    assert_eq!(store.live_generation(&name).await.unwrap(), 1);
    store.set_live_generation(&name, 3).await.unwrap();
    assert_eq!(store.live_generation(&name).await.unwrap(), 3);
    assert_eq!(store.live_generation("contract_other").await.unwrap(), 1);
    assert_eq!(crate::generation_name(&name, 1), name);
    assert_eq!(crate::generation_name("profile", 3), "profile_gen3");
}

/// 40 streams (spread over every partition of a multi-partition store) feed one tally.
pub async fn tallies_count_each_position_once_and_rank_across_partitions<S: ContractStore>(
    store: S,
) {
    let name = tally_name();
    let sources: Vec<StreamId> = (0..40).map(|_| fresh_user()).collect();
    let count = |key: &str, amount: i64| TallyCount {
        version: 2,
        key: key.to_owned(),
        amount,
    };
    let first: Vec<TallyWrite> = sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            let mut counts = vec![count("apple", 1)];
            if i < 10 {
                counts.extend([count("cherry", 1), count("banana", 1)]);
            }
            if i == 0 {
                counts.push(count("gone", 1));
            }
            TallyWrite {
                source: source.clone(),
                expected: 0,
                version: 3,
                counts,
            }
        })
        .collect();
    let outcomes = store
        .apply_tallies(&name, first.clone(), &crate::Fence::Unfenced)
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");

    // The same changes again (a redelivery): every one refused, nothing counted twice.
    let again = store
        .apply_tallies(&name, first, &crate::Fence::Unfenced)
        .await
        .unwrap();
    assert!(
        again
            .iter()
            .all(|o| matches!(o, Err(StoreError::Conflict { actual: 3, .. }))),
        "{again:?}"
    );
    // A later change from one stream takes a key back to 0: it leaves the tally.
    let later = TallyWrite {
        source: sources[0].clone(),
        expected: 3,
        version: 5,
        counts: vec![TallyCount {
            version: 4,
            ..count("gone", -1)
        }],
    };
    assert!(
        store
            .apply_tallies(&name, vec![later], &crate::Fence::Unfenced)
            .await
            .unwrap()[0]
            .is_ok()
    );

    assert_eq!(store.tally_count(&name, "apple").await.unwrap(), 40);
    assert_eq!(store.tally_count(&name, "banana").await.unwrap(), 10);
    assert_eq!(store.tally_count(&name, "gone").await.unwrap(), 0);
    assert_eq!(store.tally_count(&name, "never").await.unwrap(), 0);
    let owned = |pairs: &[(&str, i64)]| -> Vec<(String, i64)> {
        pairs.iter().map(|(k, c)| ((*k).to_owned(), *c)).collect()
    };
    assert_eq!(
        store.tally_top(&name, 2).await.unwrap(),
        owned(&[("apple", 40), ("banana", 10)])
    );
    assert_eq!(
        store.tally_top(&name, 10).await.unwrap(),
        owned(&[("apple", 40), ("banana", 10), ("cherry", 10)])
    );
    let positions = store.tally_positions(&name, &sources[..3]).await.unwrap();
    assert_eq!(positions, [5, 3, 3]);
}

fn tally_name() -> String {
    format!("t{}", &Uuid::new_v4().simple().to_string()[..16])
}

fn counts_of(events: &[(u64, &str)]) -> Vec<TallyCount> {
    events
        .iter()
        .map(|(version, key)| TallyCount {
            version: *version,
            key: (*key).to_owned(),
            amount: 1,
        })
        .collect()
}

/// Two consumers hold overlapping batches of one stream (a claim while the first still ran),
/// and one batch holds a stream twice: whichever lands first, each event counts once, and the
/// loser's retry from the stored position completes the count.
pub async fn overlapping_tally_writes_count_each_event_once<S: ContractStore>(store: S) {
    let name = tally_name();
    let source = fresh_user();
    let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let events: Vec<(u64, &str)> = (1..=6)
        .map(|v| (v, keys[v as usize % keys.len()]))
        .collect();
    let write = |expected: u64, version: u64| TallyWrite {
        source: source.clone(),
        expected,
        version,
        counts: counts_of(&events[expected as usize..version as usize]),
    };
    // Events 1..=2, then a batch with 3..=4 twice, then two racing batches 5 and 5..=6.
    assert!(
        store
            .apply_tallies(&name, vec![write(0, 2)], &crate::Fence::Unfenced)
            .await
            .unwrap()[0]
            .is_ok()
    );
    let twice = store
        .apply_tallies(
            &name,
            vec![write(2, 4), write(2, 4)],
            &crate::Fence::Unfenced,
        )
        .await
        .unwrap();
    assert!(twice[0].is_ok(), "{twice:?}");
    assert!(
        matches!(twice[1], Err(StoreError::Conflict { actual: 4, .. })),
        "{twice:?}"
    );
    assert!(
        store
            .apply_tallies(&name, vec![write(4, 5)], &crate::Fence::Unfenced)
            .await
            .unwrap()[0]
            .is_ok()
    );
    let late = store
        .apply_tallies(&name, vec![write(4, 6)], &crate::Fence::Unfenced)
        .await
        .unwrap();
    assert!(
        matches!(late[0], Err(StoreError::Conflict { actual: 5, .. })),
        "{late:?}"
    );
    assert!(
        store
            .apply_tallies(&name, vec![write(5, 6)], &crate::Fence::Unfenced)
            .await
            .unwrap()[0]
            .is_ok()
    );
    for key in keys {
        let expected = events.iter().filter(|(_, k)| *k == key).count() as i64;
        assert_eq!(
            store.tally_count(&name, key).await.unwrap(),
            expected,
            "{key}"
        );
    }
    assert_eq!(store.tally_positions(&name, &[source]).await.unwrap(), [6]);
}

/// Writes that count each of `keys` once: `per_source` keys from each of fresh users, one
/// event per key (a long tail, as many likers of new objects make it).
pub fn each_counted_once(keys: &[String], per_source: usize) -> Vec<TallyWrite> {
    keys.chunks(per_source.max(1))
        .map(|keys| TallyWrite {
            source: fresh_user(),
            expected: 0,
            version: keys.len() as u64,
            counts: keys
                .iter()
                .enumerate()
                .map(|(i, key)| TallyCount {
                    version: i as u64 + 1,
                    key: key.clone(),
                    amount: 1,
                })
                .collect(),
        })
        .collect()
}

/// Hundreds of keys counted once each (a long tail over every partition), a few counted more:
/// the top is the most counted, then equal counts by key, ascending.
pub async fn a_tally_top_ranks_a_long_tail_by_count_then_key<S: ContractStore>(store: S) {
    let name = tally_name();
    let tail: Vec<String> = (0..300).map(|i| format!("o{i:03}")).collect();
    let mut writes = each_counted_once(&tail, 10);
    for (key, extra) in [("o150", 3), ("o299", 2), ("o007", 2)] {
        for _ in 0..extra {
            writes.push(TallyWrite {
                source: fresh_user(),
                expected: 0,
                version: 1,
                counts: counts_of(&[(1, key)]),
            });
        }
    }
    let outcomes = store
        .apply_tallies(&name, writes, &crate::Fence::Unfenced)
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let top = store.tally_top(&name, 6).await.unwrap();
    let expected: Vec<(String, i64)> = [
        ("o150", 4),
        ("o007", 3),
        ("o299", 3),
        ("o000", 1),
        ("o001", 1),
        ("o002", 1),
    ]
    .iter()
    .map(|(k, c)| ((*k).to_owned(), *c))
    .collect();
    assert_eq!(top, expected);
    assert_eq!(store.tally_top(&name, 1000).await.unwrap().len(), 300);
}

pub async fn a_lease_has_one_holder_and_a_new_token_for_each_new_holder<S: ContractStore>(
    store: S,
) {
    let group = fresh_group();
    let short = Duration::from_millis(200);
    let first = store.acquire_lease(&group, 0, "a", short).await.unwrap();
    let Some(first) = first else {
        panic!("a free lease is taken")
    };
    assert_eq!(
        store.acquire_lease(&group, 0, "b", short).await.unwrap(),
        None
    );
    assert_eq!(
        store.acquire_lease(&group, 0, "a", short).await.unwrap(),
        Some(first),
        "its holder keeps its token"
    );
    assert!(
        store
            .renew_lease(&group, 0, "a", first, short)
            .await
            .unwrap()
    );
    assert!(
        !store
            .renew_lease(&group, 0, "b", first, short)
            .await
            .unwrap()
    );
    let holders = store.lease_holders(&group).await.unwrap();
    assert_eq!(holders.len(), store.partition_count() as usize);
    assert_eq!(
        holders[0],
        Some(crate::LeaseHolder {
            owner: "a".into(),
            token: first
        })
    );

    // Not renewed: it runs out, and the next holder's token is higher.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = store.acquire_lease(&group, 0, "b", short).await.unwrap();
    assert!(
        second.is_some_and(|t| t > first),
        "{second:?} after {first}"
    );
    assert!(
        !store
            .renew_lease(&group, 0, "a", first, short)
            .await
            .unwrap()
    );
    // A former holder cannot release what another holds now.
    store.release_lease(&group, 0, "a", first).await.unwrap();
    assert_eq!(
        store.lease_holders(&group).await.unwrap()[0]
            .as_ref()
            .map(|h| h.owner.as_str()),
        Some("b")
    );
    store
        .release_lease(&group, 0, "b", second.unwrap())
        .await
        .unwrap();
    assert_eq!(store.lease_holders(&group).await.unwrap()[0], None);
    let third = store.acquire_lease(&group, 0, "a", short).await.unwrap();
    assert!(third > second, "{third:?} after {second:?}");
}

pub async fn members_are_listed_by_name_while_their_time_runs<S: ContractStore>(store: S) {
    let group = fresh_group();
    let long = Duration::from_secs(30);
    store.heartbeat(&group, "b", long).await.unwrap();
    let members = store
        .heartbeat(&group, "a", Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(members, ["a", "b"]);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.heartbeat(&group, "c", long).await.unwrap(),
        ["b", "c"]
    );
    store.leave(&group, "b").await.unwrap();
    assert_eq!(store.heartbeat(&group, "c", long).await.unwrap(), ["c"]);
}

pub async fn a_former_holders_writes_are_refused_once_another_holds_the_lease<S: ContractStore>(
    store: S,
) {
    let group = tally_name();
    let partitions: Vec<u32> = (0..store.partition_count()).collect();
    let short = Duration::from_millis(200);
    let take = |owner: &'static str| {
        let (store, group, partitions) = (store.clone(), group.clone(), partitions.clone());
        async move {
            let mut tokens = std::collections::BTreeMap::new();
            for p in partitions {
                let token = store.acquire_lease(&group, p, owner, short).await.unwrap();
                tokens.insert(p, token.unwrap());
            }
            Fence::held(&group, tokens)
        }
    };
    let users: Vec<StreamId> = (0..20).map(|_| fresh_user()).collect();
    let writes = |expected: u64, version: u64| -> Vec<ReadModelWrite> {
        users
            .iter()
            .map(|user| ReadModelWrite {
                stream: user.clone(),
                expected,
                model: ReadModel {
                    version,
                    fields: [("name".to_owned(), format!("v{version}"))].into(),
                },
            })
            .collect()
    };
    let counts = |expected: u64, version: u64| -> Vec<TallyWrite> {
        users
            .iter()
            .map(|user| TallyWrite {
                source: user.clone(),
                expected,
                version,
                counts: vec![TallyCount {
                    version,
                    key: "apple".into(),
                    amount: 1,
                }],
            })
            .collect()
    };

    let a = take("a").await;
    let written = store
        .put_read_models(&group, writes(0, 1), &a)
        .await
        .unwrap();
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    let counted = store.apply_tallies(&group, counts(0, 1), &a).await.unwrap();
    assert!(counted.iter().all(Result::is_ok), "{counted:?}");

    // "a" stalls past its leases; "b" takes the partitions and writes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = take("b").await;
    let counted = store.apply_tallies(&group, counts(1, 2), &b).await.unwrap();
    assert!(counted.iter().all(Result::is_ok), "{counted:?}");

    // "a" wakes up and writes what it had in hand: all refused, nothing changed.
    let late = store
        .put_read_models(&group, writes(1, 2), &a)
        .await
        .unwrap();
    assert!(
        late.iter()
            .all(|o| matches!(o, Err(StoreError::Fenced { .. }))),
        "{late:?}"
    );
    let late = store.apply_tallies(&group, counts(2, 3), &a).await.unwrap();
    assert!(
        late.iter()
            .all(|o| matches!(o, Err(StoreError::Fenced { .. }))),
        "{late:?}"
    );
    let checkpoint = crate::Checkpoint {
        version: 1,
        at: chrono::Utc::now(),
        fields: Default::default(),
    };
    let late = store
        .save_checkpoints(&group, vec![(users[0].clone(), checkpoint.clone())], &a)
        .await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    let models = store.get_read_models(&group, &users).await.unwrap();
    assert!(
        models
            .iter()
            .all(|m| m.as_ref().is_some_and(|m| m.version == 1))
    );
    assert_eq!(store.tally_count(&group, "apple").await.unwrap(), 40);
    assert_eq!(
        store.tally_positions(&group, &users).await.unwrap(),
        vec![2; users.len()]
    );

    // The holder writes; a writer holding none of the partitions writes nothing.
    let written = store
        .put_read_models(&group, writes(1, 2), &b)
        .await
        .unwrap();
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    store
        .save_checkpoints(&group, vec![(users[0].clone(), checkpoint)], &b)
        .await
        .unwrap();
    let nobody = Fence::held(&group, Default::default());
    let refused = store
        .put_read_models(&group, writes(2, 3), &nobody)
        .await
        .unwrap();
    assert!(
        refused
            .iter()
            .all(|o| matches!(o, Err(StoreError::Fenced { .. }))),
        "{refused:?}"
    );
}

pub async fn a_read_model_written_again_keeps_only_its_new_fields<S: ContractStore>(store: S) {
    let user = fresh_user();
    let model = |version: u64, fields: &[(&str, &str)]| ReadModel {
        version,
        fields: fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let write = |expected: u64, model: ReadModel| ReadModelWrite {
        stream: user.clone(),
        expected,
        model,
    };
    let first = model(1, &[("name", "Duffy"), ("nickname", "Duck")]);
    let second = model(2, &[("name", "Daffy")]);
    let third = model(3, &[("name", "Daffy"), ("city", "Toontown")]);
    for (expected, next) in [(0, first), (1, second.clone()), (2, third.clone())] {
        let outcome = store
            .put_read_models("contract", vec![write(expected, next)], &Fence::Unfenced)
            .await
            .unwrap();
        assert!(outcome[0].is_ok(), "{outcome:?}");
        if expected == 1 {
            let stored = store
                .get_read_model("contract", &user)
                .await
                .unwrap()
                .unwrap();
            let names: Vec<&str> = stored.fields.keys().map(String::as_str).collect();
            assert_eq!(names, ["name", "version"], "the dropped field is gone");
        }
    }
    let stored = store
        .get_read_model("contract", &user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.version, 3);
    assert_eq!(
        stored.fields.get("city").map(String::as_str),
        Some("Toontown")
    );
    assert_eq!(stored.fields.get("nickname"), None);
}
