//! Extractors that answer bad input with our JSON errors instead of axum's plain text.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use esr_schema::EntityId;
use serde::de::DeserializeOwned;

use super::ApiError;
use super::resource::Resource;

/// A JSON body; 400 when it is not JSON, 422 when it has the wrong shape, 413 when too big.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

fn json_error(rejection: &JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "request bodies are limited to {} bytes",
                super::BODY_LIMIT_BYTES
            ),
        ),
        StatusCode::UNPROCESSABLE_ENTITY => {
            ApiError::invalid("invalid_field", rejection.body_text())
        }
        _ => ApiError::malformed(rejection.body_text()),
    }
}

/// Query-string parameters; 400 when they do not parse.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(query_error(&rejection)),
        }
    }
}

fn query_error(rejection: &QueryRejection) -> ApiError {
    ApiError::malformed(rejection.body_text())
}

/// An id (of a user, a group), 422 with `code` when it is not one.
pub fn entity_id(code: &'static str, raw: &str) -> Result<EntityId, ApiError> {
    EntityId::parse(raw).map_err(|e| ApiError::invalid(code, e.to_string()))
}

/// A header value that must be 1 to 128 visible ASCII characters.
pub fn token_header(
    parts: &axum::http::HeaderMap,
    name: &'static str,
) -> Result<Option<String>, ApiError> {
    let Some(value) = parts.get(name) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    if text.is_empty() || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::malformed(format!(
            "{name} must be 1 to 128 visible ASCII characters"
        )));
    }
    Ok(Some(text.to_owned()))
}

/// A route's path parameters, 400 when they do not parse.
pub async fn path<T, S>(parts: &mut Parts, state: &S) -> Result<T, ApiError>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    let axum::extract::Path(raw) = axum::extract::Path::<T>::from_request_parts(parts, state)
        .await
        .map_err(|e| ApiError::malformed(e.body_text()))?;
    Ok(raw)
}

/// The `{id}` of a route on aggregate `E`'s resources, validated (422 with `E::INVALID_ID`).
pub struct IdPath<E>(pub EntityId, std::marker::PhantomData<E>);

impl<E> IdPath<E> {
    pub fn into_id(self) -> EntityId {
        self.0
    }
}

impl<S: Send + Sync, E: Resource> FromRequestParts<S> for IdPath<E> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw: String = path(parts, state).await?;
        Ok(IdPath(
            entity_id(E::INVALID_ID, &raw)?,
            std::marker::PhantomData,
        ))
    }
}
