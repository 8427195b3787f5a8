//! Who is calling: `Authorization: Bearer <JWT>` verified against a public key (a PEM file, or
//! a JWKS document fetched and refreshed), turned into an [`Actor`] for the domain to judge.
//!
//! - [`Authentication::Off`] (`AUTH=off`) makes every caller [`Actor::Anonymous`]; it is only
//!   allowed on loopback addresses ([`Authentication::check_listener`]).
//! - A missing or bad token is answered 401 with `WWW-Authenticate: Bearer` and a JSON body
//!   saying what was wrong; never a 500.
//!
//! What an actor may do is not decided here: `decide` judges it (a user acts on their own
//! stream, an admin on anyone's), and the query side asks the domain for history reads.

pub mod dev;
mod jwks;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use esr_kernel::Actor;

pub use jwks::JwksSource;
pub use token::{KeySource, TokenError, TokenSettings, Verifier};

use crate::http::ApiError;

/// How a side authenticates its callers.
#[derive(Clone)]
pub enum Authentication {
    /// `AUTH=off`: nobody is authenticated and every command is allowed (loopback only).
    Off,
    /// Bearer JWTs, verified.
    Jwt(Arc<Verifier>),
}

impl Authentication {
    /// Refuses a listener that is not on a loopback address when authentication is off: an
    /// open side must not face a network by accident. `setting` names the listen variable.
    pub fn check_listener(&self, address: SocketAddr, setting: &str) -> anyhow::Result<()> {
        if matches!(self, Authentication::Off) && !address.ip().is_loopback() {
            anyhow::bail!(
                "AUTH=off serves anyone as anyone, so it only listens on loopback: {setting} is \
                 {address}; set {setting} to a 127.0.0.1 address, or turn authentication on \
                 (unset AUTH, and set AUTH_JWT_KEY_FILE or AUTH_JWKS_URL)"
            );
        }
        Ok(())
    }

    async fn actor(&self, parts: &Parts) -> Result<Actor, TokenError> {
        match self {
            Authentication::Off => Ok(Actor::Anonymous),
            Authentication::Jwt(verifier) => {
                let token = bearer(parts)?;
                verifier.verify(token).await
            }
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(parts: &Parts) -> Result<&str, TokenError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?;
    let text = value.to_str().map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = text.split_once(' ').ok_or(TokenError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::NotBearer);
    }
    Ok(token.trim())
}

/// Middleware: authenticate the request and hand its [`Caller`] to the handler, or answer 401.
pub async fn authenticate(
    State(authentication): State<Authentication>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    match authentication.actor(&parts).await {
        Ok(actor) => {
            parts.extensions.insert(Caller(actor));
            next.run(Request::from_parts(parts, body)).await
        }
        Err(error) => unauthenticated(&error),
    }
}

fn unauthenticated(error: &TokenError) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string()).into_response();
    // RFC 6750: the scheme, and for a token that was sent, why it was refused.
    let challenge = match error {
        TokenError::Missing => "Bearer realm=\"esr\", error=\"invalid_token\"".to_owned(),
        other => format!(
            "Bearer realm=\"esr\", error=\"invalid_token\", error_description=\"{}\"",
            other.to_string().replace(['"', '\\'], "'")
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The authenticated caller of a request, as [`authenticate`] found it.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        // Only a route mounted without the middleware lacks it: a wiring mistake, refused
        // rather than served as anyone.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "this route was mounted without authentication",
            )
        })
    }
}
