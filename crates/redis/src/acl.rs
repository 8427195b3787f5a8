//! Least privilege: the Redis commands and keys each side uses, in one table per side, from
//! which both the `ACL SETUSER` line `esr acl` prints and the check every side runs at start
//! are built. Key patterns come from the key layout's own functions (`keys.rs`), so a key
//! renamed there is renamed here.
//!
//! The start check queues one probe of every use inside `MULTI` and `DISCARD`s it: Redis checks
//! a queued command's permissions (command and keys) when it is queued, and a discarded
//! transaction runs nothing, so the check writes nothing and needs no admin right. A `NOPERM`
//! names the missing permission; any other answer means the user may.

use esr_schema::{AggregateType, Category, EntityId, StreamId};
use redis::Value;

use crate::keys::Keys;
use crate::{RedisStore, classify};

/// A side of the service, each connecting as its own Redis user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Command,
    Projector,
    Query,
    /// The operators' tool, `esr`.
    Admin,
}

impl Side {
    pub const ALL: [Side; 4] = [Side::Command, Side::Projector, Side::Query, Side::Admin];

    /// The Redis user's name: `esr-command`, `esr-projector`, `esr-query`, `esr-admin`.
    pub fn user(self) -> &'static str {
        match self {
            Side::Command => "esr-command",
            Side::Projector => "esr-projector",
            Side::Query => "esr-query",
            Side::Admin => "esr-admin",
        }
    }
}

/// What the registered domain puts in Redis: the names the key patterns are made of.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub aggregates: Vec<AggregateType>,
    pub categories: Vec<Category>,
    /// Read models (per-stream views).
    pub read_models: Vec<String>,
    pub tallies: Vec<String>,
    /// Consumer groups (projections and policies): their partitions' leases and members.
    pub groups: Vec<String>,
}

/// A family of keys of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Stream,
    Version,
    Idempotency,
    IdempotencyClaim,
    Snapshot,
    Category,
    ReadModel,
    Checkpoint,
    Tally,
    DeadLetters,
    Redriven,
    Generation,
    Rebuild,
    Layout,
    Lease,
    Members,
}

/// One use of Redis: a command (`xgroup|create`), the key family it touches (if any), and the
/// arguments of a probe of it (`KEY` stands for the probe key).
struct Use {
    command: &'static str,
    family: Option<Family>,
    probe: &'static [&'static str],
}

