//! Arbitrary bytes and field maps (non-UTF-8 values and odd names included) fed to the entry
//! parser and the codec: a typed error or a value, never a panic; and a well-formed entry
//! always reads back, whatever junk fields sit beside it.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use esr_schema::entry::{self, Fields};
use esr_schema::{
    ActedOn, Action, DomainEvent, EntityId, EventEnvelope, GroupEvent, StoredEvent, StreamId,
    UserEvent, codec, user,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn stored() -> StoredEvent {
    let encoded = codec::encode(&UserEvent::ActedOn(ActedOn {
        action: Action::Like,
        object: "Bugs".into(),
        text: None,
    }))
    .unwrap();
    StoredEvent {
        envelope: EventEnvelope {
            event_id: uuid::Uuid::now_v7(),
            stream: StreamId::new(user::USER, EntityId::parse("u1").unwrap()),
            version: 7,
            event_type: encoded.event_type.to_owned(),
            schema_version: encoded.schema_version,
            occurred_at: chrono::DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            correlation_id: "c".into(),
            causation_id: "d".into(),
            actor: None,
        },
        payload: encoded.payload,
    }
}

/// Field names: the ones the parser looks for, near misses, and anything at all.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "type",
            "user_id",
            "group_id",
            "version",
            "event_id",
            "occurred_at",
            "schema_version",
            "correlation_id",
            "causation_id",
            "payload",
            "_id",
            "event_id_id",
            "",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn fields() -> impl Strategy<Value = Fields> {
    vec((field_name(), vec(any::<u8>(), 0..40)), 0..14)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_fields_parse_to_an_event_or_a_typed_error(fields in fields(), version in any::<u64>()) {
        let _ = entry::from_fields(&fields);
        let stream = StreamId::new(user::USER, EntityId::parse("u1").unwrap());
        let _ = entry::from_stream_fields(&stream, version, &fields);
    }

    /// One field of a good entry replaced by arbitrary bytes: read, or refused with the
    /// field's name, never a panic.
    #[test]
    fn a_good_entry_with_one_field_spoiled_is_read_or_refused(which in 0usize..9, bytes in vec(any::<u8>(), 0..40)) {
        let mut fields = entry::to_fields(&stored());
        fields[which].1 = bytes;
        if let Err(error) = entry::from_fields(&fields) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    /// Junk fields added around a good entry do not stop it from reading back as written.
    #[test]
    fn junk_beside_a_good_entry_leaves_it_readable(junk in vec((any::<String>(), vec(any::<u8>(), 0..20)), 0..6)) {
        let event = stored();
        let mut fields = entry::to_fields(&event);
        let known: Vec<String> = fields.iter().map(|(k, _)| k.clone()).collect();
        fields.extend(junk.into_iter().filter(|(k, _)| !known.contains(k)));
        prop_assert_eq!(entry::from_fields(&fields).unwrap(), event);
    }

    #[test]
    fn arbitrary_payloads_decode_or_fail_typed(
        type_index in any::<prop::sample::Index>(),
        other_type in any::<String>(),
        schema_version in any::<u16>(),
        payload in vec(any::<u8>(), 0..64),
    ) {
        let user_type = type_index.get(UserEvent::TYPES);
        let group_type = type_index.get(GroupEvent::TYPES);
        for event_type in [*user_type, *group_type, other_type.as_str()] {
            let _ = UserEvent::decode(event_type, schema_version, &payload);
            let _ = GroupEvent::decode(event_type, schema_version, &payload);
        }
    }
}
