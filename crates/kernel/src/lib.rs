//! The kernel: what a team implements to add an aggregate or a read model, with no storage or
//! service code. Everything here is pure and synchronous; the runtimes in `esr-app` run it.
//!
//! - [`Aggregate`]: a consistency boundary. `decide` turns a command (and the outside facts in
//!   a [`Context`]) into events or a [`Rejection`]; `evolve` folds events into state.
//! - [`View`]: a read model kept per stream, folded from that stream's events, stored as a
//!   flat field map ([`fields`]).
//! - [`Tally`]: counts over many streams keyed by anything (likes per object), each event
//!   counted once.
//! - [`scenario`]: given/when/then for any aggregate, as insta snapshots.
//! - [`Actor`]: who makes a command, in the [`Context`]: `decide` refuses what the actor may
//!   not do ([`RejectionKind::Forbidden`]), and every event records it.
//!
//! The events themselves, their names, versions and categories, are declared in `esr-schema`
//! ([`esr_schema::domain_events!`]).
//!
//! A whole small domain, a tip jar that takes tips up to a limit, with a view and a tally:
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! use esr_kernel::fields::{self, Reader};
//! use esr_kernel::{Actor, Aggregate, Context, FieldError, Rejection, RejectionKind, Tally, View};
//! use esr_schema::{
//!     AggregateType, Category, EntityId, EventEnvelope, EventPayload, StreamId, domain_events,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! const TIPS: Category = Category::declare("tips");
//!
//! #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
//! pub struct Tipped { pub cents: u64, pub from: String }
//! impl EventPayload for Tipped {
//!     const TYPE: &'static str = "tipped";
//!     const CATEGORY: Category = TIPS;
//! }
//!
//! domain_events! {
//!     pub enum JarEvent for AggregateType::declare("jar"), categories [TIPS] {
//!         Tipped(Tipped),
//!     }
//! }
//!
//! #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! pub struct Jar { version: u64, total: u64 }
//!
//! #[derive(Debug, Serialize)]
//! pub struct Tip { cents: u64, from: String }
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("the jar is full")]
//! pub struct Full;
//! impl Rejection for Full {
//!     fn kind(&self) -> RejectionKind { RejectionKind::Conflict }
//!     fn code(&self) -> &'static str { "jar_full" }
//! }
//!
//! impl Aggregate for Jar {
//!     type Event = JarEvent;
//!     type Command = Tip;
//!     type Rejection = Full;
//!     fn version(&self) -> u64 { self.version }
//!     fn decide(&self, _: &EntityId, tip: &Tip, _: &Context) -> Result<Vec<JarEvent>, Full> {
//!         if self.total + tip.cents > 10_000 { return Err(Full); }
//!         Ok(vec![Tipped { cents: tip.cents, from: tip.from.clone() }.into()])
//!     }
//!     fn evolve(&mut self, event: &JarEvent) {
//!         self.version += 1;
//!         let JarEvent::Tipped(t) = event;
//!         self.total += t.cents;
//!     }
//! }
//!
//! /// What a jar's page shows: kept per stream.
//! #[derive(Debug, Clone, Serialize)]
//! pub struct JarPage { version: u64, tips: u64 }
//! impl View for JarPage {
//!     type Event = JarEvent;
//!     const NAME: &'static str = "jar_page";
//!     fn empty(_: &EntityId) -> Self { JarPage { version: 0, tips: 0 } }
//!     fn version(&self) -> u64 { self.version }
//!     fn apply(&mut self, envelope: &EventEnvelope, _: &JarEvent) {
//!         self.version = envelope.version;
//!         self.tips += 1;
//!     }
//!     fn to_fields(&self) -> BTreeMap<String, String> {
//!         BTreeMap::from([("version".into(), self.version.to_string()), ("tips".into(), self.tips.to_string())])
//!     }
//!     fn from_fields(_: &EntityId, stored: &BTreeMap<String, String>) -> Result<Self, FieldError> {
//!         let read = Reader::new(stored);
//!         Ok(JarPage { version: read.parse("version")?, tips: read.parse("tips")? })
//!     }
//! }
//!
//! /// Cents given per tipper, over every jar.
//! pub struct Generosity;
//! impl Tally for Generosity {
//!     type Event = JarEvent;
//!     const NAME: &'static str = "generosity";
//!     fn categories() -> &'static [Category] { const READS: &[Category] = &[TIPS]; READS }
//!     fn count(_: &EventEnvelope, event: &JarEvent) -> Vec<(String, i64)> {
//!         let JarEvent::Tipped(t) = event;
//!         vec![(t.from.clone(), t.cents as i64)]
//!     }
//! }
//!
//! // Deciding is pure: state and a context in, events or a rejection out.
//! let jar = Jar::from_history(&[Tipped { cents: 9_000, from: "ann".into() }.into()]);
//! let context = Context::new(chrono::NaiveDate::MIN, Actor::user("bo", []));
//! let id = EntityId::parse("jar-1")?;
//! assert!(jar.decide(&id, &Tip { cents: 500, from: "bo".into() }, &context).is_ok());
//! assert_eq!(jar.decide(&id, &Tip { cents: 2_000, from: "bo".into() }, &context).unwrap_err().code(), "jar_full");
//! # let _ = (StreamId::of::<JarEvent>(id), fields::json(&1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod actor;
mod aggregate;
pub mod fields;
pub mod scenario;
mod tally;
pub mod validate;
mod view;

pub use actor::Actor;
pub use aggregate::{Aggregate, Context, Rejection, RejectionKind};
pub use fields::FieldError;
pub use tally::Tally;
pub use view::View;
