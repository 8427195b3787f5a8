//! Where each partition lives on a Cluster, and moving partitions between masters while the
//! store is in use.
//!
//! A partition is one slot: every key of it carries the hash tag `{pN}`. So a partition moves
//! with Redis Cluster's own slot migration (importing on the target, migrating on the source,
//! `MIGRATE` of its keys, then the slot handed over), and nothing of ours changes: the cluster
//! connection follows the redirections. While a slot moves, a command touching keys on both
//! sides is answered `TRYAGAIN`: appends to that one partition wait or fail as unavailable
//! (nothing is written), and go through once the slot has moved.

use std::collections::BTreeMap;

use esr_store::{Result, StoreError};

use crate::keys::Keys;
use crate::{RedisStore, classify, corrupt};

/// A master of the cluster: its node id and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Master {
    pub address: String,
    pub id: String,
}

/// One partition: its slot and the address of the master serving it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionPlace {
    pub partition: u32,
    pub slot: u16,
    pub master: String,
}

/// Every partition's place, the masters (sorted by address), and the moves a stopped run left
/// half done (their slot still migrating: appends to that partition answer `TRYAGAIN` until
/// the move is finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub masters: Vec<Master>,
    pub partitions: Vec<PartitionPlace>,
    pub unfinished: Vec<Move>,
}

/// Moving one partition from one master to another (addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub partition: u32,
    pub slot: u16,
    pub from: String,
    pub to: String,
}

/// Keys moved per `MIGRATE`, and how long one may take.
const MIGRATE_BATCH: usize = 1000;
const MIGRATE_TIMEOUT_MS: u64 = 30_000;

impl Placement {
    /// Partitions per master, every master listed (0 for one holding none).
    pub fn per_master(&self) -> BTreeMap<&str, usize> {
        let mut counts: BTreeMap<&str, usize> = self
            .masters
            .iter()
            .map(|m| (m.address.as_str(), 0))
            .collect();
        for place in &self.partitions {
            *counts.entry(place.master.as_str()).or_default() += 1;
        }
        counts
    }

    /// The fewest moves after which every master holds `P / M` partitions, or one more: the
    /// masters holding most keep the extra ones, the rest is handed to the masters short of
    /// their share.
    pub fn spread_moves(&self) -> Vec<Move> {
        let masters = self.masters.len();
        if masters == 0 {
            return vec![];
        }
        let total = self.partitions.len();
        let (base, extra) = (total / masters, total % masters);
        let mut by_master: BTreeMap<&str, Vec<&PartitionPlace>> = self
            .masters
            .iter()
            .map(|m| (m.address.as_str(), vec![]))
            .collect();
        for place in &self.partitions {
            by_master
                .entry(place.master.as_str())
                .or_default()
                .push(place);
        }
        // The `extra` masters holding most get one above the base; ties by address.
        let mut order: Vec<(&str, usize)> =
            by_master.iter().map(|(m, held)| (*m, held.len())).collect();
        order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let target: BTreeMap<&str, usize> = order
            .iter()
            .enumerate()
            .map(|(rank, (master, _))| (*master, base + usize::from(rank < extra)))
            .collect();
        let mut surplus: Vec<&PartitionPlace> = vec![];
        for (master, held) in &by_master {
            let keep = target.get(master).copied().unwrap_or(0);
            surplus.extend(held.iter().skip(keep));
        }
        let mut moves = vec![];
        for (master, held) in &by_master {
            let want = target.get(master).copied().unwrap_or(0);
            for _ in held.len()..want {
                let Some(place) = surplus.pop() else {
                    break;
                };
                moves.push(Move {
                    partition: place.partition,
                    slot: place.slot,
                    from: place.master.clone(),
                    to: (*master).to_owned(),
                });
            }
        }
        moves
    }

    fn master(&self, address: &str) -> Result<&Master> {
        self.masters
            .iter()
            .find(|m| m.address == address)
            .ok_or_else(|| StoreError::Invalid(format!("{address} is not a master of the cluster")))
    }
}

