//! Commands per user: each authenticated user's commands pass a token bucket, so one user (a
//! script gone wild, a hostile account) cannot take the command side's capacity from the
//! others. Anonymous callers (`AUTH=off`, loopback only) are not limited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use esr_kernel::Actor;

use super::ApiError;
use crate::auth::Caller;

/// Users whose buckets are kept at once; past it, the full (idle) buckets are dropped first.
const USERS_TRACKED: usize = 100_000;

/// A token bucket per user: `per_second` commands a second, up to two seconds' worth at once.
pub struct CommandRate {
    per_second: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl CommandRate {
    /// `per_second` 0: no limit.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn burst(&self) -> f64 {
        self.per_second * 2.0
    }

    /// Whether `user` may send one more command now (and counts it).
    fn admit(&self, user: &str) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= USERS_TRACKED && !buckets.contains_key(user) {
            let (burst, per_second) = (self.burst(), self.per_second);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * per_second < burst
            });
            if buckets.len() >= USERS_TRACKED {
                buckets.clear();
            }
        }
        let (tokens, at) = buckets
            .entry(user.to_owned())
            .or_insert((self.burst(), now));
        *tokens =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst());
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Middleware (inside authentication): 429 `rate_limited` for a user past their rate.
pub async fn limit(State(rate): State<Arc<CommandRate>>, request: Request, next: Next) -> Response {
    if let Some(Caller(Actor::User { subject, .. })) = request.extensions().get::<Caller>()
        && !rate.admit(subject)
    {
        let refusal = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} commands a second from {subject}; nothing was done",
                rate.per_second
            ),
        );
        return ([(axum::http::header::RETRY_AFTER, "1")], refusal).into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_past_the_rate_is_refused_and_others_are_not() {
        let rate = CommandRate::new(5);
        let admitted = (0..20).filter(|_| rate.admit("mallory")).count();
        // Two seconds' worth at once, and a little refill while counting.
        assert!((10..=11).contains(&admitted), "{admitted}");
        assert!(rate.admit("alice"));
        assert!(CommandRate::new(0).admit("anyone"));
    }
}
