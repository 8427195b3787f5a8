//! What every module's command routes share: the command side's router over the modules'
//! routes, running a command with its headers (idempotency, `If-Match`, correlation), the
//! answer, ids made for resources created without one, and dates.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::NaiveDate;
use esr_kernel::{Actor, Aggregate};
use esr_schema::EntityId;
use serde_json::json;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

use super::extract::token_header;
use super::resource::Resource;
use super::{ApiError, BODY_LIMIT_BYTES, health};
use crate::auth::{self, Authentication};
use crate::command::{Accepted, CommandMeta, CommandService, Commands};
use crate::module::Modules;

/// The command routes of `modules`, each behind `authentication`; the OpenAPI document (read
/// off the same routes) and health checks are open.
pub fn router(
    commands: Arc<Commands>,
    modules: &Modules,
    authentication: Authentication,
) -> Router {
    let store = commands.store().clone();
    let rate = commands.rate.clone();
    let (routes, document) = OpenApiRouter::with_openapi(super::openapi::CommandApi::openapi())
        .merge(modules.command_api())
        .split_for_parts();
    let document = Arc::new(document);
    routes
        // Inside authentication: the rate is the caller's.
        .route_layer(axum::middleware::from_fn_with_state(
            rate,
            super::rate::limit,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            authentication,
            auth::authenticate,
        ))
        .route(
            "/openapi.json",
            get(move || async move { Json(document.as_ref().clone()) }),
        )
        .with_state(commands)
        .merge(health::store_health_router(store))
        .fallback(health::not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
}

/// A date field, `YYYY-MM-DD`, or 422 naming `field`.
pub fn date(field: &str, raw: Option<&str>) -> Result<Option<NaiveDate>, ApiError> {
    raw.map(|text| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
            ApiError::invalid(
                "invalid_field",
                format!("{field}: {text:?} is not a YYYY-MM-DD date"),
            )
        })
    })
    .transpose()
}

/// The id of a resource created without one. With an `Idempotency-Key`, derived from the key,
/// so that a retry names the same stream and gets the first answer instead of creating a
/// second resource; without one, a fresh UUID v7.
pub fn generated_id(headers: &HeaderMap) -> Result<EntityId, ApiError> {
    /// Namespace of the ids derived from idempotency keys (UUID v5); fixed forever.
    const KEYED_IDS: uuid::Uuid = uuid::Uuid::from_u128(0x6573_722d_6b65_7965_642d_6964_7300_0001);
    let id = match token_header(headers, "idempotency-key")? {
        Some(key) => uuid::Uuid::new_v5(&KEYED_IDS, key.as_bytes()),
        None => uuid::Uuid::now_v7(),
    };
    EntityId::parse(&id.simple().to_string())
        .map_err(|e| ApiError::invalid("invalid_field", e.to_string()))
}

pub async fn run_command<A: Aggregate<Event: Resource>>(
    commands: &CommandService<A>,
    headers: &HeaderMap,
    actor: Actor,
    id: EntityId,
    command: A::Command,
    success: StatusCode,
) -> Result<Response, ApiError> {
    let mut meta = CommandMeta::new(token_header(headers, "x-correlation-id")?, actor);
    meta.idempotency_key = token_header(headers, "idempotency-key")?;
    meta.fingerprint = Some(crate::command::fingerprint::<A>(&command, &meta.actor));
    meta.if_match = if_match(headers)?;
    let accepted = commands.execute(&id, command, &meta).await?;
    Ok(answer::<A>(&id, accepted, &meta, success))
}

/// `If-Match: "3"` (or `3`); `*` means no version check.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("").trim();
    if text == "*" {
        return Ok(None);
    }
    text.trim_matches('"').parse().map(Some).map_err(|_| {
        ApiError::malformed(format!(
            "If-Match must be a version like \"3\", not {text:?}"
        ))
    })
}

fn answer<A: Aggregate<Event: Resource>>(
    id: &EntityId,
    accepted: Accepted,
    meta: &CommandMeta,
    status: StatusCode,
) -> Response {
    let body = Json(json!({A::Event::id_field(): id, "version": accepted.version}));
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", accepted.version)) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(correlation) = HeaderValue::from_str(&meta.correlation_id) {
        headers.insert("x-correlation-id", correlation);
    }
    if accepted.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if status == StatusCode::CREATED
        && let Ok(location) = HeaderValue::from_str(&format!("{}/{id}", A::Event::PATH))
    {
        headers.insert(header::LOCATION, location);
    }
    response
}
