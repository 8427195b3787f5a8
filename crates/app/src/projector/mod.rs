//! The projector side: consumer groups feeding handlers, exactly once in effect.
//!
//! - [`runtime`]: reads batches, claims what dead consumers left, dead-letters poison
//!   entries, acks after the effects are stored; one group per handler.
//! - [`handler`]: the [`Handler`] trait every projection and policy implements.
//! - [`lease`]: the instances of a projector side divide each group's partitions by lease;
//!   writes carry the leases' fencing tokens.
//! - [`per_stream`]: the batching written once for projections that keep a position per
//!   source stream: one read and one conditioned write per stream per batch, gaps filled from
//!   the stream, raced writes retried in rounds.
//! - [`view`]: [`ViewProjection`], any [`esr_kernel::View`] kept per stream (the profile, the
//!   group view).
//! - [`tally`]: [`TallyProjection`], any [`esr_kernel::Tally`] (most-liked objects).

pub mod handler;
pub mod lease;
pub mod per_stream;
pub mod runtime;
pub mod tally;
pub mod view;

pub use handler::{Handler, HandlerError};
pub use runtime::{GroupHealth, ProjectorSettings, Projectors, unique_consumer_name};
pub use tally::TallyProjection;
pub use view::ViewProjection;
