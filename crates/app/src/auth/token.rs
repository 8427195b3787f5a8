//! Verifying a JWT: signature by a known public key, `exp`/`nbf` with a small leeway, `iss` and
//! `aud` when configured, a subject, and roles from a configured claim.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use esr_kernel::Actor;

use super::jwks::JwksSource;

/// Why a request is not authenticated. Every variant is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no Authorization header: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token has the wrong issuer (iss)")]
    WrongIssuer,
    #[error("the token has the wrong audience (aud)")]
    WrongAudience,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is signed by an unknown key{}", .0.as_deref().map(|kid| format!(" (kid {kid:?})")).unwrap_or_default())]
    UnknownKey(Option<String>),
    #[error("the token's algorithm {0} is not the one its key is for")]
    WrongAlgorithm(String),
    #[error("the token has no {0:?} claim")]
    MissingClaim(String),
    #[error("the token's {0:?} claim must be a list of strings")]
    BadRoles(String),
}

impl TokenError {
    /// The `error` code of the JSON answer.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing | TokenError::NotBearer => "unauthenticated",
            _ => "invalid_token",
        }
    }

    fn from_jwt(error: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match error.kind() {
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm("?".into()),
            ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
            _ => TokenError::Malformed(error.to_string()),
        }
    }
}

/// What a valid token must say, besides its signature.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// `iss` must equal this, when set.
    pub issuer: Option<String>,
    /// `aud` must contain this, when set.
    pub audience: Option<String>,
    /// The claim holding the caller's roles: a list of strings (or one space-separated string).
    pub roles_claim: String,
    /// Clock skew forgiven on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            roles_claim: "roles".into(),
            leeway_secs: 30,
        }
    }
}

/// Where the public keys come from.
pub enum KeySource {
    /// One key (`AUTH_JWT_KEY_FILE`): every token must be signed by it, whatever its `kid`.
    Static {
        key: DecodingKey,
        algorithm: Algorithm,
    },
    /// A JWKS document (`AUTH_JWKS_URL`): the token's `kid` picks the key.
    Jwks(std::sync::Arc<JwksSource>),
}

