//! Helpers shared by the runtime test binaries.

// Each test binary uses its own part of these.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use esr_app::CommandService;
use esr_app::command::CommandMeta;
use esr_domain::UserCommand;
use esr_schema::{Action, UserId};

pub fn id(raw: &str) -> UserId {
    UserId::parse(raw).unwrap()
}

pub fn register() -> UserCommand {
    UserCommand::Register {
        name: "Duffy".into(),
        surname: "Duck".into(),
        birth_date: None,
    }
}

pub fn like(object: &str) -> UserCommand {
    UserCommand::Act {
        action: Action::Like,
        object: object.into(),
        text: None,
    }
}

/// Each user registers, then likes `likes` different objects.
pub async fn register_with_likes(
    service: &CommandService<esr_domain::User>,
    users: &[UserId],
    likes: usize,
) {
    for user in users {
        service
            .execute(
                user,
                register(),
                &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
            )
            .await
            .unwrap();
        for i in 0..likes {
            service
                .execute(
                    user,
                    like(&format!("o{i}")),
                    &CommandMeta::new(None, esr_kernel::Actor::Anonymous),
                )
                .await
                .unwrap();
        }
    }
}
