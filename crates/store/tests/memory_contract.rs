//! The in-memory adapter runs the shared contract suite.

esr_store::contract_suite!(async { esr_store::MemoryStore::new() });