const fn on(command: &'static str, family: Family, probe: &'static [&'static str]) -> Use {
    Use {
        command,
        family: Some(family),
        probe,
    }
}

const fn keyless(command: &'static str, probe: &'static [&'static str]) -> Use {
    Use {
        command,
        family: None,
        probe,
    }
}

/// What every side runs: connecting (`CLIENT SETNAME`; `SELECT` for a
/// database in the URL), `PING`, the start's checks (`INFO`, `CONFIG GET`, the partition count
/// stored on first start), Cluster's topology and redirections, scripts, and this check.
const CONNECTING: &[Use] = &[
    keyless("ping", &["PING"]),
    keyless("hello", &["HELLO", "2"]),
    keyless("select", &["SELECT", "0"]),
    keyless("client|setname", &["CLIENT", "SETNAME", "probe"]),
    keyless("info", &["INFO", "server"]),
    keyless("config|get", &["CONFIG", "GET", "appendonly"]),
    keyless("cluster|slots", &["CLUSTER", "SLOTS"]),
    keyless("cluster|shards", &["CLUSTER", "SHARDS"]),
    keyless("readonly", &["READONLY"]),
    keyless("asking", &["ASKING"]),
    keyless("multi", &[]),
    keyless("discard", &[]),
    on("get", Family::Layout, &["GET", "KEY"]),
];

const SCRIPTS: &[Use] = &[
    keyless(
        "evalsha",
        &["EVALSHA", "0000000000000000000000000000000000000000", "0"],
    ),
    keyless("script|load", &["SCRIPT", "LOAD", "return 0"]),
];

/// The command side: load (snapshot, stream), append (the append script: counter,
/// idempotency record, stream, category streams), snapshots, `WAIT`, and `/readyz`'s group
/// check on the categories.
const COMMAND: &[Use] = &[
    // The first writer to start stores the partition count.
    on("set", Family::Layout, &["SET", "KEY", "1", "NX", "GET"]),
    on(
        "xrange",
        Family::Stream,
        &["XRANGE", "KEY", "-", "+", "COUNT", "1"],
    ),
    on(
        "xrevrange",
        Family::Stream,
        &["XREVRANGE", "KEY", "+", "-", "COUNT", "1"],
    ),
    on("xadd", Family::Stream, &["XADD", "KEY", "1-0", "f", "v"]),
    on("type", Family::Stream, &["TYPE", "KEY"]),
    on("get", Family::Version, &["GET", "KEY"]),
    on("set", Family::Version, &["SET", "KEY", "v"]),
    on("get", Family::Idempotency, &["GET", "KEY"]),
    on("set", Family::Idempotency, &["SET", "KEY", "v", "PX", "1"]),
    on(
        "set",
        Family::IdempotencyClaim,
        &["SET", "KEY", "v", "NX", "GET", "PX", "1"],
    ),
    on("xadd", Family::Category, &["XADD", "KEY", "*", "f", "v"]),
    on("type", Family::Category, &["TYPE", "KEY"]),
    // An append whose category key holds another type undoes its writes.
    on("xdel", Family::Category, &["XDEL", "KEY", "1-0"]),
    on("xdel", Family::Stream, &["XDEL", "KEY", "1-0"]),
    on("xlen", Family::Stream, &["XLEN", "KEY"]),
    on("xsetid", Family::Stream, &["XSETID", "KEY", "1-0"]),
    on("del", Family::Stream, &["DEL", "KEY"]),
    on(
        "xinfo|groups",
        Family::Category,
        &["XINFO", "GROUPS", "KEY"],
    ),
    on("hgetall", Family::Snapshot, &["HGETALL", "KEY"]),
    on("hget", Family::Snapshot, &["HGET", "KEY", "version"]),
    on("hset", Family::Snapshot, &["HSET", "KEY", "version", "1"]),
    keyless("wait", &["WAIT", "0", "1"]),
];

/// The projector: the consumer groups on the categories (read, claim, ack, dead letters,
/// pruning, trimming), read models with their checkpoints, tallies, generations, gap filling
/// from the streams; and the friendship policy's commands, as the command side runs them.
const PROJECTOR: &[Use] = &[
    on(
        "xreadgroup",
        Family::Category,
        &["XREADGROUP", "GROUP", "g", "c", "STREAMS", "KEY", ">"],
    ),
    on("xack", Family::Category, &["XACK", "KEY", "g", "1-0"]),
    on(
        "xautoclaim",
        Family::Category,
        &["XAUTOCLAIM", "KEY", "g", "c", "1", "0"],
    ),
    on(
        "xclaim",
        Family::Category,
        &["XCLAIM", "KEY", "g", "c", "1", "1-0"],
    ),
    on(
        "xgroup|create",
        Family::Category,
        &["XGROUP", "CREATE", "KEY", "g", "0", "MKSTREAM"],
    ),
    on(
        "xgroup|delconsumer",
        Family::Category,
        &["XGROUP", "DELCONSUMER", "KEY", "g", "c"],
    ),
    on(
        "xinfo|consumers",
        Family::Category,
        &["XINFO", "CONSUMERS", "KEY", "g"],
    ),
    on("xpending", Family::Category, &["XPENDING", "KEY", "g"]),
    on(
        "xrange",
        Family::Category,
        &["XRANGE", "KEY", "-", "+", "COUNT", "1"],
    ),
    on("xlen", Family::Category, &["XLEN", "KEY"]),
    on("exists", Family::Category, &["EXISTS", "KEY"]),
    on("xtrim", Family::Category, &["XTRIM", "KEY", "MINID", "0"]),
    on("hgetall", Family::ReadModel, &["HGETALL", "KEY"]),
    on("hget", Family::ReadModel, &["HGET", "KEY", "version"]),
    on("hset", Family::ReadModel, &["HSET", "KEY", "version", "1"]),
    on("hlen", Family::ReadModel, &["HLEN", "KEY"]),
    on("del", Family::ReadModel, &["DEL", "KEY"]),
    on("zadd", Family::Checkpoint, &["ZADD", "KEY", "1", "m"]),
    on("zrange", Family::Checkpoint, &["ZRANGE", "KEY", "0", "0"]),
    on(
        "zremrangebyscore",
        Family::Checkpoint,
        &["ZREMRANGEBYSCORE", "KEY", "0", "0"],
    ),
    on("zincrby", Family::Tally, &["ZINCRBY", "KEY", "1", "m"]),
    on("zrem", Family::Tally, &["ZREM", "KEY", "m"]),
    on("get", Family::Tally, &["GET", "KEY"]),
    on("set", Family::Tally, &["SET", "KEY", "1"]),
    on("hget", Family::Tally, &["HGET", "KEY", "f"]),
    on("hset", Family::Tally, &["HSET", "KEY", "f", "1"]),
    on("xadd", Family::DeadLetters, &["XADD", "KEY", "*", "f", "v"]),
    on("xlen", Family::DeadLetters, &["XLEN", "KEY"]),
    on("get", Family::Generation, &["GET", "KEY"]),
    // Partition leases (`lua/lease.lua`), read by every write script, and members
    // (`lua/heartbeat.lua`).
    on("hmget", Family::Lease, &["HMGET", "KEY", "owner", "token"]),
    on("hget", Family::Lease, &["HGET", "KEY", "token"]),
    on("hset", Family::Lease, &["HSET", "KEY", "owner", "o"]),
    on("pexpire", Family::Lease, &["PEXPIRE", "KEY", "1"]),
    on("incr", Family::Lease, &["INCR", "KEY"]),
    on("del", Family::Lease, &["DEL", "KEY"]),
    keyless("time", &["TIME"]),
    on("zadd", Family::Members, &["ZADD", "KEY", "1", "m"]),
    on(
        "zremrangebyscore",
        Family::Members,
        &["ZREMRANGEBYSCORE", "KEY", "0", "0"],
    ),
    on("zrange", Family::Members, &["ZRANGE", "KEY", "0", "0"]),
    on("zrem", Family::Members, &["ZREM", "KEY", "m"]),
    keyless("exec", &[]),
];

/// The query side: read models and their checkpoints, streams (`?at=`, history), versions,
/// tallies, generations, and `/readyz`'s group check. Reads only.
const QUERY: &[Use] = &[
    on("hgetall", Family::ReadModel, &["HGETALL", "KEY"]),
    on("zrange", Family::Checkpoint, &["ZRANGE", "KEY", "0", "0"]),
    on(
        "xrange",
        Family::Stream,
        &["XRANGE", "KEY", "-", "+", "COUNT", "1"],
    ),
    on("get", Family::Version, &["GET", "KEY"]),
    on("zrange", Family::Tally, &["ZRANGE", "KEY", "0", "0"]),
    on("zscore", Family::Tally, &["ZSCORE", "KEY", "m"]),
    on("get", Family::Generation, &["GET", "KEY"]),
    on(
        "xinfo|groups",
        Family::Category,
        &["XINFO", "GROUPS", "KEY"],
    ),
    on("xlen", Family::DeadLetters, &["XLEN", "KEY"]),
];

/// `esr`: reading everything (`check`, `events`, `tail`, `groups`, dead letters), pruning
/// consumers, redriving and purging dead letters, rebuilding read models, moving partitions.
const ADMIN: &[Use] = &[
    on("xread", Family::Category, &["XREAD", "STREAMS", "KEY", "0"]),
    // `esr groups` lists categories no module declares (key names only).
    keyless(
        "scan",
        &[
            "SCAN", "0", "MATCH", "*:{p0}", "COUNT", "1", "TYPE", "stream",
        ],
    ),
    // `esr partitions spread` weighs a category stream before moving it.
    on(
        "memory|usage",
        Family::Category,
        &["MEMORY", "USAGE", "KEY"],
    ),
    on(
        "xinfo|stream",
        Family::Category,
        &["XINFO", "STREAM", "KEY"],
    ),
    on(
        "xrange",
        Family::DeadLetters,
        &["XRANGE", "KEY", "-", "+", "COUNT", "1"],
    ),
    on("xdel", Family::DeadLetters, &["XDEL", "KEY", "1-0"]),
    on("del", Family::DeadLetters, &["DEL", "KEY"]),
    on("xadd", Family::Redriven, &["XADD", "KEY", "*", "f", "v"]),
    on(
        "xrange",
        Family::Redriven,
        &["XRANGE", "KEY", "-", "+", "COUNT", "1"],
    ),
    on("set", Family::Generation, &["SET", "KEY", "2"]),
    on("hgetall", Family::Rebuild, &["HGETALL", "KEY"]),
    on("hset", Family::Rebuild, &["HSET", "KEY", "done", "0"]),
    on("del", Family::Rebuild, &["DEL", "KEY"]),
    keyless("cluster|nodes", &["CLUSTER", "NODES"]),
    keyless("cluster|keyslot", &["CLUSTER", "KEYSLOT", "k"]),
    keyless("cluster|setslot", &["CLUSTER", "SETSLOT", "0", "STABLE"]),
    keyless(
        "cluster|getkeysinslot",
        &["CLUSTER", "GETKEYSINSLOT", "0", "1"],
    ),
    keyless(
        "cluster|countkeysinslot",
        &["CLUSTER", "COUNTKEYSINSLOT", "0"],
    ),
    keyless(
        "migrate",
        &["MIGRATE", "127.0.0.1", "1", "", "0", "1", "KEYS", "k"],
    ),
];

/// Commands that change data: the keys they touch need write access (`%W~` or `~`).
const WRITES: &[&str] = &[
    "set",
    "xsetid",
    "pexpire",
    "incr",
    "xadd",
    "hset",
    "del",
    "xack",
    "xautoclaim",
    "xclaim",
    "xgroup|create",
    "xgroup|delconsumer",
    "xtrim",
    "xdel",
    "zadd",
    "zremrangebyscore",
    "zincrby",
    "zrem",
    "xreadgroup",
];

fn uses(side: Side) -> Vec<&'static Use> {
    let tables: &[&[Use]] = match side {
        Side::Command => &[CONNECTING, SCRIPTS, COMMAND],
        // The friendship policy issues commands: the command side's uses too.
        Side::Projector => &[CONNECTING, SCRIPTS, COMMAND, PROJECTOR],
        Side::Query => &[CONNECTING, QUERY],
        Side::Admin => &[CONNECTING, SCRIPTS, COMMAND, PROJECTOR, QUERY, ADMIN],
    };
    tables.iter().flat_map(|table| table.iter()).collect()
}

/// What a side is granted: commands, and key patterns readable or writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub commands: Vec<&'static str>,
    /// `(pattern, writable)`: read-only patterns are `%R~`, writable ones `~` (read and write).
    pub keys: Vec<(String, bool)>,
}

