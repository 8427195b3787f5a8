//! The friendship policy run by two projector processes at once, under every interleaving of
//! their steps with a user's command: both sides of a friendship always end up agreeing.
//!
//! Each process has its own command service (its own cache, as separate processes do) on one
//! store. A turnstile lets exactly one of them take its next step, in the order a schedule
//! says; every schedule that respects causality (an event is handled only after it is
//! written) is run on a fresh store.

// Tests: a failed unwrap is a failed assertion.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use esr_app::command::CommandMeta;
use esr_app::projector::Handler;
use esr_app::social::FriendshipPolicy;
use esr_app::social::friendship::{Interleave, Step};
use esr_app::{CommandService, CommandSettings};
use esr_domain::{User, UserCommand};
use esr_schema::{StoredEvent, StreamId, UserEvent};
use esr_store::{EventStore, MemoryStore};
use tokio::sync::Notify;

mod common;
use common::{id, register};

/// Who moves in a schedule: the two policy processes and the user's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Actor {
    First,
    Second,
    User,
}

/// Steps each actor is scheduled for: a policy process loads, acts and checks (a build without
/// the check simply finishes earlier); the user's command is one step.
const POLICY_STEPS: usize = 3;

/// Every order of the actors' steps in which the second process starts after the user's
/// command (it handles the event that command writes).
fn schedules() -> Vec<Vec<Actor>> {
    fn extend(prefix: &mut Vec<Actor>, left: [usize; 3], all: &mut Vec<Vec<Actor>>) {
        if left == [0; 3] {
            all.push(prefix.clone());
            return;
        }
        for (slot, actor) in [Actor::First, Actor::Second, Actor::User]
            .into_iter()
            .enumerate()
        {
            let user_done = left[2] == 0;
            if left[slot] == 0 || (actor == Actor::Second && !user_done) {
                continue;
            }
            let mut next = left;
            next[slot] -= 1;
            prefix.push(actor);
            extend(prefix, next, all);
            prefix.pop();
        }
    }
    let mut all = vec![];
    extend(&mut vec![], [POLICY_STEPS, POLICY_STEPS, 1], &mut all);
    all
}

/// Lets actors through one step at a time in the schedule's order; an actor that finished
/// early gives up its remaining turns, and once the schedule is spent everyone runs freely.
struct Turnstile {
    state: Mutex<(Vec<Actor>, usize, Vec<Actor>)>,
    turned: Notify,
}

impl Turnstile {
    fn new(schedule: Vec<Actor>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new((schedule, 0, vec![])),
            turned: Notify::new(),
        })
    }

    async fn wait_turn(&self, actor: Actor) {
        loop {
            let turned = self.turned.notified();
            tokio::pin!(turned);
            turned.as_mut().enable();
            {
                let mut state = self.state.lock().unwrap();
                let (schedule, position, finished) = &mut *state;
                while *position < schedule.len() && finished.contains(&schedule[*position]) {
                    *position += 1;
                }
                if *position >= schedule.len() || schedule[*position] == actor {
                    *position += 1;
                    self.turned.notify_waiters();
                    return;
                }
            }
            turned.await;
        }
    }

    fn finished(&self, actor: Actor) {
        self.state.lock().unwrap().2.push(actor);
        self.turned.notify_waiters();
    }
}

struct Scheduled {
    turnstile: Arc<Turnstile>,
    actor: Actor,
}

#[async_trait]
impl Interleave for Scheduled {
    async fn before(&self, _step: Step) {
        self.turnstile.wait_turn(self.actor).await;
    }
}

struct World {
    store: MemoryStore,
    client: Arc<CommandService<User>>,
}

impl World {
    fn new() -> Self {
        let store = MemoryStore::new();
        let client = service(&store);
        Self { store, client }
    }

    async fn run(&self, user: &str, command: UserCommand) {
        self.client
            .execute(
                &id(user),
                command,
                &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
            )
            .await
            .unwrap();
    }

    async fn last_event(&self, user: &str) -> StoredEvent {
        let stream = StreamId::of::<UserEvent>(id(user));
        let version = self.store.stream_version(&stream).await.unwrap();
        self.store
            .read_stream(&stream, version, 1)
            .await
            .unwrap()
            .remove(0)
    }

    /// Whether `who` lists `whom` as a friend, read from the store.
    async fn lists(&self, who: &str, whom: &str) -> bool {
        let (state, _) = service(&self.store).load(&id(who)).await.unwrap();
        state.friends.contains(&id(whom))
    }

    /// Handle `event` the way a redelivery would until it succeeds.
    async fn settle(&self, event: &StoredEvent) {
        let policy = FriendshipPolicy::new(service(&self.store));
        for _ in 0..10 {
            if policy.handle(event).await.is_ok() {
                return;
            }
        }
        panic!("the policy never settled {event:?}");
    }
}

fn service(store: &MemoryStore) -> Arc<CommandService<User>> {
    Arc::new(CommandService::new(
        Arc::new(store.clone()),
        CommandSettings::default(),
    ))
}

fn add(friend: &str) -> UserCommand {
    UserCommand::AddFriend {
        friend_id: id(friend),
        reciprocal: false,
    }
}

