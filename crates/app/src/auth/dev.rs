//! Signing tokens, for local development, the demo and tests only: the services verify
//! tokens and never sign one. `esr token` uses it to mint a token from a local private key.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::KeySource;

/// A private key that signs tokens.
pub struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
    kid: Option<String>,
}

impl Signer {
    /// A PEM private key (PKCS#8): Ed25519 (EdDSA), P-256 (ES256) or RSA (RS256).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let (key, algorithm) = if let Ok(key) = EncodingKey::from_ed_pem(pem) {
            (key, Algorithm::EdDSA)
        } else if let Ok(key) = EncodingKey::from_ec_pem(pem) {
            (key, Algorithm::ES256)
        } else if let Ok(key) = EncodingKey::from_rsa_pem(pem) {
            (key, Algorithm::RS256)
        } else {
            return Err("not a PEM private key of Ed25519, P-256 (EC) or RSA".into());
        };
        Ok(Self {
            key,
            algorithm,
            kid: None,
        })
    }

    /// A fresh Ed25519 key pair that lives in this process (the demo's), and the key source
    /// that verifies its tokens.
    pub fn ephemeral() -> Result<(Self, KeySource), String> {
        use ring::signature::KeyPair as _;
        let random = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&random)
            .map_err(|e| format!("cannot make a key: {e}"))?;
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
            .map_err(|e| format!("cannot read the key made: {e}"))?;
        let verifying = KeySource::Static {
            key: jsonwebtoken::DecodingKey::from_ed_der(pair.public_key().as_ref()),
            algorithm: Algorithm::EdDSA,
        };
        let signer = Self {
            key: EncodingKey::from_ed_der(pkcs8.as_ref()),
            algorithm: Algorithm::EdDSA,
            kid: None,
        };
        Ok((signer, verifying))
    }

    /// Sign with this `kid` in the header (for keys published in a JWKS).
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Sign any claims.
    pub fn sign(&self, claims: &Value) -> Result<String, String> {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|e| e.to_string())
    }

    /// A token for `subject` with `roles`, valid for `ttl` from now, with `iss` and `aud` when
    /// given.
    pub fn token(
        &self,
        subject: &str,
        roles: &[String],
        ttl: Duration,
        issuer: Option<&str>,
        audience: Option<&str>,
    ) -> Result<String, String> {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "sub": subject,
            "roles": roles,
            "iat": now,
            "exp": now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        });
        if let Some(issuer) = issuer {
            claims["iss"] = json!(issuer);
        }
        if let Some(audience) = audience {
            claims["aud"] = json!(audience);
        }
        self.sign(&claims)
    }
}
