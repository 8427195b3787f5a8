use std::fmt;

/// The category streams of the post: every user event belongs to exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Registration and personal-info changes.
    UserUpdates,
    /// Actions on objects: like, dislike, kick, comment, ...
    UserActivity,
    /// Friends added and removed.
    UserFriends,
}

impl Category {
    pub const ALL: [Category; 3] = [
        Category::UserUpdates,
        Category::UserActivity,
        Category::UserFriends,
    ];

    /// The stream name, as in the post.
    pub fn name(self) -> &'static str {
        match self {
            Category::UserUpdates => "user_updates",
            Category::UserActivity => "user_activity",
            Category::UserFriends => "user_friends",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