impl RedisStore {
    /// Where every partition lives. Only on Cluster.
    pub async fn placement(&self) -> Result<Placement> {
        let mut conn = self.conn();
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await
            .map_err(|e| match e.kind() {
                redis::ErrorKind::Server(_) => {
                    StoreError::Invalid(format!("not a Redis Cluster: {e}"))
                }
                _ => classify(e),
            })?;
        let Nodes {
            masters,
            owners,
            mut moving,
        } = parse_cluster_nodes(&nodes)?;
        // A node shows a slot migrating or importing only on its own line: ask every master.
        for master in &masters {
            let mut node = self
                .inner
                .connector
                .node(&master.address)
                .await
                .map_err(classify)?;
            let own: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut node)
                .await
                .map_err(classify)?;
            for (slot, step) in parse_cluster_nodes(&own)?.moving {
                moving.entry(slot).or_insert(step);
            }
        }
        // One round trip for every partition's slot.
        let mut keyslots = redis::pipe();
        for partition in 0..self.partitions() {
            keyslots
                .cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(Keys::tag(partition));
        }
        let slots: Vec<u16> = keyslots.query_async(&mut conn).await.map_err(classify)?;
        let mut partitions = vec![];
        let mut unfinished = vec![];
        for (partition, slot) in (0..self.partitions()).zip(slots) {
            let master = owners
                .get(&slot)
                .cloned()
                .ok_or_else(|| corrupt("CLUSTER NODES", format!("no master serves slot {slot}")))?;
            if let Some((from, to)) = moving.get(&slot) {
                unfinished.push(Move {
                    partition,
                    slot,
                    from: from.clone().unwrap_or_else(|| master.clone()),
                    to: to.clone(),
                });
            }
            partitions.push(PartitionPlace {
                partition,
                slot,
                master,
            });
        }
        Ok(Placement {
            masters,
            partitions,
            unfinished,
        })
    }

    /// Move one partition's slot and keys to another master, live. Safe to run again after an
    /// interruption, to the same target (a stopped move is in [`Placement::unfinished`]): a key
    /// still on the source is the one written last, and replaces any copy a stopped run left
    /// on the target. Returns the keys moved.
    pub async fn move_partition(&self, placement: &Placement, step: &Move) -> Result<u64> {
        let (from, to) = (placement.master(&step.from)?, placement.master(&step.to)?);
        let connector = &self.inner.connector;
        let mut source = connector.node(&from.address).await.map_err(classify)?;
        let mut target = connector.node(&to.address).await.map_err(classify)?;
        let setslot = |state: &str, node: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(step.slot).arg(state).arg(node);
            cmd
        };
        // A stopped run may have handed the slot to the target already: then only the keys
        // left on the source and the other masters' view remain.
        let target_owns = placement
            .partitions
            .iter()
            .any(|p| p.slot == step.slot && p.master == to.address);
        if !target_owns {
            let () = setslot("IMPORTING", &from.id)
                .query_async(&mut target)
                .await
                .map_err(classify)?;
            let () = setslot("MIGRATING", &to.id)
                .query_async(&mut source)
                .await
                .map_err(classify)?;
        }
        let (host, port) = to
            .address
            .rsplit_once(':')
            .ok_or_else(|| corrupt("CLUSTER NODES", format!("address {}", to.address)))?;
        let mut moved = 0u64;
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(step.slot)
                .arg(MIGRATE_BATCH)
                .query_async(&mut source)
                .await
                .map_err(classify)?;
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg(host)
                .arg(port)
                .arg("")
                .arg(0)
                .arg(MIGRATE_TIMEOUT_MS)
                .arg("REPLACE");
            connector.migrate_auth(&mut migrate);
            migrate.arg("KEYS").arg(&keys);
            let _: redis::Value = migrate.query_async(&mut source).await.map_err(classify)?;
            moved += keys.len() as u64;
        }
        // The target first: once it owns the slot, redirections from anywhere end there. Each
        // master names the new owner once its SETSLOT returns.
        let handed_over = |master: &Master, e: redis::RedisError| {
            StoreError::Unavailable(Box::new(std::io::Error::other(format!(
                "handing slot {} to {} on {}: {e}",
                step.slot, to.address, master.address
            ))))
        };
        for (master, conn) in [(to, &mut target), (from, &mut source)] {
            let () = setslot("NODE", &to.id)
                .query_async(conn)
                .await
                .map_err(|e| handed_over(master, e))?;
        }
        for other in placement
            .masters
            .iter()
            .filter(|m| m.id != from.id && m.id != to.id)
        {
            let mut conn = connector.node(&other.address).await.map_err(classify)?;
            let () = setslot("NODE", &to.id)
                .query_async(&mut conn)
                .await
                .map_err(|e| handed_over(other, e))?;
        }
        Ok(moved)
    }
}

/// What `CLUSTER NODES` says.
struct Nodes {
    /// Masters (not failed), sorted by address.
    masters: Vec<Master>,
    /// The master serving each slot.
    owners: BTreeMap<u16, String>,
    /// Slots a move left migrating or importing: the addresses of the master they were leaving
    /// (when it still says so) and of the one they were going to.
    moving: BTreeMap<u16, (Option<String>, String)>,
}

