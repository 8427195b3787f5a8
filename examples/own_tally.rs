//! A team's own read model, added without touching the store or the runtime: a tally of
//! comments per object, projected next to the standard handlers, on the in-memory store.
//!
//! `cargo run --example own_tally` registers two users, has them comment and like, waits for the
//! projectors, and prints the most commented objects (it exits non-zero if the counts are not
//! what the commands imply). On Redis, the same `Projectors::new` line runs the tally in each
//! projector process, with its own consumer group `comments`.

use std::sync::Arc;
use std::time::Duration;

use esr_app::command::CommandMeta;
use esr_app::projector::TallyProjection;
use esr_app::{CommandSettings, Commands, ProjectorSettings, Projectors, QueryService};
use esr_domain::UserCommand;
use esr_kernel::Tally;
use esr_schema::user::USER_ACTIVITY;
use esr_schema::{Action, Category, EventEnvelope, UserEvent, UserId};
use esr_store::{MemoryStore, Store};
use tokio::sync::watch;

/// The extension: which events count, and for what. Nothing else to write.
struct Comments;

impl Tally for Comments {
    type Event = UserEvent;
    const NAME: &'static str = "comments";

    fn categories() -> &'static [Category] {
        const READS: &[Category] = &[USER_ACTIVITY];
        READS
    }

    fn count(_envelope: &EventEnvelope, event: &UserEvent) -> Vec<(String, i64)> {
        match event {
            UserEvent::ActedOn(acted) if acted.action == Action::Comment => {
                vec![(acted.object.clone(), 1)]
            }
            _ => vec![],
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let commands = Arc::new(Commands::new(store.clone(), CommandSettings::default()));

    // The standard handlers plus ours: one more line.
    let mut handlers = Projectors::standard_handlers(&store, commands.of::<esr_domain::User>());
    handlers.push(Arc::new(TallyProjection::<Comments>::new(store.clone())));
    let settings = ProjectorSettings {
        block: Duration::from_millis(20),
        ..ProjectorSettings::default()
    };
    let projectors = Arc::new(Projectors::new(store.clone(), handlers, settings));
    // Before the commands, so that the wait below finds every group (running creates them too).
    projectors.create_groups().await?;
    let (stop, shutdown) = watch::channel(false);
    let running = tokio::spawn(projectors.clone().run(shutdown));

    let meta = CommandMeta::new(None, esr_kernel::Actor::Anonymous);
    let act = |action: Action, object: &str| UserCommand::Act {
        action,
        object: object.to_owned(),
        text: (action == Action::Comment).then(|| "nice".to_owned()),
    };
    for (user, actions) in [
        (
            "ann",
            vec![
                (Action::Comment, "post-1"),
                (Action::Comment, "post-2"),
                (Action::Like, "post-1"),
            ],
        ),
        (
            "bob",
            vec![(Action::Comment, "post-1"), (Action::Share, "post-2")],
        ),
    ] {
        let id = UserId::parse(user)?;
        let register = UserCommand::Register {
            name: user.to_owned(),
            surname: "Example".to_owned(),
            birth_date: None,
        };
        commands
            .of::<esr_domain::User>()
            .execute(&id, register, &meta)
            .await?;
        for (action, object) in actions {
            commands
                .of::<esr_domain::User>()
                .execute(&id, act(action, object), &meta)
                .await?;
        }
    }

    // Wait until every group, ours included, has handled everything.
    loop {
        let (groups, _) = projectors.health().await?;
        if groups.iter().all(|g| g.lag == 0 && g.pending == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let queries = QueryService::new(store);
    let top = queries.tally_top(Comments::NAME, 10).await?;
    println!("most commented:");
    for (object, comments) in &top {
        println!("  {object}: {comments}");
    }
    stop.send(true)?;
    running.await??;
    anyhow::ensure!(
        top == [("post-1".to_owned(), 2), ("post-2".to_owned(), 1)],
        "unexpected counts: {top:?}"
    );
    Ok(())
}
