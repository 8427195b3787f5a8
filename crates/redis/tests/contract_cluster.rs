//! The shared contract suite on a 3-master Redis Cluster started by the tests, with 16
//! partitions per category.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

esr_store::contract_suite!(support::cluster());

#[test]
fn every_master_holds_some_partitions() {
    let cluster = esr_testkit::RedisCluster::start(3);
    let mut nodes = std::collections::BTreeSet::new();
    for partition in 0..support::CLUSTER_PARTITIONS {
        let key =
            esr_redis::keys::Keys::category_stream(&esr_schema::user::USER_UPDATES, partition);
        let slot: u16 = cluster.nodes[0]
            .query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(&key))
            .unwrap();
        nodes.insert(cluster.node_of_slot(slot).unwrap());
    }
    assert_eq!(nodes.len(), 3, "partitions land on nodes {nodes:?}");
}
