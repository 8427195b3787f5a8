use std::fmt;

use serde::{Deserialize, Serialize};

/// A user id: 1 to 64 characters of `[A-Za-z0-9_-]`.
///
/// The alphabet keeps ids out of Redis key syntax: no `{`/`}` (hash tags) and no `:` (our key
/// separator), so a user id can never move its keys to another slot or collide with another key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId(String);

/// Why a string is not a [`UserId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid user id {shown:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
pub struct InvalidUserId {
    /// The rejected input, cut to 80 characters so an error message stays readable.
    pub shown: String,
}

impl UserId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidUserId> {
        let well_formed = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidUserId {
                shown: raw.chars().take(80).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for UserId {
    type Error = InvalidUserId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<UserId> for String {
    fn from(id: UserId) -> Self {
        id.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for UserId {
    type Err = InvalidUserId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_posts_ids_and_the_full_alphabet() {
        for ok in ["1", "2", "a-B_9", &"x".repeat(64)] {
            assert_eq!(
                UserId::parse(ok).map(|id| id.to_string()),
                Ok(ok.to_string())
            );
        }
    }

    #[test]
    fn rejects_key_syntax_empty_and_too_long() {
        for bad in ["", "a{b}", "a:b", "a b", "é", &"x".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
