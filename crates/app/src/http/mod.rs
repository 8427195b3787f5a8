//! HTTP: the routers of the three sides and the JSON error contract shared by all of them.
//!
//! Every error is `{"error": "<code>", "message": "..."}` with the status the README lists
//! gives: 400 malformed request, 404 unknown user, 409 domain rule, 412 `If-Match` mismatch,
//! 413 body too large, 422 invalid field (ids included), 503 store unavailable.

mod command;
mod error;
mod extract;
mod health;
mod query;
mod resource;

pub use command::router as command_router;
pub use error::ApiError;
pub use health::{ProjectorHealth, projector_router};
pub use query::router as query_router;

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

/// Request bodies are small JSON documents; anything bigger is refused with 413.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// One log line per request: method, path, status, time.
pub async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    response
}
