//! The shared contract suite on one `redis-server` started by the tests.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

esr_store::contract_suite!(support::single());
