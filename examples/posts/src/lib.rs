//! A team's domain in its own crate: posts written by registered users. It depends on the
//! kernel (its aggregate and view) and the service library (its routes and module) only, and
//! is served beside the social module by listing [`module`] in a binary (`src/main.rs`).

pub mod events;
pub mod post;
pub mod routes;

pub use events::{POST, POSTS, PostEvent};
pub use post::{Post, PostCommand, PostRejection, PostView};

use esr_app::Module;

/// Posts: the aggregate, its view, and its routes.
pub fn module() -> Module {
    Module::new("posts")
        .aggregate::<Post>()
        .view::<PostView>()
        .command_routes(routes::command_routes)
        .query_routes(routes::query_routes)
}