/// The partition tag every pattern and probe key is built from, then replaced.
const TAG: &str = "{p0}";
/// A partition no store has, so a probe key never names data.
const PROBE_TAG: &str = "{p-probe}";
/// An id no stream has (ids are `[A-Za-z0-9_-]`), for probe keys.
const PROBE_ID: &str = "permission.probe";
const ID: &str = "ID";

impl Layout {
    /// Read models and tallies whose names the key layout cannot take: a reserved word, a
    /// name that is not plain, an aggregate type (its keys would meet that aggregate's
    /// streams), or a name taken twice. Empty when the layout is sound.
    pub fn naming_conflicts(&self) -> Vec<String> {
        let mut conflicts = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for name in self.read_models.iter().chain(&self.tallies) {
            if !crate::keys::valid_view_name(name) {
                conflicts.push(format!("{name:?} is not a plain name or is reserved"));
            } else if self.aggregates.iter().any(|a| a.as_str() == name) {
                conflicts.push(format!(
                    "{name:?} is an aggregate type: its keys would meet that aggregate's streams"
                ));
            } else if seen.contains(&name.as_str()) {
                conflicts.push(format!("{name:?} names two views"));
            }
            seen.push(name);
        }
        conflicts
    }

    /// The keys of `family` as `(glob pattern, probe key)` pairs, from the key functions.
    fn family(&self, family: Family) -> Vec<(String, String)> {
        let keys = Keys { partitions: 1 };
        let streams: Vec<StreamId> = match EntityId::parse(ID) {
            Ok(id) => self
                .aggregates
                .iter()
                .map(|aggregate| StreamId::new(aggregate.clone(), id.clone()))
                .collect(),
            Err(_) => vec![],
        };
        let per_stream = |key: &dyn Fn(&StreamId) -> String| -> Vec<(String, String)> {
            streams.iter().map(|s| pattern_and_probe(&key(s))).collect()
        };
        // Generations of a read model are `<name>_gen<N>`: its patterns take them in.
        let per_view = |key: &dyn Fn(&str, &StreamId) -> String| -> Vec<(String, String)> {
            let mut found = Vec::new();
            for name in &self.read_models {
                for stream in &streams {
                    let (pattern, probe) = pattern_and_probe(&key(name, stream));
                    found.push((
                        pattern.replacen(name.as_str(), &format!("{name}*"), 1),
                        probe,
                    ));
                }
            }
            found
        };
        let mut found: Vec<(String, String)> = match family {
            Family::Stream => per_stream(&|s| keys.stream(s)),
            // Users' keys name the id alone, others `<aggregate>:<id>`: `*` takes both in.
            Family::Version => per_stream(&|s| keys.version(s)),
            Family::Idempotency => per_stream(&|s| keys.idempotency(s, ID)),
            Family::IdempotencyClaim => vec![pattern_and_probe(&keys.idempotency_claim(ID))],
            Family::Snapshot => per_stream(&|s| keys.snapshot(s)),
            Family::Category => self
                .categories
                .iter()
                .map(|c| pattern_and_probe(&Keys::category_stream(c, 0)))
                .collect(),
            Family::ReadModel => per_view(&|name, s| keys.read_model(name, s)),
            Family::Checkpoint => per_view(&|name, s| keys.checkpoints(name, s)),
            Family::Tally => {
                let mut found = Vec::new();
                for name in &self.tallies {
                    // Counts, what each partition counted, and positions share the prefix
                    // `tally:{pN}:<name>`.
                    let (pattern, probe) = pattern_and_probe(&Keys::tally(name, 0));
                    found.push((format!("{pattern}*"), probe));
                    for stream in &streams {
                        found.push(pattern_and_probe(&keys.tally_position(name, stream)));
                    }
                }
                found
            }
            Family::DeadLetters => vec![pattern_and_probe(&Keys::dead_letters(0))],
            Family::Redriven => vec![pattern_and_probe(&Keys::redriven(0))],
            Family::Generation => self
                .read_models
                .iter()
                .map(|name| pattern_and_probe(&Keys::generation(name)))
                .collect(),
            Family::Rebuild => self
                .read_models
                .iter()
                .map(|name| pattern_and_probe(&Keys::rebuild(name)))
                .collect(),
            Family::Layout => vec![pattern_and_probe(crate::keys::PARTITIONS)],
            // The lease and its token counter share the prefix `lease:{pN}:<group>`.
            Family::Lease => self
                .groups
                .iter()
                .map(|group| {
                    let (pattern, probe) = pattern_and_probe(&Keys::lease(group, 0));
                    (format!("{pattern}*"), probe)
                })
                .collect(),
            Family::Members => self
                .groups
                .iter()
                .map(|group| pattern_and_probe(&Keys::members(group)))
                .collect(),
        };
        found.dedup();
        found
    }