fn parse_cluster_nodes(text: &str) -> Result<Nodes> {
    let mut masters = vec![];
    let mut owners = BTreeMap::new();
    // `[slot->-target id]` on the source, `[slot-<-source id]` on the target: ids first.
    let mut moving_ids: BTreeMap<u16, (Option<String>, String)> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(id), Some(address), Some(flags)) = (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(corrupt("CLUSTER NODES", format!("line {line:?}")));
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|f| f.starts_with("fail")) {
            continue;
        }
        // `host:port@cport[,hostname]`.
        let address = address.split('@').next().unwrap_or(address).to_owned();
        for range in fields.iter().skip(8) {
            // `[slot->-node]` and `[slot-<-node]`: a move in progress, not ownership.
            if let Some(inner) = range.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
                let bad = || corrupt("CLUSTER NODES", format!("slot move {range:?}"));
                if let Some((slot, target)) = inner.split_once("->-") {
                    moving_ids.insert(
                        slot.parse().map_err(|_| bad())?,
                        (Some((*id).to_owned()), target.to_owned()),
                    );
                } else if let Some((slot, source)) = inner.split_once("-<-") {
                    moving_ids
                        .entry(slot.parse().map_err(|_| bad())?)
                        .or_insert_with(|| (Some(source.to_owned()), (*id).to_owned()));
                }
                continue;
            }
            let bad = || corrupt("CLUSTER NODES", format!("slot range {range:?}"));
            let (start, end) = match range.split_once('-') {
                Some((a, b)) => (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?),
                None => {
                    let slot = range.parse().map_err(|_| bad())?;
                    (slot, slot)
                }
            };
            for slot in start..=end {
                owners.insert(slot, address.clone());
            }
        }
        masters.push(Master {
            address,
            id: (*id).to_owned(),
        });
    }
    masters.sort();
    let address = |id: &str| {
        masters
            .iter()
            .find(|m| m.id == id)
            .map(|m| m.address.clone())
    };
    let moving = moving_ids
        .into_iter()
        .filter_map(|(slot, (from, to))| {
            Some((slot, (from.as_deref().and_then(address), address(&to)?)))
        })
        .collect();
    Ok(Nodes {
        masters,
        owners,
        moving,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(held: &[(&str, &[u32])]) -> Placement {
        Placement {
            masters: held
                .iter()
                .map(|(m, _)| Master {
                    address: (*m).to_owned(),
                    id: format!("id-{m}"),
                })
                .collect(),
            partitions: held
                .iter()
                .flat_map(|(m, parts)| {
                    parts.iter().map(|p| PartitionPlace {
                        partition: *p,
                        slot: *p as u16,
                        master: (*m).to_owned(),
                    })
                })
                .collect(),
            unfinished: vec![],
        }
    }

    fn after(placement: &Placement, moves: &[Move]) -> Vec<usize> {
        let mut moved = placement.clone();
        for step in moves {
            for place in &mut moved.partitions {
                if place.partition == step.partition {
                    assert_eq!(place.master, step.from);
                    place.master = step.to.clone();
                }
            }
        }
        moved.per_master().values().copied().collect()
    }

    #[test]
    fn sixteen_partitions_land_five_five_six_in_one_move() {
        // What `redis-cli --cluster create` gives `{p0}`..`{p15}` on three masters.
        let uneven = placement(&[
            ("a:1", &[0, 1, 2, 3]),
            ("b:1", &[4, 5, 6, 7, 8]),
            ("c:1", &[9, 10, 11, 12, 13, 14, 15]),
        ]);
        let moves = uneven.spread_moves();
        assert_eq!(moves.len(), 1, "{moves:?}");
        let mut counts = after(&uneven, &moves);
        counts.sort();
        assert_eq!(counts, vec![5, 5, 6]);
    }

    #[test]
    fn a_new_empty_master_takes_its_share() {
        let grown = placement(&[
            ("a:1", &[0, 1, 2, 3, 4, 5]),
            ("b:1", &[6, 7, 8, 9, 10, 11]),
            ("c:1", &[]),
        ]);
        let moves = grown.spread_moves();
        assert_eq!(moves.len(), 4);
        assert!(moves.iter().all(|m| m.to == "c:1"));
        assert_eq!(after(&grown, &moves), vec![4, 4, 4]);
    }

    #[test]
    fn an_even_placement_needs_no_move() {
        let even = placement(&[("a:1", &[0, 1]), ("b:1", &[2, 3])]);
        assert!(even.spread_moves().is_empty());
    }

    #[test]
    fn cluster_nodes_are_read_with_moves_in_progress() {
        let text = "\
07c3 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460 [5461->-e2f1]
e2f1 127.0.0.1:30002@40002,host2 master - 0 0 2 connected 5461-10922 [5461-<-07c3]
91aa 127.0.0.1:30003@40003 master,fail - 0 0 3 connected
b0b0 127.0.0.1:30004@40004 slave 07c3 0 0 1 connected
ffee 127.0.0.1:30005@40005 master - 0 0 4 connected 10923-16383
";
        let Nodes {
            masters,
            owners,
            moving,
        } = parse_cluster_nodes(text).unwrap();
        let addresses: Vec<&str> = masters.iter().map(|m| m.address.as_str()).collect();
        assert_eq!(
            addresses,
            ["127.0.0.1:30001", "127.0.0.1:30002", "127.0.0.1:30005"]
        );
        assert_eq!(owners.len(), 16384);
        assert_eq!(owners[&5461], "127.0.0.1:30002");
        assert_eq!(owners[&16383], "127.0.0.1:30005");
        // Slot 5461 was going from 30001 to 30002.
        assert_eq!(moving.len(), 1);
        assert_eq!(
            moving[&5461],
            (
                Some("127.0.0.1:30001".to_owned()),
                "127.0.0.1:30002".to_owned()
            )
        );
    }
}