fn remove(friend: &str) -> UserCommand {
    UserCommand::RemoveFriend {
        friend_id: id(friend),
        reciprocal: false,
    }
}

/// One race: `first_event` is handled by the first process; the user's command runs (as
/// `commander`) and the event it writes is handled by the second process; all under
/// `schedule`. Failed handles are settled afterwards, as redeliveries would.
async fn race(
    world: &World,
    schedule: Vec<Actor>,
    first_event: StoredEvent,
    commander: &'static str,
    command: UserCommand,
) {
    let turnstile = Turnstile::new(schedule);
    let policy = |actor| {
        FriendshipPolicy::interleaved(
            service(&world.store),
            Arc::new(Scheduled {
                turnstile: turnstile.clone(),
                actor,
            }),
        )
    };
    let (first, second) = (policy(Actor::First), policy(Actor::Second));
    let first_run = async {
        let outcome = first.handle(&first_event).await;
        turnstile.finished(Actor::First);
        outcome
    };
    let user_then_second = async {
        turnstile.wait_turn(Actor::User).await;
        world.run(commander, command).await;
        turnstile.finished(Actor::User);
        let event = world.last_event(commander).await;
        let outcome = second.handle(&event).await;
        turnstile.finished(Actor::Second);
        (event, outcome)
    };
    let (first_outcome, (second_event, second_outcome)) =
        tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(first_run, user_then_second)
        })
        .await
        .expect("a schedule deadlocked");
    if first_outcome.is_err() {
        world.settle(&first_event).await;
    }
    if second_outcome.is_err() {
        world.settle(&second_event).await;
    }
}

async fn registered(users: &[&str]) -> World {
    let world = World::new();
    for user in users {
        world.run(user, register()).await;
    }
    world
}

async fn assert_agree(world: &World, schedule: &[Actor]) -> bool {
    let (a_lists_b, b_lists_a) = (world.lists("a", "b").await, world.lists("b", "a").await);
    assert_eq!(
        a_lists_b, b_lists_a,
        "a lists b: {a_lists_b}, b lists a: {b_lists_a}, under {schedule:?}"
    );
    a_lists_b
}

/// A adds B; while the add is being mirrored, A removes B again: both end as strangers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_add_and_a_remove_by_one_user_mirrored_at_once_agree() {
    for schedule in schedules() {
        let world = registered(&["a", "b"]).await;
        world.run("a", add("b")).await;
        let added = world.last_event("a").await;
        race(&world, schedule.clone(), added, "a", remove("b")).await;
        assert!(!assert_agree(&world, &schedule).await, "{schedule:?}");
    }
}

/// A and B are friends; A removes B and, while that is mirrored, adds B again: friends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_remove_and_an_add_again_mirrored_at_once_agree() {
    for schedule in schedules() {
        let world = registered(&["a", "b"]).await;
        world.run("a", add("b")).await;
        world.settle(&world.last_event("a").await).await;
        world.run("a", remove("b")).await;
        let removed = world.last_event("a").await;
        race(&world, schedule.clone(), removed, "a", add("b")).await;
        assert!(assert_agree(&world, &schedule).await, "{schedule:?}");
    }
}

/// A and B are friends; A's add is delivered again late while B removes A: whatever the
/// order, both sides agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_add_and_the_friends_remove_mirrored_at_once_agree() {
    for schedule in schedules() {
        let world = registered(&["a", "b"]).await;
        world.run("a", add("b")).await;
        let added = world.last_event("a").await;
        world.settle(&added).await;
        race(&world, schedule.clone(), added, "b", remove("a")).await;
        assert_agree(&world, &schedule).await;
    }
}

#[test]
fn the_schedules_are_every_causal_order() {
    let all = schedules();
    // 7 steps, 3 of them the first process's: C(7,3) orders of the rest, of which the
    // user's step must precede the second process's three: 35 * 1/4.
    assert_eq!(all.len(), 35);
}

/// A user's friends are bounded (`MAX_FRIENDS`): the user adding one more is refused, and so is
/// the mirror of someone else befriending them; the policy then withdraws that someone's side,
/// so the two agree again (before, a crowd could grow one user's friends, state, snapshot and
/// profile without end).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_friends_list_refuses_more_and_the_policy_withdraws_the_other_side() {
    use esr_domain::user::MAX_FRIENDS;
    let others: Vec<String> = (0..=MAX_FRIENDS).map(|n| format!("f{n}")).collect();
    let world = World::new();
    world.run("full", register()).await;
    world.run("late", register()).await;
    for other in &others {
        world.run(other, register()).await;
    }
    for other in &others[..MAX_FRIENDS] {
        world.run("full", add(other)).await;
    }
    let refused = world
        .client
        .execute(
            &id("full"),
            add(&others[MAX_FRIENDS]),
            &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(esr_app::command::CommandError::Rejected(
                esr_domain::UserRejection::TooManyFriends(_)
            ))
        ),
        "{refused:?}"
    );

    world.run("late", add("full")).await;
    world.settle(&world.last_event("late").await).await;
    assert!(!world.lists("full", "late").await, "the full list grew");
    assert!(
        !world.lists("late", "full").await,
        "late still lists full: one-sided"
    );
}
