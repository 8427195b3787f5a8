use std::collections::BTreeSet;

use esr_schema::EntityId;

/// Who a command is made by. The transport authenticates the caller; the domain decides what
/// the caller may do (in `decide`, from [`Context::actor`](crate::Context)); the store records
/// [`Actor::recorded`] in every event the command causes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An authenticated caller: the token's subject and its roles.
    User {
        subject: String,
        roles: BTreeSet<String>,
    },
    /// The service itself, carrying out a policy: `cause` is the recorded actor of the event
    /// that set it off (`None` when that event recorded none).
    System { cause: Option<String> },
    /// Nobody is authenticated (`AUTH=off`, loopback only): every command is allowed.
    Anonymous,
}

impl Actor {
    /// The role that may act on anyone's streams.
    pub const ADMIN_ROLE: &'static str = "admin";

    pub fn user(subject: impl Into<String>, roles: impl IntoIterator<Item = String>) -> Self {
        Actor::User {
            subject: subject.into(),
            roles: roles.into_iter().collect(),
        }
    }

    /// The service acting on an event whose recorded actor is `cause`.
    pub fn system(cause: Option<String>) -> Self {
        Actor::System { cause }
    }

    /// May act on any stream: an admin, the service itself, or anyone when authentication is off.
    pub fn is_admin(&self) -> bool {
        match self {
            Actor::User { roles, .. } => roles.contains(Self::ADMIN_ROLE),
            Actor::System { .. } | Actor::Anonymous => true,
        }
    }

    /// Whether this is the authenticated user whose id is `id`.
    pub fn is(&self, id: &EntityId) -> bool {
        matches!(self, Actor::User { subject, .. } if subject == id.as_str())
    }

    /// May act as the user `id`: that user, or an admin.
    pub fn may_act_for(&self, id: &EntityId) -> bool {
        self.is(id) || self.is_admin()
    }

    /// The user id this actor's subject names, if it is a user whose subject is a valid id.
    pub fn user_id(&self) -> Option<EntityId> {
        match self {
            Actor::User { subject, .. } => EntityId::parse(subject).ok(),
            _ => None,
        }
    }

    /// How an event records this actor: `user:<subject>`, `system` or `system:<cause>` for a
    /// policy, `anonymous` when authentication is off.
    pub fn recorded(&self) -> String {
        match self {
            Actor::User { subject, .. } => format!("user:{subject}"),
            Actor::System { cause: None } => "system".to_owned(),
            Actor::System { cause: Some(cause) } => format!("system:{cause}"),
            Actor::Anonymous => "anonymous".to_owned(),
        }
    }
}

impl std::fmt::Display for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.recorded())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_user_acts_for_themself_and_an_admin_for_anyone() {
        let one = EntityId::parse("1").unwrap();
        let two = EntityId::parse("2").unwrap();
        let user = Actor::user("1", []);
        let admin = Actor::user("9", ["admin".to_owned()]);
        assert!(user.may_act_for(&one) && !user.may_act_for(&two));
        assert!(admin.may_act_for(&two) && !admin.is(&two));
        assert!(Actor::system(None).may_act_for(&two));
        assert!(Actor::Anonymous.may_act_for(&two));
    }

    #[test]
    fn recorded_forms_say_who() {
        assert_eq!(Actor::user("1", []).recorded(), "user:1");
        assert_eq!(
            Actor::system(Some("user:1".into())).recorded(),
            "system:user:1"
        );
        assert_eq!(Actor::system(None).recorded(), "system");
        assert_eq!(Actor::Anonymous.recorded(), "anonymous");
    }
}
