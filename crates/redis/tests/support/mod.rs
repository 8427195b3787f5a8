//! Servers shared by the cases of one test binary, removed when the last case holding one ends.

use std::sync::{Arc, Mutex, Weak};

use esr_redis::{RedisConfig, RedisStore, Topology};
use esr_testkit::{RedisCluster, RedisServer};

pub fn shared<T>(slot: &Mutex<Weak<T>>, start: impl FnOnce() -> T) -> Arc<T> {
    let mut weak = slot.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(alive) = weak.upgrade() {
        return alive;
    }
    let fresh = Arc::new(start());
    *weak = Arc::downgrade(&fresh);
    fresh
}

#[allow(dead_code)] // each test binary uses one topology
pub async fn single() -> (RedisStore, Arc<RedisServer>) {
    static SERVER: Mutex<Weak<RedisServer>> = Mutex::new(Weak::new());
    let server = shared(&SERVER, RedisServer::start);
    let store = RedisStore::connect(RedisConfig::new(Topology::Single(server.url())))
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    (store, server)
}

/// Partitions on the test cluster: enough that every one of the 3 masters holds some.
#[allow(dead_code)]
pub const CLUSTER_PARTITIONS: u32 = 16;

#[allow(dead_code)]
pub async fn cluster() -> (RedisStore, Arc<RedisCluster>) {
    static CLUSTER: Mutex<Weak<RedisCluster>> = Mutex::new(Weak::new());
    let cluster = shared(&CLUSTER, || RedisCluster::start(3));
    let mut config = RedisConfig::new(Topology::Cluster(cluster.urls()));
    config.partitions = CLUSTER_PARTITIONS;
    let store = RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect: {e}"));
    (store, cluster)
}
