//! The social domain (users and groups) as one module: its aggregates, views, tally and
//! policy, and its routes. The services serve it by listing [`module`]; nothing else in this
//! crate names it.

pub mod bodies;
pub mod commands;
pub mod friendship;
pub mod paths;
pub mod queries;

use std::sync::Arc;

use esr_domain::{Group, GroupView, MostLiked, Profile, User};
use esr_schema::{GroupEvent, UserEvent};

pub use friendship::FriendshipPolicy;

use crate::command::{CommandService, Commands};
use crate::http::Resource;
use crate::module::Module;
use crate::projector::{Handler, ProjectorSettings, Projectors};

/// Users, their friendships and likes; groups and their members.
pub fn module() -> Module {
    Module::new("social")
        .aggregate::<User>()
        .aggregate::<Group>()
        .view::<Profile>()
        .view::<GroupView>()
        .tally::<MostLiked>()
        .policy(friendship::GROUP, friendship::READS, |commands| {
            Arc::new(FriendshipPolicy::new(commands.of::<User>()))
        })
        .command_routes(commands::routes)
        .query_routes(queries::routes)
}

impl Resource for UserEvent {
    const PATH: &'static str = "/users";
    const UNKNOWN: &'static str = "unknown_user";
    const INVALID_ID: &'static str = "invalid_user_id";
    fn noun() -> &'static str {
        "user"
    }
}

impl Resource for GroupEvent {
    const PATH: &'static str = "/groups";
    const UNKNOWN: &'static str = "unknown_group";
    const INVALID_ID: &'static str = "invalid_group_id";
    fn noun() -> &'static str {
        "group"
    }
}

impl Projectors {
    /// The social module's handlers, with the friendship policy on `users` (tests and
    /// benchmarks that hold their own user service).
    pub fn standard(
        store: Arc<dyn esr_store::Store>,
        users: Arc<CommandService<User>>,
        settings: ProjectorSettings,
    ) -> Self {
        let handlers = Self::standard_handlers(&store, users);
        Self::new(store, handlers, settings)
    }

    /// As [`Projectors::standard`], the handlers alone.
    pub fn standard_handlers(
        store: &Arc<dyn esr_store::Store>,
        users: Arc<CommandService<User>>,
    ) -> Vec<Arc<dyn Handler>> {
        let commands = Arc::new(Commands::new(store.clone(), users.settings().clone()));
        commands.adopt(users);
        module().handlers(&commands)
    }
}