impl KeySource {
    /// A PEM public key: Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256). The key's kind fixes
    /// the algorithm, so a token cannot pick a weaker one.
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(KeySource::Static {
                key,
                algorithm: Algorithm::EdDSA,
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(KeySource::Static {
                key,
                algorithm: Algorithm::ES256,
            });
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(KeySource::Static {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        Err("not a PEM public key of Ed25519, P-256 (EC) or RSA".into())
    }
}

/// Checks bearer tokens and says who sent them.
pub struct Verifier {
    keys: KeySource,
    settings: TokenSettings,
    /// Tokens whose signature verified, with what they said: a client sends one token with
    /// many requests, and checking a signature costs more than the rest of a command's HTTP
    /// handling. A hit is the very same token text, still within its times, verified against
    /// the key set still in use.
    verified: std::sync::Mutex<HashMap<String, Verified>>,
}

#[derive(Clone)]
struct Verified {
    actor: Actor,
    not_before: i64,
    expires: i64,
    key_generation: u64,
}

/// Tokens remembered as verified; when full, forgotten all at once (a miss is one check).
const VERIFIED_TOKENS: usize = 10_000;

impl Verifier {
    pub fn new(keys: KeySource, settings: TokenSettings) -> Self {
        Self {
            keys,
            settings,
            verified: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn key_generation(&self) -> u64 {
        match &self.keys {
            KeySource::Static { .. } => 0,
            KeySource::Jwks(jwks) => jwks.generation(),
        }
    }

    /// The actor a token names, or why it names nobody.
    pub async fn verify(&self, token: &str) -> Result<Actor, TokenError> {
        let generation = self.key_generation();
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(self.settings.leeway_secs).unwrap_or(i64::MAX / 4);
        let remembered = self
            .lock_verified()
            .get(token)
            .filter(|v| {
                v.key_generation == generation
                    && now + leeway >= v.not_before
                    && now - leeway < v.expires
            })
            .map(|v| v.actor.clone());
        if let Some(actor) = remembered {
            return Ok(actor);
        }
        let (actor, claims) = self.check(token).await?;
        let time = |name: &str| claims.get(name).and_then(Value::as_i64);
        let verified = Verified {
            actor: actor.clone(),
            not_before: time("nbf").unwrap_or(i64::MIN),
            expires: time("exp").unwrap_or(i64::MIN),
            key_generation: generation,
        };
        let mut remembered = self.lock_verified();
        if remembered.len() >= VERIFIED_TOKENS {
            remembered.clear();
        }
        remembered.insert(token.to_owned(), verified);
        Ok(actor)
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.verified
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Verify the token's signature and claims: the actor, and the claims for the cache.
    async fn check(
        &self,
        token: &str,
    ) -> Result<(Actor, serde_json::Map<String, Value>), TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let (key, algorithm) = match &self.keys {
            KeySource::Static { key, algorithm } => (key.clone(), *algorithm),
            KeySource::Jwks(jwks) => jwks.key(header.kid.as_deref()).await?,
        };
        if header.alg != algorithm {
            return Err(TokenError::WrongAlgorithm(format!("{:?}", header.alg)));
        }
        let claims = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token,
            &key,
            &self.validation(algorithm),
        )
        .map_err(TokenError::from_jwt)?
        .claims;
        let subject = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
            _ => return Err(TokenError::MissingClaim("sub".into())),
        };
        let claim = &self.settings.roles_claim;
        let roles = match claims.get(claim) {
            None | Some(Value::Null) => vec![],
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| TokenError::BadRoles(claim.clone()))?,
            Some(_) => return Err(TokenError::BadRoles(claim.clone())),
        };
        Ok((Actor::user(subject, roles), claims))
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.settings.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &self.settings.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &self.settings.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::auth::dev::Signer;

    fn verifier(leeway_secs: u64) -> (Signer, Verifier) {
        let (signer, keys) = Signer::ephemeral().unwrap_or_else(|e| panic!("{e}"));
        let settings = TokenSettings {
            leeway_secs,
            ..TokenSettings::default()
        };
        (signer, Verifier::new(keys, settings))
    }

    #[tokio::test]
    async fn a_remembered_token_is_refused_once_it_expires() {
        let (signer, verifier) = verifier(0);
        let now = chrono::Utc::now().timestamp();
        let token = signer
            .sign(&serde_json::json!({"sub": "1", "exp": now + 1}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verifier.verify(&token).await, Ok(Actor::user("1", [])));
        assert_eq!(verifier.verify(&token).await, Ok(Actor::user("1", [])));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(verifier.verify(&token).await, Err(TokenError::Expired));
    }

    /// Each distinct valid token is remembered; past VERIFIED_TOKENS the memory starts over
    /// rather than growing.
    #[tokio::test]
    async fn remembered_tokens_stay_within_their_bound() {
        let (signer, verifier) = verifier(30);
        for n in 0..=VERIFIED_TOKENS {
            let token = signer
                .token(&format!("u{n}"), &[], Duration::from_secs(60), None, None)
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(verifier.verify(&token).await.is_ok());
            assert!(verifier.lock_verified().len() <= VERIFIED_TOKENS);
        }
        assert_eq!(verifier.lock_verified().len(), 1);
    }

    #[tokio::test]
    async fn a_token_changed_by_one_character_is_checked_again() {
        let (signer, verifier) = verifier(30);
        let token = signer
            .token(
                "1",
                &["admin".to_owned()],
                Duration::from_secs(60),
                None,
                None,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(verifier.verify(&token).await.is_ok());
        let mut forged = token.clone();
        let last = forged
            .pop()
            .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
        forged.push(last);
        assert!(verifier.verify(&forged).await.is_err());
    }
}
