//! What can happen to a post: the events, their names and their category.

use esr_schema::{AggregateType, Category, EventPayload, UserId, domain_events};
use serde::{Deserialize, Serialize};

pub const POST: AggregateType = AggregateType::declare("post");
/// Posts published, edited and deleted.
pub const POSTS: Category = Category::declare("posts");

domain_events! {
    /// Everything that can happen to a post.
    pub enum PostEvent for POST, categories [POSTS] {
        PostPublished(PostPublished),
        PostEdited(PostEdited),
        PostDeleted(PostDeleted),
        PostRestored(PostRestored),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostPublished {
    pub author: UserId,
    pub title: String,
    pub body: String,
}

impl EventPayload for PostPublished {
    const TYPE: &'static str = "post_published";
    const CATEGORY: Category = POSTS;
}

/// The fields that changed; absent ones kept their value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostEdited {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

impl EventPayload for PostEdited {
    const TYPE: &'static str = "post_edited";
    const CATEGORY: Category = POSTS;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostDeleted {}

impl EventPayload for PostDeleted {
    const TYPE: &'static str = "post_deleted";
    const CATEGORY: Category = POSTS;
}

/// A deleted post shown again, as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostRestored {}

impl EventPayload for PostRestored {
    const TYPE: &'static str = "post_restored";
    const CATEGORY: Category = POSTS;
}
