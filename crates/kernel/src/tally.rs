use esr_schema::{Category, DomainEvent, EventEnvelope};

/// Counts over many streams, keyed by something other than a stream (likes per object, a
/// leaderboard), each event counted exactly once.
///
/// The runtime records, with each change and in the same atomic step, how far it has counted
/// each source stream, so a redelivered or claimed event, or two consumers, never count twice.
pub trait Tally: Send + Sync + 'static {
    type Event: DomainEvent;
    /// The tally's name: its consumer group and its keys' part.
    const NAME: &'static str;

    /// The categories the tally reads.
    fn categories() -> &'static [Category];

    /// What one event adds: (key, amount) pairs; none for an event that does not count.
    fn count(envelope: &EventEnvelope, event: &Self::Event) -> Vec<(String, i64)>;
}