    /// What `side` is granted.
    pub fn grant(&self, side: Side) -> Grant {
        let uses = uses(side);
        let mut commands: Vec<&'static str> = uses.iter().map(|u| u.command).collect();
        commands.sort_unstable();
        commands.dedup();
        let mut families: Vec<(Family, bool)> = Vec::new();
        for used in &uses {
            let Some(family) = used.family else { continue };
            let writes = WRITES.contains(&used.command);
            match families.iter_mut().find(|(f, _)| *f == family) {
                Some((_, writable)) => *writable |= writes,
                None => families.push((family, writes)),
            }
        }
        families.sort();
        let mut keys: Vec<(String, bool)> = Vec::new();
        for (family, writable) in families {
            for (pattern, _) in self.family(family) {
                if !keys.iter().any(|(p, _)| *p == pattern) {
                    keys.push((pattern, writable));
                }
            }
        }
        Grant { commands, keys }
    }

    /// `ACL SETUSER` for `side`, with `password`, as Redis 7.0 accepts it: everything
    /// reset first, then only what the side uses.
    pub fn setuser(&self, side: Side, password: &str) -> String {
        let grant = self.grant(side);
        let mut line = format!(
            "ACL SETUSER {} reset on >{password} resetchannels -@all",
            side.user()
        );
        for command in &grant.commands {
            line.push_str(&format!(" +{command}"));
        }
        for (pattern, writable) in &grant.keys {
            let access = if *writable { "~" } else { "%R~" };
            line.push_str(&format!(" {access}{pattern}"));
        }
        line
    }
}

