//! Open names: the aggregate types and the category streams each aggregate's events declare.
//!
//! Both become parts of Redis keys and stream-entry field names, so both are checked: 1 to 48
//! characters of `[a-z0-9_]`, starting with a letter, and none of the words the key layout and
//! the entry fields use for themselves.

use std::borrow::Cow;
use std::fmt;

/// Longest name, so a key stays short and readable.
pub const MAX_NAME_LEN: usize = 48;

/// Words a name may not be: key kinds of the layout, and (as `<word>_id`) the entry fields
/// that are not a stream's id.
pub const RESERVED_NAMES: [&str; 10] = [
    "version",
    "checkpoint",
    "layout",
    "idem",
    "snapshot",
    "dead_letters",
    "tally",
    "event",
    "correlation",
    "causation",
];

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid {what} {shown:?}: use 1 to 48 characters of a-z, 0-9 and '_', starting with a letter, and none of {RESERVED_NAMES:?}"
)]
pub struct InvalidName {
    pub what: &'static str,
    pub shown: String,
}

/// Checked in a `const fn`, so a declared name that breaks the rule fails the build.
const fn well_formed(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_NAME_LEN || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return false;
        }
        i += 1;
    }
    let mut r = 0;
    while r < RESERVED_NAMES.len() {
        if eq(bytes, RESERVED_NAMES[r].as_bytes()) {
            return false;
        }
        r += 1;
    }
    true
}

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

macro_rules! name_type {
    ($(#[$meta:meta])* $name:ident, $what:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Cow<'static, str>);

        impl $name {
            /// A name written in the code. Used in a `const`, a bad literal fails the build.
            pub const fn declare(name: &'static str) -> Self {
                assert!(well_formed(name), concat!("invalid ", $what, " name"));
                Self(Cow::Borrowed(name))
            }

            /// A name read from data or configuration.
            pub fn parse(raw: &str) -> Result<Self, InvalidName> {
                if well_formed(raw) {
                    Ok(Self(Cow::Owned(raw.to_owned())))
                } else {
                    Err(InvalidName {
                        what: $what,
                        shown: raw.chars().take(80).collect(),
                    })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
    };
}

name_type!(
    /// A category stream's name (`user_activity`, `group_membership`): what projectors
    /// subscribe to. Each aggregate's events declare theirs.
    Category,
    "category"
);

name_type!(
    /// An aggregate type's name (`user`, `group`): the first half of a [`StreamId`](crate::StreamId).
    AggregateType,
    "aggregate type"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_rule() {
        for ok in [
            "user",
            "user_updates",
            "group_membership",
            "a",
            "a9_",
            &"x".repeat(48),
        ] {
            assert_eq!(
                Category::parse(ok).map(|c| c.to_string()),
                Ok(ok.to_owned())
            );
        }
        for bad in [
            "",
            "User",
            "9a",
            "_a",
            "a-b",
            "a:b",
            "a{b}",
            "é",
            "version",
            "event",
            &"x".repeat(49),
        ] {
            assert!(Category::parse(bad).is_err(), "{bad:?}");
            assert!(AggregateType::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_declared_name_equals_the_parsed_one() {
        const USER: AggregateType = AggregateType::declare("user");
        assert_eq!(AggregateType::parse("user"), Ok(USER));
    }
}
