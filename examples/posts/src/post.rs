//! The `Post` aggregate: an author publishes, edits and deletes. Pure decisions.

use std::collections::BTreeMap;

use esr_kernel::fields::{self, FieldError};
use esr_kernel::{Aggregate, Context, Rejection, RejectionKind, View, validate};
use esr_schema::{EntityId, EventEnvelope, StreamId, UserEvent, UserId};
use serde::{Deserialize, Serialize};

use crate::events::{PostDeleted, PostEdited, PostEvent, PostPublished, PostRestored};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_BODY_CHARS: usize = 10_000;

/// What a post's stream decides on.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Post {
    version: u64,
    author: Option<UserId>,
    deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PostCommand {
    Publish {
        author: UserId,
        title: String,
        body: String,
    },
    Edit {
        title: Option<String>,
        body: Option<String>,
    },
    Delete,
    /// Undo a delete.
    Restore,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostRejection {
    #[error("no post here")]
    UnknownPost,
    #[error("user {0} is not registered")]
    UnknownAuthor(UserId),
    #[error("this post is already published")]
    AlreadyPublished,
    #[error("this post was deleted")]
    Deleted,
    #[error("only the author (or an admin) may {0} this post")]
    NotTheAuthor(&'static str),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl Rejection for PostRejection {
    fn kind(&self) -> RejectionKind {
        match self {
            Self::UnknownPost | Self::UnknownAuthor(_) => RejectionKind::NotFound,
            Self::AlreadyPublished | Self::Deleted => RejectionKind::Conflict,
            Self::NotTheAuthor(_) => RejectionKind::Forbidden,
            Self::InvalidField { .. } => RejectionKind::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::UnknownPost => "unknown_post",
            Self::UnknownAuthor(_) => "unknown_user",
            Self::AlreadyPublished => "already_published",
            Self::Deleted => "post_deleted",
            Self::NotTheAuthor(_) => "forbidden",
            Self::InvalidField { .. } => "invalid_field",
        }
    }
}

fn text(field: &'static str, raw: &str, max: usize) -> Result<String, PostRejection> {
    validate::bounded_text(raw, max).map_err(|reason| PostRejection::InvalidField { field, reason })
}

impl Aggregate for Post {
    type Event = PostEvent;
    type Command = PostCommand;
    type Rejection = PostRejection;

    fn version(&self) -> u64 {
        self.version
    }

    /// Publishing asks whether the author is registered.
    fn context_streams(_: &EntityId, command: &PostCommand) -> Vec<StreamId> {
        match command {
            PostCommand::Publish { author, .. } => vec![StreamId::of::<UserEvent>(author.clone())],
            _ => vec![],
        }
    }

    fn decide(
        &self,
        _: &EntityId,
        command: &PostCommand,
        context: &Context,
    ) -> Result<Vec<PostEvent>, PostRejection> {
        match command {
            PostCommand::Publish {
                author,
                title,
                body,
            } => {
                if self.author.is_some() {
                    return Err(PostRejection::AlreadyPublished);
                }
                if !context.actor.may_act_for(author) {
                    return Err(PostRejection::NotTheAuthor("publish as the author of"));
                }
                if !context.exists(&StreamId::of::<UserEvent>(author.clone())) {
                    return Err(PostRejection::UnknownAuthor(author.clone()));
                }
                Ok(vec![
                    PostPublished {
                        author: author.clone(),
                        title: text("title", title, MAX_TITLE_CHARS)?,
                        body: text("body", body, MAX_BODY_CHARS)?,
                    }
                    .into(),
                ])
            }
            PostCommand::Edit { title, body } => {
                self.may_change(context, "edit")?;
                let title = title
                    .as_deref()
                    .map(|t| text("title", t, MAX_TITLE_CHARS))
                    .transpose()?;
                let body = body
                    .as_deref()
                    .map(|b| text("body", b, MAX_BODY_CHARS))
                    .transpose()?;
                if title.is_none() && body.is_none() {
                    return Ok(vec![]);
                }
                Ok(vec![PostEdited { title, body }.into()])
            }
            PostCommand::Restore => {
                let Some(author) = &self.author else {
                    return Err(PostRejection::UnknownPost);
                };
                if !context.actor.may_act_for(author) {
                    return Err(PostRejection::NotTheAuthor("restore"));
                }
                // Restoring a post that is shown asks for what is already true.
                if !self.deleted {
                    return Ok(vec![]);
                }
                Ok(vec![PostRestored {}.into()])
            }
            PostCommand::Delete => {
                if self.deleted {
                    // Deleting twice asks for what is already true.
                    return Ok(vec![]);
                }
                self.may_change(context, "delete")?;
                Ok(vec![PostDeleted {}.into()])
            }
        }
    }

    fn evolve(&mut self, event: &PostEvent) {
        self.version += 1;
        match event {
            PostEvent::PostPublished(e) => self.author = Some(e.author.clone()),
            PostEvent::PostEdited(_) => {}
            PostEvent::PostDeleted(_) => self.deleted = true,
            PostEvent::PostRestored(_) => self.deleted = false,
        }
    }
}

impl Post {
    fn may_change(&self, context: &Context, what: &'static str) -> Result<(), PostRejection> {
        let Some(author) = &self.author else {
            return Err(PostRejection::UnknownPost);
        };
        if self.deleted {
            return Err(PostRejection::Deleted);
        }
        if !context.actor.may_act_for(author) {
            return Err(PostRejection::NotTheAuthor(what));
        }
        Ok(())
    }
}

/// What `GET /posts/{id}` serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PostView {
    #[schema(value_type = String)]
    pub post_id: EntityId,
    #[schema(value_type = String)]
    pub author: UserId,
    pub title: String,
    pub body: String,
    pub edits: u64,
    pub deleted: bool,
    pub version: u64,
}

impl View for PostView {
    type Event = PostEvent;
    const NAME: &'static str = "post_view";

    fn empty(id: &EntityId) -> Self {
        Self {
            post_id: id.clone(),
            author: id.clone(),
            title: String::new(),
            body: String::new(),
            edits: 0,
            deleted: false,
            version: 0,
        }
    }

    fn version(&self) -> u64 {
        self.version
    }

    fn apply(&mut self, envelope: &EventEnvelope, event: &PostEvent) {
        self.version = envelope.version;
        match event {
            PostEvent::PostPublished(e) => {
                self.author = e.author.clone();
                self.title.clone_from(&e.title);
                self.body.clone_from(&e.body);
            }
            PostEvent::PostEdited(e) => {
                self.edits += 1;
                if let Some(title) = &e.title {
                    self.title.clone_from(title);
                }
                if let Some(body) = &e.body {
                    self.body.clone_from(body);
                }
            }
            PostEvent::PostDeleted(_) => self.deleted = true,
            PostEvent::PostRestored(_) => self.deleted = false,
        }
    }

    fn to_fields(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("post".into(), fields::json(self))])
    }

    fn from_fields(id: &EntityId, stored: &BTreeMap<String, String>) -> Result<Self, FieldError> {
        let read = fields::Reader::new(stored);
        // The whole view is one JSON field: its stored form is its type's, written once.
        let stored: Option<Self> = read.json("post")?;
        let mut view = stored.unwrap_or_else(|| Self::empty(id));
        view.post_id = id.clone();
        Ok(view)
    }
}
