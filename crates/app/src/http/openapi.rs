//! What the OpenAPI 3.1 documents of every module share: the error body and the errors any
//! command or read may be answered, the command headers, a stored event, bearer
//! authentication, and each side's title. The routes come from the modules' annotations
//! (`utoipa_axum::routes!`), so a route is documented exactly when it is served.

use serde::Serialize;
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

/// The schema of a text field checked with `esr_kernel::validate::bounded_text(_, max_chars)`.
pub fn bounded_text(max_chars: usize) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(esr_kernel::validate::TEXT_PATTERN))
        .description(Some(format!(
            "1 to {max_chars} characters, not all white space, no control characters \
             (trimmed)"
        )))
        .into()
}

/// A type that only documents a text field: `bounded_text_schema!(pub Name, 100)` gives
/// `Name`, for `#[schema(value_type = Name)]`, whose schema states the bound `decide` checks.
#[macro_export]
macro_rules! bounded_text_schema {
    ($(#[$doc:meta])* $vis:vis $name:ident, $max_chars:expr) => {
        $(#[$doc])*
        $vis struct $name;
        impl $crate::utoipa::PartialSchema for $name {
            fn schema() -> $crate::utoipa::openapi::RefOr<$crate::utoipa::openapi::schema::Schema> {
                $crate::http::openapi::bounded_text($max_chars)
            }
        }
        impl $crate::utoipa::ToSchema for $name {}
    };
}

/// Every error: a stable code and a message for people.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// `malformed_request`, `unknown_user`, `conflict`, ...
    pub error: String,
    pub message: String,
}

/// One stored event, decoded.
#[derive(Serialize, ToSchema)]
pub struct EventBody {
    pub version: u64,
    pub event_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub schema_version: u16,
    /// RFC 3339.
    pub occurred_at: String,
    pub correlation_id: String,
    pub causation_id: String,
    /// Who caused it: `user:<subject>`, `system:<cause>` (a policy acting on an event
    /// `<cause>` caused), `anonymous` (authentication off); null for events stored before
    /// actors were recorded.
    pub actor: Option<String>,
    /// The event's own fields.
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// The headers every command route reads.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Only described: the handlers read the headers themselves.
pub struct CommandHeaders {
    /// Send the command again with the same key: the first answer, nothing appended twice.
    #[param(
        rename = "Idempotency-Key",
        pattern = "^[!-~]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    idempotency_key: Option<String>,
    /// The version the client saw, `"3"` (or `3`; `*`: any): 412 if the stream moved.
    #[param(rename = "If-Match", pattern = "^(\\*|\"[0-9]{1,19}\"|[0-9]{1,19})$")]
    if_match: Option<String>,
    /// Carried into the events and answered back.
    #[param(
        rename = "X-Correlation-Id",
        pattern = "^[!-~]{1,128}$",
        min_length = 1,
        max_length = 128
    )]
    correlation_id: Option<String>,
}

/// What any command may be answered besides success.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only described, never built: the answers come from `ApiError`.
pub enum CommandErrors {
    /// Malformed request: not JSON, unknown field, bad header.
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// No bearer token, or one that does not verify (expired, wrong issuer or audience, bad
    /// signature, unknown key); `WWW-Authenticate: Bearer` says so too.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The caller may not make this command (`forbidden`): a user acts on their own stream.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown user or group.
    #[response(status = 404)]
    Unknown(ErrorBody),
    /// Refused by a domain rule, or still conflicting after the retries.
    #[response(status = 409)]
    Rejected(ErrorBody),
    /// `If-Match` is not the current version.
    #[response(status = 412)]
    PreconditionFailed(ErrorBody),
    /// The body is larger than 16 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// A field or id is invalid (`invalid_field`, `invalid_user_id`, ...), or the
    /// `Idempotency-Key` was sent before with another command (`key_reused`).
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// The store is unavailable, or the server overloaded or out of time.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What any read may be answered besides success.
#[derive(IntoResponses)]
#[allow(dead_code)] // Only described, never built: the answers come from `ApiError`.
pub enum QueryErrors {
    /// Malformed query string.
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// No bearer token, or one that does not verify.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// A user's history is read by that user or an admin.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Unknown user, group or object.
    #[response(status = 404)]
    Unknown(ErrorBody),
    /// A parameter is invalid.
    #[response(status = 422)]
    Invalid(ErrorBody),
    /// The store is unavailable, or the server overloaded or out of time.
    #[response(status = 503)]
    Unavailable(ErrorBody),
    /// `min_version` not reached within the wait.
    #[response(status = 504)]
    NotFreshYet(ErrorBody),
}

/// Every route of both documents needs `Authorization: Bearer <JWT>` (unless the side runs
/// with `AUTH=off`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        openapi.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    info(
        title = "esr command side",
        description = "Commands on the served modules' aggregates: each appends events to the aggregate's stream, with optimistic concurrency (If-Match) and idempotency (Idempotency-Key)."
    ),
    // Reached only through the error responses, which utoipa does not walk for components.
    components(schemas(ErrorBody))
)]
pub struct CommandApi;

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerAuth),
    info(
        title = "esr query side",
        description = "Read models folded by the projectors, time travel and history."
    ),
    components(schemas(ErrorBody))
)]
pub struct QueryApi;
