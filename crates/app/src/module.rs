//! A domain, registered once: its aggregates, views, tallies and policies, and the routes of
//! its commands and reads. The sides serve what the modules they are given declare, the
//! projector runs their handlers, `/openapi.json` is read off their routes, and the admin tool
//! and the tests list categories, groups and views from them. Nothing else lists them.
//!
//! ```
//! use esr_app::Module;
//! let social = esr_app::social::module();
//! assert!(social.groups().iter().any(|group| group.name == "friendship_policy"));
//! let modules = esr_app::Modules::from(vec![social]);
//! assert!(modules.command_paths().contains(&("POST".to_owned(), "/users".to_owned())));
//! # let _ = Module::new("empty");
//! ```

use std::sync::Arc;

use esr_kernel::{Aggregate, Tally, View};
use esr_schema::{AggregateType, Category, DecodeError, DomainEvent, StoredEvent};
use esr_store::Store;
use utoipa_axum::router::OpenApiRouter;

use crate::command::Commands;
use crate::projector::{Handler, TallyProjection, ViewProjection};
use crate::query::QueryService;

/// One aggregate a module declares.
#[derive(Debug, Clone)]
pub struct AggregateDecl {
    pub aggregate: AggregateType,
    pub categories: &'static [Category],
    /// An event of this aggregate as JSON, decoded by its type (the admin tool shows it).
    pub decode: fn(&StoredEvent) -> Result<serde_json::Value, DecodeError>,
}

/// A consumer group a module's projector runs, known without building its handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDecl {
    pub name: &'static str,
    pub categories: &'static [Category],
}

/// A view: its name, and its projection pinned to a generation (for rebuilds).
#[derive(Clone)]
pub struct ViewDecl {
    pub name: &'static str,
    pub group: GroupDecl,
    make: fn(Arc<dyn Store>) -> Arc<dyn Handler>,
    pinned: fn(Arc<dyn Store>, u32) -> Arc<dyn Handler>,
}

impl ViewDecl {
    /// The projection that writes generation `generation` whatever the one served.
    pub fn pinned(&self, store: Arc<dyn Store>, generation: u32) -> Arc<dyn Handler> {
        (self.pinned)(store, generation)
    }
}

/// A handler that needs more than the store (a policy runs commands).
type MakeHandler = Arc<dyn Fn(&Arc<Commands>) -> Arc<dyn Handler> + Send + Sync>;

/// Routes of one side, with the OpenAPI operations their annotations declare.
type Routes<S> = fn() -> OpenApiRouter<S>;

/// A domain's registration. Build it with the methods below, one line per part.
#[derive(Clone)]
pub struct Module {
    name: &'static str,
    aggregates: Vec<AggregateDecl>,
    views: Vec<ViewDecl>,
    tallies: Vec<&'static str>,
    handlers: Vec<(GroupDecl, MakeHandler)>,
    command_routes: Vec<Routes<Arc<Commands>>>,
    query_routes: Vec<Routes<Arc<QueryService>>>,
}

impl Module {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            aggregates: Vec::new(),
            views: Vec::new(),
            tallies: Vec::new(),
            handlers: Vec::new(),
            command_routes: Vec::new(),
            query_routes: Vec::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// An aggregate: its stream type and categories.
    pub fn aggregate<A: Aggregate>(mut self) -> Self {
        fn decode<E: DomainEvent>(stored: &StoredEvent) -> Result<serde_json::Value, DecodeError> {
            let event = stored.decode::<E>()?;
            Ok(serde_json::to_value(&event).unwrap_or(serde_json::Value::Null))
        }
        self.aggregates.push(AggregateDecl {
            aggregate: A::Event::AGGREGATE,
            categories: A::Event::CATEGORIES,
            decode: decode::<A::Event>,
        });
        self
    }

    /// A view kept per stream, projected by its own group.
    pub fn view<V: View>(mut self) -> Self {
        let group = GroupDecl {
            name: V::group(),
            categories: V::categories(),
        };
        fn make<V: View>(store: Arc<dyn Store>) -> Arc<dyn Handler> {
            Arc::new(ViewProjection::<V>::new(store))
        }
        fn pinned<V: View>(store: Arc<dyn Store>, generation: u32) -> Arc<dyn Handler> {
            Arc::new(ViewProjection::<V>::pinned(store, generation))
        }
        self.views.push(ViewDecl {
            name: V::NAME,
            group: group.clone(),
            make: make::<V>,
            pinned: pinned::<V>,
        });
        self
    }

    /// A tally over many streams, projected by its own group.
    pub fn tally<T: Tally>(mut self) -> Self {
        let group = GroupDecl {
            name: T::NAME,
            categories: T::categories(),
        };
        self.tallies.push(T::NAME);
        let make: MakeHandler =
            Arc::new(|commands| Arc::new(TallyProjection::<T>::new(commands.store().clone())));
        self.handlers.push((group, make));
        self
    }

