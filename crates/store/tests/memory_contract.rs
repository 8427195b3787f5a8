//! The in-memory adapter runs the shared contract suite.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

esr_store::contract_suite!(async { (esr_store::MemoryStore::new(), ()) });
