//! The key layout. Every key of a user, and the category streams that user's events go to,
//! share one hash tag `{pN}` (N: the user's partition), so a script touching them all stays in
//! one Cluster slot.
//!
//! | key | type | written by | read by |
//! |---|---|---|---|
//! | `user:{pN}:<id>` | stream, entry id `<version>-0` | append script | command side, `?at=`, history, gap filling |
//! | `version:{pN}:<id>` | string | append script | append script, `user_version` |
//! | `idem:{pN}:<id>:<key>` | string (expires) | append script | append script, command side |
//! | `user_updates:{pN}`, `user_activity:{pN}`, `user_friends:{pN}` | stream + consumer groups | append script | projectors, `XREAD` |
//! | `snapshot:{pN}:<id>` | hash `version`, `state` | snapshot script | command side |
//! | `<read model>:{pN}:<id>` (e.g. `profile:{p0}:1`) | hash, with `version` | read-model script | query side, projectors |
//! | `dead_letters:{pN}` | stream | projectors | operators |

use esr_schema::{Category, UserId};

/// Which partition a user belongs to. FNV-1a, fixed forever: a user's partition must never
/// change, so neither may this function, nor the partition count of a deployment.
pub fn partition_of(user_id: &UserId, partitions: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in user_id.as_str().bytes() {
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
    pub fn partition(&self, user_id: &UserId) -> u32 {
        partition_of(user_id, self.partitions)
    }

    pub fn tag(partition: u32) -> String {
        format!("{{p{partition}}}")
    }

    pub fn category_stream(category: Category, partition: u32) -> String {
        format!("{}:{}", category.name(), Self::tag(partition))
    }

    /// The category of a category-stream key, for acks and dead letters.
    pub fn category_of_stream(stream: &str) -> Option<(Category, u32)> {
        let (name, tag) = stream.split_once(':')?;
        let partition = tag.strip_prefix("{p")?.strip_suffix('}')?.parse().ok()?;
        Some((Category::from_name(name)?, partition))
    }

    pub fn dead_letters(partition: u32) -> String {
        format!("dead_letters:{}", Self::tag(partition))
    }

    fn user_key(&self, kind: &str, user_id: &UserId) -> String {
        format!("{kind}:{}:{user_id}", Self::tag(self.partition(user_id)))
    }

    pub fn user_stream(&self, user_id: &UserId) -> String {
        self.user_key("user", user_id)
    }

    pub fn version(&self, user_id: &UserId) -> String {
        self.user_key("version", user_id)
    }

    pub fn idempotency(&self, user_id: &UserId, key: &str) -> String {
        format!("{}:{key}", self.user_key("idem", user_id))
    }

    pub fn snapshot(&self, user_id: &UserId) -> String {
        self.user_key("snapshot", user_id)
    }

    pub fn read_model(&self, name: &str, user_id: &UserId) -> String {
        self.user_key(name, user_id)
    }
}

/// Read model names become key prefixes: keep them short, plain, and clear of our own.
pub fn valid_read_model_name(name: &str) -> bool {
    const RESERVED: [&str; 8] = [
        "user",
        "version",
        "idem",
        "snapshot",
        "dead_letters",
        "user_updates",
        "user_activity",
        "user_friends",
    ];
    !name.is_empty()
        && name.len() <= 32
        && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        && !RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_keys_share_one_hash_tag() {
        let keys = Keys { partitions: 16 };
        let user = UserId::parse("Duffy-1").unwrap();
        let tag = Keys::tag(keys.partition(&user));
        for key in [
            keys.user_stream(&user),
            keys.version(&user),
            keys.idempotency(&user, "k{x}"),
            keys.snapshot(&user),
            keys.read_model("profile", &user),
        ] {
            assert!(key.contains(&tag), "{key} lacks {tag}");
            assert_eq!(
                key.find('{'),
                key.find(&tag),
                "{key}: the partition tag comes first"
            );
        }
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        // Fixed values: changing the function would move existing users.
        let p = |id: &str| partition_of(&UserId::parse(id).unwrap(), 16);
        // FNV-1a 32-bit of the id's bytes, modulo the partition count.
        assert_eq!((p("1"), p("2"), p("Duffy")), (12, 5, 5));
        let used: std::collections::BTreeSet<u32> =
            (0..200).map(|i| p(&format!("user{i}"))).collect();
        assert_eq!(used.len(), 16);
    }

    #[test]
    fn category_streams_parse_back() {
        let key = Keys::category_stream(Category::UserFriends, 7);
        assert_eq!(key, "user_friends:{p7}");
        assert_eq!(
            Keys::category_of_stream(&key),
            Some((Category::UserFriends, 7))
        );
        assert_eq!(Keys::category_of_stream("user_friends"), None);
    }

    #[test]
    fn read_model_names_are_checked() {
        assert!(valid_read_model_name("profile"));
        for bad in ["", "user", "snapshot", "Profile", "a:b", "a{b}"] {
            assert!(!valid_read_model_name(bad), "{bad}");
        }
    }
}