    /// A policy (or any other handler) in group `group` reading `categories`; `make` builds
    /// it from the command side's services, which it may use to run commands.
    pub fn policy(
        mut self,
        group: &'static str,
        categories: &'static [Category],
        make: impl Fn(&Arc<Commands>) -> Arc<dyn Handler> + Send + Sync + 'static,
    ) -> Self {
        self.handlers.push((
            GroupDecl {
                name: group,
                categories,
            },
            Arc::new(make),
        ));
        self
    }

    /// Command routes (`utoipa_axum::routes!` of `#[utoipa::path]` handlers): served and
    /// documented from the same declaration.
    pub fn command_routes(mut self, routes: Routes<Arc<Commands>>) -> Self {
        self.command_routes.push(routes);
        self
    }

    /// Read routes, as [`Module::command_routes`].
    pub fn query_routes(mut self, routes: Routes<Arc<QueryService>>) -> Self {
        self.query_routes.push(routes);
        self
    }

    pub fn aggregates(&self) -> &[AggregateDecl] {
        &self.aggregates
    }

    pub fn views(&self) -> &[ViewDecl] {
        &self.views
    }

    /// The names of the tallies.
    pub fn tallies(&self) -> Vec<&'static str> {
        self.tallies.clone()
    }

    /// Every category of every aggregate.
    pub fn categories(&self) -> Vec<Category> {
        self.aggregates
            .iter()
            .flat_map(|a| a.categories.iter().cloned())
            .collect()
    }

    /// Every consumer group: views, tallies, policies.
    pub fn groups(&self) -> Vec<GroupDecl> {
        self.views
            .iter()
            .map(|v| v.group.clone())
            .chain(self.handlers.iter().map(|(group, _)| group.clone()))
            .collect()
    }

    /// The projector's handlers, one per group.
    pub fn handlers(&self, commands: &Arc<Commands>) -> Vec<Arc<dyn Handler>> {
        self.views
            .iter()
            .map(|v| (v.make)(commands.store().clone()))
            .chain(self.handlers.iter().map(|(_, make)| make(commands)))
            .collect()
    }
}

/// The modules a process serves, read together.
#[derive(Clone, Default)]
pub struct Modules(Vec<Module>);

impl From<Vec<Module>> for Modules {
    fn from(modules: Vec<Module>) -> Self {
        Self(modules)
    }
}

impl Modules {
    pub fn iter(&self) -> impl Iterator<Item = &Module> {
        self.0.iter()
    }

    pub fn push(&mut self, module: Module) {
        self.0.push(module);
    }

    pub fn aggregates(&self) -> Vec<AggregateDecl> {
        self.iter().flat_map(|m| m.aggregates.clone()).collect()
    }

    pub fn categories(&self) -> Vec<Category> {
        self.iter().flat_map(Module::categories).collect()
    }

    pub fn groups(&self) -> Vec<GroupDecl> {
        self.iter().flat_map(Module::groups).collect()
    }

    pub fn views(&self) -> Vec<ViewDecl> {
        self.iter().flat_map(|m| m.views.clone()).collect()
    }

    pub fn tallies(&self) -> Vec<&'static str> {
        self.iter().flat_map(Module::tallies).collect()
    }

    pub fn handlers(&self, commands: &Arc<Commands>) -> Vec<Arc<dyn Handler>> {
        self.iter().flat_map(|m| m.handlers(commands)).collect()
    }

    /// The declared aggregate named `name`.
    pub fn aggregate(&self, name: &str) -> Option<AggregateDecl> {
        self.aggregates()
            .into_iter()
            .find(|a| a.aggregate.as_str() == name)
    }

    /// An event's payload as JSON: by its type when a module declares its aggregate, else in
    /// the named MessagePack form every event is stored in (fields by name, no types).
    pub fn decode(&self, stored: &StoredEvent) -> Result<serde_json::Value, DecodeError> {
        match self.aggregate(stored.envelope.stream.aggregate.as_str()) {
            Some(declared) => (declared.decode)(stored),
            None => esr_schema::codec::decode_untyped(&stored.payload),
        }
    }

    /// Every module's command routes, with their OpenAPI operations.
    pub fn command_api(&self) -> OpenApiRouter<Arc<Commands>> {
        self.iter()
            .flat_map(|m| &m.command_routes)
            .fold(OpenApiRouter::default(), |api, routes| api.merge(routes()))
    }

    /// Every module's read routes, with their OpenAPI operations.
    pub fn query_api(&self) -> OpenApiRouter<Arc<QueryService>> {
        self.iter()
            .flat_map(|m| &m.query_routes)
            .fold(OpenApiRouter::default(), |api, routes| api.merge(routes()))
    }

    /// `(METHOD, path)` of every command route: what the tests enumerate.
    pub fn command_paths(&self) -> Vec<(String, String)> {
        paths(self.command_api().into_openapi())
    }

    /// `(METHOD, path)` of every read route.
    pub fn query_paths(&self) -> Vec<(String, String)> {
        paths(self.query_api().into_openapi())
    }
}

fn paths(document: utoipa::openapi::OpenApi) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    for (path, item) in document.paths.paths {
        let methods = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
        ];
        for (method, present) in methods {
            if present {
                routes.push((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

impl From<Module> for Modules {
    fn from(module: Module) -> Self {
        Self(vec![module])
    }
}
