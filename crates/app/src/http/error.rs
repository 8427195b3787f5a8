use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use esr_kernel::{Rejection, RejectionKind};
use esr_store::StoreError;
use serde_json::json;

use crate::command::CommandError;
use crate::error_chain;
use crate::query::QueryError;

/// An error answer: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_request", message)
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn unknown_user(user_id: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "unknown_user",
            format!("no user {user_id}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response()
    }
}

impl ApiError {
    pub fn rejected(rejection: &impl Rejection) -> Self {
        let status = match rejection.kind() {
            RejectionKind::NotFound => StatusCode::NOT_FOUND,
            RejectionKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            RejectionKind::Conflict => StatusCode::CONFLICT,
            RejectionKind::Forbidden => StatusCode::FORBIDDEN,
        };
        Self::new(status, rejection.code(), rejection.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let message = error_chain(&error);
        match error {
            StoreError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                message,
            ),
            StoreError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, "version_conflict", message)
            }
            StoreError::KeyReused { .. } => Self::invalid("idempotency_key_reused", message),
            // No HTTP route writes a projection: a fenced write here is a bug.
            StoreError::Corrupt { .. } | StoreError::Invalid(_) | StoreError::Fenced { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl<R: Rejection> From<CommandError<R>> for ApiError {
    fn from(error: CommandError<R>) -> Self {
        match error {
            CommandError::Rejected(rejection) => Self::rejected(&rejection),
            CommandError::PreconditionFailed { .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "version_mismatch",
                error.to_string(),
            ),
            CommandError::Conflict { .. } => {
                Self::new(StatusCode::CONFLICT, "version_conflict", error.to_string())
            }
            CommandError::Store(e) => e.into(),
            CommandError::Corrupt { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            ),
            CommandError::FromNewerBuild { .. } => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "from_newer_build",
                error.to_string(),
            ),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Store(e) => e.into(),
            QueryError::Corrupt { .. } => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            ),
        }
    }
}
