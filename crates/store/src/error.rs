use crate::ExpectedVersion;

/// What can go wrong in a store.
///
/// HTTP mapping used by the services: `Conflict` is 409 (or 412 when the client sent
/// `If-Match`), `KeyReused` 422, `Unavailable` 503, `Corrupt` and `Invalid` 500 (a bug or
/// foreign data, never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stored version is not the one the writer expected. Nothing was written.
    #[error("version conflict: expected {expected}, found {actual}")]
    Conflict {
        expected: ExpectedVersion,
        actual: u64,
    },
    /// The store could not be reached or did not answer; the operation may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Stored data could not be read back.
    #[error("corrupt data in {what}: {reason}")]
    Corrupt { what: String, reason: String },
    /// The idempotency key was used before for another request: nothing was written.
    #[error("idempotency key {key:?} was used before for another request")]
    KeyReused { key: String },
    /// The writer no longer holds the lease of the partition it wrote to (it expired or
    /// another instance took it): nothing was written.
    #[error("the lease on partition {partition} is not held: nothing written")]
    Fenced { partition: u32 },
    /// The caller asked for something the store cannot do (a programming error).
    #[error("invalid request: {0}")]
    Invalid(String),
}