/// A key of partition 0 (and stream id `ID`) as a glob pattern (any partition, any id) and as
/// a probe key (a partition and an id no store has).
fn pattern_and_probe(key: &str) -> (String, String) {
    let with = |tag: &str, id: &str| {
        key.replace(TAG, tag)
            .split(':')
            .map(|part| if part == ID { id } else { part })
            .collect::<Vec<_>>()
            .join(":")
    };
    (with("{p*}", "*"), with(PROBE_TAG, PROBE_ID))
}

/// A permission the connected user lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// What the probe ran, e.g. `XADD user_activity:{p-probe} * f v`.
    pub probe: String,
    /// Redis's answer.
    pub reply: String,
}

impl RedisStore {
    /// Check that the connected user may do everything `side` does, without doing any of
    /// it (see the module documentation). Every missing permission is returned.
    pub async fn missing_permissions(
        &self,
        side: Side,
        layout: &Layout,
    ) -> crate::Result<Vec<Missing>> {
        let mut probes: Vec<Vec<String>> = Vec::new();
        for used in uses(side) {
            if used.probe.is_empty() {
                continue;
            }
            let keys = match used.family {
                Some(family) => layout.family(family).into_iter().map(|(_, k)| k).collect(),
                None => vec![String::new()],
            };
            for key in keys {
                let args: Vec<String> = used
                    .probe
                    .iter()
                    .map(|arg| {
                        if *arg == "KEY" {
                            key.clone()
                        } else {
                            (*arg).to_owned()
                        }
                    })
                    .collect();
                if !probes.contains(&args) {
                    probes.push(args);
                }
            }
        }
        let mut conn = self.probe_connection().await?;
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        pipe.cmd("MULTI");
        for args in &probes {
            let mut cmd = redis::cmd(&args[0]);
            for arg in &args[1..] {
                cmd.arg(arg);
            }
            pipe.add_command(cmd);
        }
        pipe.cmd("DISCARD");
        let replies: Vec<redis::RedisResult<Value>> =
            pipe.query_async(&mut conn).await.map_err(classify)?;
        // The first reply is MULTI's, the last DISCARD's.
        Ok(probes
            .iter()
            .zip(replies.iter().skip(1))
            .filter_map(|(args, reply)| match reply {
                Err(error) if error.code() == Some("NOPERM") => Some(Missing {
                    probe: args.join(" "),
                    reply: format!("NOPERM {}", error.detail().unwrap_or_default()),
                }),
                _ => None,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use esr_schema::group::GROUP;
    use esr_schema::user::{USER, USER_ACTIVITY};

    #[test]
    fn views_named_like_an_aggregate_or_twice_are_conflicts() {
        let layout = Layout {
            aggregates: vec![esr_schema::user::USER, esr_schema::group::GROUP],
            categories: vec![],
            read_models: vec!["group".into(), "profile".into()],
            tallies: vec!["profile".into(), "most_liked".into()],
            groups: vec![],
        };
        let conflicts = layout.naming_conflicts();
        assert_eq!(conflicts.len(), 2, "{conflicts:?}");
        assert!(conflicts[0].contains("aggregate type"), "{conflicts:?}");
        assert!(conflicts[1].contains("two views"), "{conflicts:?}");
    }

    fn layout() -> Layout {
        Layout {
            aggregates: vec![USER, GROUP],
            categories: vec![USER_ACTIVITY],
            read_models: vec!["profile".into()],
            tallies: vec!["most_liked".into()],
            groups: vec!["profile".into(), "most_liked".into()],
        }
    }

    #[test]
    fn patterns_come_from_the_key_layout() {
        let grant = layout().grant(Side::Projector);
        let patterns: Vec<&str> = grant.keys.iter().map(|(p, _)| p.as_str()).collect();
        for expected in [
            "user:{p*}:*",
            "group:{p*}:*",
            "version:{p*}:*",
            "version:{p*}:group:*",
            "idem:{p*}:*:*",
            "idem:{p*}:group:*:*",
            "user_activity:{p*}",
            "profile*:{p*}:*",
            "checkpoint:profile*:{p*}:*",
            "tally:{p*}:most_liked*",
            "dead_letters:{p*}",
            "generation:profile",
            "layout:partitions",
        ] {
            assert!(
                patterns.contains(&expected),
                "{expected} not in {patterns:?}"
            );
        }
    }

    #[test]
    fn the_query_side_reads_only() {
        let grant = layout().grant(Side::Query);
        assert!(grant.keys.iter().all(|(_, writable)| !writable));
        for write in ["xadd", "hset", "evalsha", "xack", "del"] {
            assert!(!grant.commands.contains(&write), "{write}");
        }
        let line = layout().setuser(Side::Query, "pw");
        assert!(
            line.starts_with("ACL SETUSER esr-query reset on >pw resetchannels -@all +"),
            "{line}"
        );
        assert!(line.contains(" %R~profile*:{p*}:*"), "{line}");
    }
}
