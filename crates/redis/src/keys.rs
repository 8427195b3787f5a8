//! The key layout, written once. Every key of a stream, and the category streams that stream's
//! events go to, share one hash tag `{pN}` (N: the stream's partition, from its id), so a
//! script touching them all stays in one Cluster slot.
//!
//! | key | type | written by | read by |
//! |---|---|---|---|
//! | `<aggregate>:{pN}:<id>` (`user:{p0}:1`, `group:{p0}:g1`) | stream, entry id `<version>-0` | append script | command side, `?at=`, history, gap filling |
//! | `version:{pN}:<stream>` | string `<version>\|<last event's occurred_at>` | append script | append script, `stream_version` |
//! | `idem:{pN}:<stream>:<key>` | string (expires) | append script | append script, command side |
//! | `idem_key:{pN}:<key>` | string (expires): the stream the key was first sent for; N from the key | the append, before the script | the same |
//! | `<category>:{pN}` (`user_activity:{p0}`) | stream + consumer groups | append script | projectors, `XREAD` |
//! | `snapshot:{pN}:<stream>` | hash `version`, `state` | snapshot script | command side |
//! | `<read model>:{pN}:<stream>` (`profile:{p0}:1`) | hash, with `version` | read-model script | query side, projectors |
//! | `tally:{pN}:<tally>` | sorted set: member, minus its count; N from the member, not a stream | tally count script | query side |
//! | `tally:{pN}:<tally>:sources` | hash: `<aggregate>:<id>` to the last version counted into this partition | tally count script | the same |
//! | `tally:{pN}:<tally>:<stream>` | string: the stream's last version counted | tally position script | projectors |
//! | `tally:{pN}:<tally>:fences` | hash: source partition to the newest fencing token seen counting into this partition | tally count script | the same |
//! | `lease:{pN}:<group>` | hash `owner`, `token` (expires): who holds the group's partition N | lease script | write scripts (fencing), `esr groups` |
//! | `lease:{pN}:<group>:token` | string: the last fencing token given for the partition | lease script | the same |
//! | `members:<group>` | sorted set: a group's live projector instances, by when each one's time runs out | heartbeat script | every instance |
//! | `dead_letters:{pN}` | stream | projectors | operators |
//! | `generation:<read model>` | string: the generation served, absent for 1 (`<name>_gen<N>` holds generation N's models) | `esr projection rebuild` | projectors, query side |
//! | `rebuild:<read model>` | hash: a rebuild in progress (`generation`, `done`, `position:<category>:<partition>`) | `esr projection rebuild` | the same, resuming |
//! | `redriven:{pN}` | stream: dead letters handed back to their group | `esr dead-letters redrive` | operators |
//! | `layout:partitions` | string: the partition count the store was created with | first start | every start |
//!
//! `<stream>` is `<aggregate>:<id>`, except for `user`, whose keys keep the names they had
//! before other aggregates existed (`version:{p0}:1`), so a store written then reads on. Ids
//! have no `:`, so the two forms never meet; a view may not be named `user`, the one name
//! whose keys would meet the user streams'.

use esr_schema::{Category, EntityId, StreamId, user};

/// The partition count the store was created with (no hash tag: read once, at start).
pub const PARTITIONS: &str = "layout:partitions";

/// Which partition an id belongs to. FNV-1a, fixed forever: a stream's partition must never
/// change, so neither may this function, nor the partition count of a deployment.
pub fn partition_of(id: &EntityId, partitions: u32) -> u32 {
    partition_of_key(id.as_str(), partitions)
}

/// Which partition a tally keeps a counted key in (the same function as a stream's id).
pub fn partition_of_key(key: &str, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash % partitions.max(1)
}

#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub partitions: u32,
}

impl Keys {
    pub fn partition(&self, stream: &StreamId) -> u32 {
        partition_of(&stream.id, self.partitions)
    }

    pub fn tag(partition: u32) -> String {
        format!("{{p{partition}}}")
    }

    pub fn category_stream(category: &Category, partition: u32) -> String {
        format!("{category}:{}", Self::tag(partition))
    }

    /// The category and partition of a category-stream key, for acks and dead letters.
    pub fn category_of_stream(stream: &str) -> Option<(Category, u32)> {
        let (name, tag) = stream.split_once(':')?;
        let partition = tag.strip_prefix("{p")?.strip_suffix('}')?.parse().ok()?;
        Some((Category::parse(name).ok()?, partition))
    }

    pub fn dead_letters(partition: u32) -> String {
        format!("dead_letters:{}", Self::tag(partition))
    }

    /// The generation of a read model that is served (no hash tag: one key, read by all).
    pub fn generation(name: &str) -> String {
        format!("generation:{name}")
    }

    /// A rebuild in progress: its generation, position per category, entries done.
    pub fn rebuild(name: &str) -> String {
        format!("rebuild:{name}")
    }

    pub fn redriven(partition: u32) -> String {
        format!("redriven:{}", Self::tag(partition))
    }

    /// `<kind>:{pN}:<stream>`, the stream named as the module doc says.
    fn stream_key(&self, kind: &str, stream: &StreamId) -> String {
        let tag = Self::tag(self.partition(stream));
        if stream.aggregate == user::USER {
            format!("{kind}:{tag}:{}", stream.id)
        } else {
            format!("{kind}:{tag}:{}:{}", stream.aggregate, stream.id)
        }
    }

    /// The stream itself: `<aggregate>:{pN}:<id>`.
    pub fn stream(&self, stream: &StreamId) -> String {
        format!(
            "{}:{}:{}",
            stream.aggregate,
            Self::tag(self.partition(stream)),
            stream.id
        )
    }

    pub fn version(&self, stream: &StreamId) -> String {
        self.stream_key("version", stream)
    }

