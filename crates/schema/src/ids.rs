use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{AggregateType, DomainEvent};

/// An aggregate instance's id (a user's, a group's): 1 to 64 characters of `[A-Za-z0-9_-]`.
///
/// The alphabet keeps ids out of Redis key syntax: no `{`/`}` (hash tags) and no `:` (our key
/// separator), so an id can never move its keys to another slot or collide with another key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityId(String);

/// A user's id.
pub type UserId = EntityId;
/// A group's id.
pub type GroupId = EntityId;

/// Why a string is not an [`EntityId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid id {shown:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
pub struct InvalidId {
    /// The rejected input, cut to 80 characters so an error message stays readable.
    pub shown: String,
}

impl EntityId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidId> {
        let well_formed = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidId {
                shown: raw.chars().take(80).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EntityId {
    type Error = InvalidId;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EntityId> for String {
    fn from(id: EntityId) -> Self {
        id.0
    }
}

impl fmt::Display for EntityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for EntityId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A stream: one aggregate instance, one consistency boundary, versions 1, 2, 3, ...
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub aggregate: AggregateType,
    pub id: EntityId,
}

impl StreamId {
    pub fn new(aggregate: AggregateType, id: EntityId) -> Self {
        Self { aggregate, id }
    }

    /// The stream of `id` for the aggregate whose events are `E`.
    pub fn of<E: DomainEvent>(id: EntityId) -> Self {
        Self::new(E::AGGREGATE, id)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.aggregate, self.id)
    }
}

/// An id as the OpenAPI documents state it: the rule [`EntityId::parse`] checks.
impl utoipa::PartialSchema for EntityId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(Self::MAX_LEN))
            .pattern(Some(ID_PATTERN))
            .description(Some("1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"))
            .into()
    }
}

impl utoipa::ToSchema for EntityId {}

/// [`EntityId::parse`]'s rule as a regular expression.
pub const ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_posts_ids_and_the_full_alphabet() {
        for ok in ["1", "2", "a-B_9", &"x".repeat(64)] {
            assert_eq!(
                EntityId::parse(ok).map(|id| id.to_string()),
                Ok(ok.to_string())
            );
        }
    }

    #[test]
    fn rejects_key_syntax_empty_and_too_long() {
        for bad in ["", "a{b}", "a:b", "a b", "é", &"x".repeat(65)] {
            assert!(EntityId::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
