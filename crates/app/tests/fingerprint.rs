//! The idempotency fingerprint names what a command asks, not how this build spells it: a
//! retry that spans a deploy renaming a command's field is answered, not refused as a reused
//! key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use esr_app::command::fingerprint;
use esr_kernel::{Actor, Aggregate, Context, Rejection, RejectionKind};
use esr_schema::{AggregateType, Category, EntityId, EventPayload, domain_events};
use serde::{Deserialize, Serialize};

const NOTES: Category = Category::declare("notes");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noted {
    pub text: String,
}
impl EventPayload for Noted {
    const TYPE: &'static str = "noted";
    const CATEGORY: Category = NOTES;
}

domain_events! {
    pub enum NoteEvent for AggregateType::declare("note"), categories [NOTES] {
        Noted(Noted),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;
impl Rejection for Never {
    fn kind(&self) -> RejectionKind {
        RejectionKind::Conflict
    }
    fn code(&self) -> &'static str {
        "never"
    }
}

/// The command as the build before the deploy spelt it.
#[derive(Debug, Serialize)]
pub enum Before {
    Write { text: String, urgent: bool },
}

/// The same command after a field was renamed.
#[derive(Debug, Serialize)]
pub enum After {
    Write { body: String, urgent: bool },
}

macro_rules! note_aggregate {
    ($name:ident, $command:ty) => {
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct $name {
            version: u64,
        }
        impl Aggregate for $name {
            type Event = NoteEvent;
            type Command = $command;
            type Rejection = Never;
            fn version(&self) -> u64 {
                self.version
            }
            fn decide(
                &self,
                _: &EntityId,
                _: &$command,
                _: &Context,
            ) -> Result<Vec<NoteEvent>, Never> {
                Ok(vec![])
            }
            fn evolve(&mut self, _: &NoteEvent) {
                self.version += 1;
            }
        }
    };
}

note_aggregate!(NoteBefore, Before);
note_aggregate!(NoteAfter, After);

#[test]
fn renaming_a_commands_field_keeps_its_fingerprint() {
    let ann = Actor::user("ann", []);
    let before = Before::Write {
        text: "hi".into(),
        urgent: true,
    };
    let after = After::Write {
        body: "hi".into(),
        urgent: true,
    };
    assert_eq!(
        fingerprint::<NoteBefore>(&before, &ann),
        fingerprint::<NoteAfter>(&after, &ann)
    );
}

#[test]
fn another_command_or_another_caller_changes_the_fingerprint() {
    let ann = Actor::user("ann", []);
    let write = |text: &str| Before::Write {
        text: text.into(),
        urgent: false,
    };
    let first = fingerprint::<NoteBefore>(&write("hi"), &ann);
    assert_ne!(first, fingerprint::<NoteBefore>(&write("ho"), &ann));
    assert_ne!(
        first,
        fingerprint::<NoteBefore>(&write("hi"), &Actor::user("bo", []))
    );
    assert_ne!(
        first,
        fingerprint::<NoteBefore>(
            &Before::Write {
                text: "hi".into(),
                urgent: true
            },
            &ann
        )
    );
}
