//! HTTP: the routers of the three sides over the modules' routes, what those routes share
//! (extractors, running a command, the generic reads), and the JSON error contract.
//!
//! Every error is `{"error": "<code>", "message": "..."}` with the status the README lists
//! gives: 400 malformed request, 401 no valid bearer token, 403 refused by the domain for this
//! caller, 404 unknown user, 409 domain rule, 412 `If-Match` mismatch, 413 body too large, 422
//! invalid field (ids included), 503 store unavailable.

pub mod command;
mod error;
mod extract;
mod health;
pub mod openapi;
mod ops;
pub mod query;
mod rate;
mod resource;

pub use rate::CommandRate;

pub use command::{date, generated_id, router as command_router, run_command};
pub use error::ApiError;
pub use extract::{IdPath, JsonBody, QueryParams, entity_id, path, token_header};
pub use health::{ProjectorHealth, projector_router};
pub use ops::{Ops, router as ops_router};
pub use query::router as query_router;
pub use resource::Resource;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::config::HttpLimits;

/// Request bodies are small JSON documents; anything bigger is refused with 413.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The header that ties a request's answer, log lines and events together.
pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// `router` with every request given a correlation id (the client's `X-Correlation-Id`, or a
/// new UUID), answered with it, logged within a span that carries it, counted and timed.
/// Outermost, so that refusals (overload, timeout) are counted and carry it too.
pub fn observed(side: &'static str, router: Router) -> Router {
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::trace::TraceLayer;
    router
        .layer(axum::middleware::from_fn_with_state(side, ops::observe))
        .layer(TraceLayer::new_for_http().make_span_with(ops::request_span))
        .layer(PropagateRequestIdLayer::new(CORRELATION_ID))
        .layer(SetRequestIdLayer::new(CORRELATION_ID, MakeRequestUuid))
}

/// `router` behind the in-flight limit and the request timeout of `limits`.
pub fn guarded(router: Router, limits: &HttpLimits) -> Router {
    let guard = Guard {
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
        waiting: Arc::new(Semaphore::new(limits.max_waiting)),
        limits: limits.clone(),
    };
    router.layer(axum::middleware::from_fn_with_state(guard, admit))
}

#[derive(Clone)]
struct Guard {
    in_flight: Arc<Semaphore>,
    /// `min_version` reads, which mostly wait: counted apart, so that they cannot lock every
    /// other request out of the in-flight places.
    waiting: Arc<Semaphore>,
    limits: HttpLimits,
}

/// A read that may wait for its read model (`?min_version=`).
fn waits(request: &Request) -> bool {
    request.uri().query().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair.starts_with("min_version="))
    })
}

/// Refuse at once past the in-flight limit (queueing would only make every answer late), and
/// answer 503 when the request, body read included, outlasts the timeout.
async fn admit(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (places, limit, what) = if waits(&request) {
        (
            &guard.waiting,
            guard.limits.max_waiting,
            "min_version reads are waiting",
        )
    } else {
        (
            &guard.in_flight,
            guard.limits.max_in_flight,
            "requests are in flight",
        )
    };
    let Ok(_permit) = places.clone().try_acquire_owned() else {
        let refusal = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("{limit} {what} already; try again shortly"),
        );
        return ([(axum::http::header::RETRY_AFTER, "1")], refusal).into_response();
    };
    let timeout = guard.limits.request_timeout;
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timed_out",
            format!(
                "the request did not complete within {} ms; a command may have been applied: \
                 send it again with the same Idempotency-Key",
                timeout.as_millis()
            ),
        )
        .into_response(),
    }
}
