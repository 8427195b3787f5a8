use std::collections::BTreeMap;

use esr_schema::{Category, DomainEvent, EntityId, EventEnvelope};
use serde::Serialize;

use crate::FieldError;

/// A read model kept per stream (a user's profile, a group's members), folded from that
/// stream's events and stored as a flat field map (a Redis Hash: `HGETALL` reads it).
///
/// The projection runtime (`esr_app::projector`) reads batches, fills gaps from the stream,
/// writes each model only over the version it read, claims and dead-letters, for every view.
/// Register a view with one line in its module: `esr_app::Module::view::<V>()`.
pub trait View: Clone + Serialize + std::fmt::Debug + Send + Sync + 'static {
    type Event: DomainEvent;
    /// The read model's name: its consumer group and its keys' prefix.
    const NAME: &'static str;

    /// The consumer group that projects the view; by default its name.
    fn group() -> &'static str {
        Self::NAME
    }

    /// The categories the view reads; by default every category of its events.
    fn categories() -> &'static [Category] {
        Self::Event::CATEGORIES
    }

    /// The model of a stream with no events applied.
    fn empty(id: &EntityId) -> Self;

    /// The version of the last event applied.
    fn version(&self) -> u64;

    /// Apply one event, recording its version. The runtime hands events in version order.
    fn apply(&mut self, envelope: &EventEnvelope, event: &Self::Event);

    /// The stored form.
    fn to_fields(&self) -> BTreeMap<String, String>;

    /// Read the stored form back. A field a newer build added is absent from models an older
    /// build stored: read it as its default (see [`crate::fields::Reader`]), never fail.
    fn from_fields(id: &EntityId, fields: &BTreeMap<String, String>) -> Result<Self, FieldError>;
}
