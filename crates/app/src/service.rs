//! A process serving modules: what every binary is, a team's included.
//!
//! ```no_run
//! # async fn run(store: std::sync::Arc<dyn esr_store::Store>) -> anyhow::Result<()> {
//! use esr_app::{Service, social};
//! let api = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Service::new(store)
//!     .module(social::module())
//!     .serve_command(api)
//!     .await
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use esr_store::Store;
use tokio::sync::watch;

use crate::auth::Authentication;
use crate::config::HttpLimits;
use crate::module::{Module, Modules};
use crate::sides::{self, Listeners};
use crate::{CommandSettings, Commands, ProjectorSettings, QueryService};

/// The store, the modules served on it, and the settings of the sides. Authentication is on
/// unless given: a side with [`Authentication::Off`] refuses a non-loopback address.
pub struct Service {
    store: Arc<dyn Store>,
    modules: Modules,
    commands: CommandSettings,
    projector: ProjectorSettings,
    query_max_wait: Duration,
    limits: HttpLimits,
    authentication: Authentication,
    shutdown: Option<watch::Receiver<bool>>,
}

impl Service {
    /// No modules yet; default settings; authentication off (loopback only) until
    /// [`Service::authentication`]; stops on SIGTERM or Ctrl-C unless [`Service::shutdown`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            modules: Modules::default(),
            commands: CommandSettings::default(),
            projector: ProjectorSettings::default(),
            query_max_wait: QueryService::DEFAULT_MAX_WAIT,
            limits: HttpLimits::default(),
            authentication: Authentication::Off,
            shutdown: None,
        }
    }

    pub fn module(mut self, module: Module) -> Self {
        self.modules.push(module);
        self
    }

    pub fn modules(mut self, modules: Modules) -> Self {
        for module in modules.iter() {
            self.modules.push(module.clone());
        }
        self
    }

    pub fn command_settings(mut self, settings: CommandSettings) -> Self {
        self.commands = settings;
        self
    }

    pub fn projector_settings(mut self, settings: ProjectorSettings) -> Self {
        self.projector = settings;
        self
    }

    /// The longest a `min_version` read waits.
    pub fn query_max_wait(mut self, wait: Duration) -> Self {
        self.query_max_wait = wait;
        self
    }

    pub fn limits(mut self, limits: HttpLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn authentication(mut self, authentication: Authentication) -> Self {
        self.authentication = authentication;
        self
    }

    /// Stop when `shutdown` turns true, instead of on a signal.
    pub fn shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    fn stop(&mut self) -> watch::Receiver<bool> {
        self.shutdown
            .get_or_insert_with(crate::config::shutdown_signal)
            .clone()
    }

    fn commands(&self) -> Arc<Commands> {
        Arc::new(Commands::new(self.store.clone(), self.commands.clone()))
    }

    fn queries(&self) -> Arc<QueryService> {
        let mut queries = QueryService::new(self.store.clone());
        queries.max_wait = self.query_max_wait;
        Arc::new(queries)
    }

    /// The command side: every module's command routes.
    pub async fn serve_command(mut self, listeners: impl Into<Listeners>) -> anyhow::Result<()> {
        let shutdown = self.stop();
        sides::command_side(
            self.commands(),
            self.modules,
            listeners,
            self.limits,
            self.authentication,
            shutdown,
        )
        .await
    }

    /// The query side: every module's read routes.
    pub async fn serve_query(mut self, listeners: impl Into<Listeners>) -> anyhow::Result<()> {
        let shutdown = self.stop();
        sides::query_side(
            self.queries(),
            self.modules,
            listeners,
            self.limits,
            self.authentication,
            shutdown,
        )
        .await
    }

    /// The projector side: every module's views, tallies and policies, `/healthz` on
    /// `listener`.
    pub async fn serve_projector(
        mut self,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<()> {
        let shutdown = self.stop();
        sides::projector_side(
            self.commands(),
            self.modules,
            self.projector,
            listener,
            self.limits,
            shutdown,
        )
        .await
    }

    /// All three sides in this process, the policies sharing the command side's services
    /// (one per-stream lock and cache per aggregate). Returns when all have stopped, or at the
    /// first that fails.
    pub async fn serve_all(
        mut self,
        command: impl Into<Listeners>,
        query: impl Into<Listeners>,
        projector: tokio::net::TcpListener,
    ) -> anyhow::Result<()> {
        let shutdown = self.stop();
        let commands = self.commands();
        tokio::try_join!(
            sides::command_side(
                commands.clone(),
                self.modules.clone(),
                command,
                self.limits.clone(),
                self.authentication.clone(),
                shutdown.clone(),
            ),
            sides::query_side(
                self.queries(),
                self.modules.clone(),
                query,
                self.limits.clone(),
                self.authentication.clone(),
                shutdown.clone(),
            ),
            sides::projector_side(
                commands,
                self.modules.clone(),
                self.projector.clone(),
                projector,
                self.limits.clone(),
                shutdown,
            ),
        )
        .map(|_| ())
    }
}