    pub fn idempotency(&self, stream: &StreamId, key: &str) -> String {
        format!("{}:{key}", self.stream_key("idem", stream))
    }

    /// Which stream an idempotency key was first sent for: a key names one request, whatever
    /// its stream, so a key is claimed here (in the key's own partition) before the append.
    pub fn idempotency_claim(&self, key: &str) -> String {
        format!(
            "idem_key:{}:{key}",
            Self::tag(partition_of_key(key, self.partitions))
        )
    }

    pub fn snapshot(&self, stream: &StreamId) -> String {
        self.stream_key("snapshot", stream)
    }

    pub fn read_model(&self, name: &str, stream: &StreamId) -> String {
        self.stream_key(name, stream)
    }

    /// Checkpoints of a read model: a sorted set scored by time (see `read_model.rs`).
    pub fn checkpoints(&self, name: &str, stream: &StreamId) -> String {
        self.stream_key(&format!("checkpoint:{name}"), stream)
    }

    /// A tally's counts of the keys in one partition (a key's whole count is in one).
    pub fn tally(name: &str, partition: u32) -> String {
        format!("tally:{}:{name}", Self::tag(partition))
    }

    /// The partition a tally keeps `key`'s count in.
    pub fn tally_partition(&self, key: &str) -> u32 {
        partition_of_key(key, self.partitions)
    }

    /// How far a tally's counts in one partition have counted each source stream: a hash of
    /// `<aggregate>:<id>` to the version of the last event counted there.
    pub fn tally_sources(name: &str, partition: u32) -> String {
        format!("tally:{}:{name}:sources", Self::tag(partition))
    }

    /// The newest fencing token of each source partition seen counting into this partition.
    pub fn tally_fences(name: &str, partition: u32) -> String {
        format!("tally:{}:{name}:fences", Self::tag(partition))
    }

    /// Who holds a group's partition (see `lua/lease.lua`).
    pub fn lease(group: &str, partition: u32) -> String {
        format!("lease:{}:{group}", Self::tag(partition))
    }

    /// The last fencing token given for a group's partition.
    pub fn lease_token(group: &str, partition: u32) -> String {
        format!("{}:token", Self::lease(group, partition))
    }

    /// A group's live instances (no hash tag: one key, read by all).
    pub fn members(group: &str) -> String {
        format!("members:{group}")
    }

    /// How far a tally has counted a stream's events.
    pub fn tally_position(&self, name: &str, stream: &StreamId) -> String {
        format!(
            "tally:{}:{name}:{}:{}",
            Self::tag(self.partition(stream)),
            stream.aggregate,
            stream.id
        )
    }
}

/// Read model and tally names become key parts: keep them short, plain, and clear of the
/// layout's own words (the store also refuses its aggregate types: `RedisConfig::aggregates`).
pub fn valid_view_name(name: &str) -> bool {
    Category::parse(name).is_ok() && name.len() <= 32 && name != user::USER.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use esr_schema::group::GROUP;

    fn user(id: &str) -> StreamId {
        StreamId::new(user::USER, EntityId::parse(id).unwrap())
    }

    #[test]
    fn a_streams_keys_share_one_hash_tag() {
        let keys = Keys { partitions: 16 };
        for stream in [
            user("Duffy-1"),
            StreamId::new(GROUP, EntityId::parse("g-1").unwrap()),
        ] {
            let tag = Keys::tag(keys.partition(&stream));
            for key in [
                keys.stream(&stream),
                keys.version(&stream),
                keys.idempotency(&stream, "k{x}"),
                keys.snapshot(&stream),
                keys.read_model("profile", &stream),
                keys.tally_position("most_liked", &stream),
            ] {
                assert!(key.contains(&tag), "{key} lacks {tag}");
                assert_eq!(
                    key.find('{'),
                    key.find(&tag),
                    "{key}: the partition tag comes first"
                );
            }
        }
    }

    #[test]
    fn user_keys_keep_their_names_and_other_aggregates_add_theirs() {
        let keys = Keys { partitions: 1 };
        let group = StreamId::new(GROUP, EntityId::parse("1").unwrap());
        assert_eq!(keys.stream(&user("1")), "user:{p0}:1");
        assert_eq!(keys.version(&user("1")), "version:{p0}:1");
        assert_eq!(keys.idempotency(&user("1"), "k"), "idem:{p0}:1:k");
        assert_eq!(keys.snapshot(&user("1")), "snapshot:{p0}:1");
        assert_eq!(keys.stream(&group), "group:{p0}:1");
        assert_eq!(keys.version(&group), "version:{p0}:group:1");
        assert_eq!(keys.snapshot(&group), "snapshot:{p0}:group:1");
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: changing the function would move existing streams.
        let p = |id: &str| partition_of(&EntityId::parse(id).unwrap(), 16);
        // FNV-1a 32-bit of the id's bytes, modulo the partition count.
        assert_eq!((p("1"), p("2"), p("Duffy")), (12, 5, 5));
        let used: std::collections::BTreeSet<u32> =
            (0..200).map(|i| p(&format!("user{i}"))).collect();
        assert_eq!(used.len(), 16);
    }

    #[test]
    fn category_streams_parse_back() {
        let key = Keys::category_stream(&user::USER_FRIENDS, 7);
        assert_eq!(key, "user_friends:{p7}");
        assert_eq!(
            Keys::category_of_stream(&key),
            Some((user::USER_FRIENDS, 7))
        );
        assert_eq!(Keys::category_of_stream("user_friends"), None);
    }

    #[test]
    fn view_names_are_checked() {
        assert!(valid_view_name("profile"));
        for bad in [
            "", "user", "version", "snapshot", "Profile", "a:b", "a{b}", "tally",
        ] {
            assert!(!valid_view_name(bad), "{bad}");
        }
    }
}
