//! Public keys from a JWKS document (`AUTH_JWKS_URL`), cached. A token whose `kid` is not in
//! the cache makes one refresh (keys rotate); requests with known keys never wait for it.
//! Refreshes triggered by unknown keys are at most one per [`MIN_REFRESH_INTERVAL`], so made-up
//! `kid`s cannot flood the key server, and the set is also refreshed every
//! [`REFRESH_EVERY`] so that a key withdrawn there stops verifying here.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::TokenError;

/// The least time between two refreshes asked for by unknown `kid`s.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// How often the key set is fetched again regardless.
pub const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// The longest one fetch of the document may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type Keys = HashMap<String, (DecodingKey, Algorithm)>;

/// The keys of one JWKS document, kept fresh.
pub struct JwksSource {
    url: String,
    client: reqwest::Client,
    keys: RwLock<Arc<Keys>>,
    /// Counts the key sets fetched: a token verified under an older set is checked again.
    generation: std::sync::atomic::AtomicU64,
    /// Held while a refresh runs (so that one runs at a time), with when the last one ended.
    refreshing: tokio::sync::Mutex<Instant>,
}

impl JwksSource {
    /// Fetch the document once; an error when it cannot be fetched or holds no usable key.
    pub async fn fetch(url: &str) -> Result<Arc<Self>, String> {
        let client = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let keys = download(&client, url).await?;
        if keys.is_empty() {
            return Err(format!(
                "the JWKS at {url} holds no key with a kid this service can use"
            ));
        }
        let source = Arc::new(Self {
            url: url.to_owned(),
            client,
            keys: RwLock::new(Arc::new(keys)),
            generation: std::sync::atomic::AtomicU64::new(0),
            refreshing: tokio::sync::Mutex::new(Instant::now()),
        });
        let weak = Arc::downgrade(&source);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_EVERY).await;
                let Some(source) = weak.upgrade() else { return };
                source.refresh().await;
            }
        });
        Ok(source)
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    fn cached(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        let keys = match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        keys.get(kid).cloned()
    }

    /// The key a token's `kid` names, refreshing the set once if it is not known.
    pub(super) async fn key(
        &self,
        kid: Option<&str>,
    ) -> Result<(DecodingKey, Algorithm), TokenError> {
        let kid = kid.ok_or(TokenError::UnknownKey(None))?;
        if let Some(found) = self.cached(kid) {
            return Ok(found);
        }
        let unknown = || TokenError::UnknownKey(Some(kid.to_owned()));
        let mut last = self.refreshing.lock().await;
        // Another request may have refreshed while this one waited.
        if let Some(found) = self.cached(kid) {
            return Ok(found);
        }
        if last.elapsed() < MIN_REFRESH_INTERVAL {
            return Err(unknown());
        }
        self.replace_keys(&mut last).await;
        self.cached(kid).ok_or_else(unknown)
    }

    async fn refresh(&self) {
        let mut last = self.refreshing.lock().await;
        self.replace_keys(&mut last).await;
    }

    /// Fetch the document again, with the refresh lock held (`last`: when one last ended). A
    /// failed fetch keeps the keys already known: the key server being down must not log
    /// everyone out.
    async fn replace_keys(&self, last: &mut Instant) {
        match download(&self.client, &self.url).await {
            Ok(keys) => {
                let keys = Arc::new(keys);
                match self.keys.write() {
                    Ok(mut held) => *held = keys,
                    Err(poisoned) => *poisoned.into_inner() = keys,
                }
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
            Err(error) => tracing::warn!(%error, "JWKS refresh failed; keeping the keys known"),
        }
        *last = Instant::now();
    }
}

async fn download(client: &reqwest::Client, url: &str) -> Result<Keys, String> {
    let set: JwkSet = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot fetch the JWKS at {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the JWKS at {url} is not a JWK set: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            let algorithm = algorithm_of(jwk)?;
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some((kid, (key, algorithm)))
        })
        .collect())
}

/// The algorithm a key verifies: its `alg` when given, else what its type implies. Only the
/// asymmetric algorithms this service accepts; a shared-secret key is never used.
fn algorithm_of(jwk: &Jwk) -> Option<Algorithm> {
    let implied = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    match jwk.common.key_algorithm {
        None => Some(implied),
        Some(KeyAlgorithm::RS256) if implied == Algorithm::RS256 => Some(implied),
        Some(KeyAlgorithm::ES256) if implied == Algorithm::ES256 => Some(implied),
        Some(KeyAlgorithm::EdDSA) if implied == Algorithm::EdDSA => Some(implied),
        Some(_) => None,
    }
}
