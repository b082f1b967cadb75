//! User bearer tokens (JWT): HS256 with `SECRET_KEY`, or RS256 signed by an
//! identity provider (Entra ID) whose public keys come from a JWKS. The
//! verifier is built once from settings; the JWKS is fetched on first use,
//! never at start-up.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use uuid::Uuid;

use crate::refresh::Refreshing;
use crate::settings::{AuthSettings, KeySource, TokenAlgorithm};

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;
/// An unknown `kid` refetches the JWKS at most this often, so that tokens
/// with made-up key ids cannot make us hammer the identity provider.
const UNKNOWN_KID_REFRESH: Duration = Duration::from_secs(60);
/// How long fetched signing keys stay in use while the provider cannot be
/// reached (providers publish new keys well before they sign with them).
const KEYS_MAX_STALENESS: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT at all (not three base64url parts of JSON).
    #[error("the bearer token is not a valid JWT")]
    Malformed,
    #[error("the token was rejected: {0}")]
    Invalid(String),
    #[error("the `{0}` claim is missing or not a UUID")]
    BadUserClaim(String),
    /// The header lists extensions in `crit`, which a recipient must
    /// understand or reject (RFC 7515 §4.1.11); we understand none.
    #[error(
        "the token was rejected: its header has `crit`, naming extensions this service \
         does not support"
    )]
    CriticalExtensions,
    /// The identity provider's keys could not be fetched: not the caller's fault.
    #[error("the token signing keys are unavailable: {0}")]
    KeysUnavailable(String),
}

/// Verifies user tokens. Built once per process: with RS256 it keeps the
/// identity provider's keys; with HS256 the key is a secret, passed to
/// [`TokenVerifier::verify`] as currently resolved.
pub struct TokenVerifier {
    /// `None` for HS256.
    jwks: Option<JwksCache>,
    validation: Validation,
    user_claim: String,
}

impl TokenVerifier {
    /// `fetch_timeout` bounds each fetch of the identity provider's keys.
    pub fn new(auth: &AuthSettings, fetch_timeout: Duration) -> Self {
        let tokens = &auth.tokens;
        let (jwks, algorithm) = match &tokens.algorithm {
            TokenAlgorithm::Hs256 => (None, Algorithm::HS256),
            TokenAlgorithm::Rs256 { keys } => (
                Some(JwksCache::new(keys.clone(), tokens.jwks_ttl, fetch_timeout)),
                Algorithm::RS256,
            ),
        };
        // Exactly one algorithm: `none`, and HS256 signed with an RS256
        // public key (algorithm confusion), are both refused by this list.
        let mut validation = Validation::new(algorithm);
        // `exp` and `nbf` are checked by `check_times`: jsonwebtoken cannot
        // read a fractional one while serde_json keeps numbers' text
        // (`arbitrary_precision`, for exact transcripts), and would refuse
        // a token RFC 7519 allows.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = vec![];
        match &tokens.issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &tokens.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Self {
            jwks,
            validation,
            user_claim: auth.user_claim.clone(),
        }
    }

    /// The user id the token vouches for; `secret_key` is the HS256 key
    /// (unused with RS256).
    pub async fn verify(&self, token: &str, secret_key: &SecretString) -> Result<Uuid, TokenError> {
        let invalid = rejected;
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        if header.crit.is_some() {
            return Err(TokenError::CriticalExtensions);
        }
        let key = match &self.jwks {
            None => DecodingKey::from_secret(secret_key.expose_secret().as_bytes()),
            Some(cache) => {
                if header.alg != Algorithm::RS256 {
                    return Err(TokenError::Invalid("the algorithm must be RS256".into()));
                }
                let kid = header
                    .kid
                    .ok_or_else(|| TokenError::Invalid("the token names no key (kid)".into()))?;
                cache.key(&kid).await?
            }
        };
        let data = jsonwebtoken::decode::<HashMap<String, Value>>(token, &key, &self.validation)
            .map_err(invalid)?;
        check_times(&data.claims, jsonwebtoken::get_current_timestamp() as f64)?;
        data.claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| TokenError::BadUserClaim(self.user_claim.clone()))
    }
}

/// `exp` (required) and `nbf` (if present) at `now`, both with
/// [`LEEWAY_SECONDS`]; as NumericDates (RFC 7519) they may be fractional.
fn check_times(claims: &HashMap<String, Value>, now: f64) -> Result<(), TokenError> {
    let leeway = LEEWAY_SECONDS as f64;
    let time = |claim: &str| match claims.get(claim) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .map(Some)
            .ok_or_else(|| TokenError::Invalid(format!("its `{claim}` claim is malformed"))),
    };
    let exp = time("exp")?.ok_or_else(|| TokenError::Invalid("it has no `exp` claim".into()))?;
    if exp < now - leeway {
        return Err(TokenError::Invalid("it has expired".into()));
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now + leeway) {
        return Err(TokenError::Invalid("it is not valid yet (nbf)".into()));
    }
    Ok(())
}

/// Why a token was refused, in words a client developer can act on.
fn rejected(e: jsonwebtoken::errors::Error) -> TokenError {
    use jsonwebtoken::errors::ErrorKind::*;
    let reason = match e.kind() {
        InvalidToken | Base64(_) | Json(_) | Utf8(_) => return TokenError::Malformed,
        ExpiredSignature => "it has expired".to_owned(),
        ImmatureSignature => "it is not valid yet (nbf)".to_owned(),
        InvalidSignature => "its signature does not match".to_owned(),
        InvalidIssuer => "it was issued by another issuer (iss)".to_owned(),
        InvalidAudience => "it is meant for another audience (aud)".to_owned(),
        InvalidAlgorithm | MissingAlgorithm | InvalidAlgorithmName | UnsupportedAlgorithm => {
            "it is signed with an algorithm this service does not accept".to_owned()
        }
        MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
        InvalidClaimFormat(claim) => format!("its `{claim}` claim is malformed"),
        _ => e.to_string(),
    };
    TokenError::Invalid(reason)
}

/// The identity provider's signing keys: fetched on first use, refreshed
/// after `ttl`, and kept (stale-while-error) up to [`KEYS_MAX_STALENESS`]
/// while the provider is down (see `refresh`).
struct JwksCache {
    source: KeySource,
    http: reqwest::Client,
    keys: Arc<Refreshing<JwkSet, TokenError>>,
    /// When an unknown `kid` last forced a fetch.
    last_forced: std::sync::Mutex<Option<Instant>>,
}

impl JwksCache {
    fn new(source: KeySource, ttl: Duration, fetch_timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(fetch_timeout)
            .build()
            .expect("an HTTP client with default TLS settings");
        Self {
            source,
            http,
            keys: Arc::new(Refreshing::fixed(
                "token signing keys",
                ttl,
                KEYS_MAX_STALENESS,
            )),
            last_forced: std::sync::Mutex::new(None),
        }
    }

    /// The key named `kid`.
    async fn key(&self, kid: &str) -> Result<DecodingKey, TokenError> {
        let fetch = || fetch_jwks(self.http.clone(), self.source.clone());
        let set = self.keys.get(fetch).await?;
        if let Some(key) = find(&set, kid)? {
            return Ok(key);
        }
        // A new key may have been published since we fetched: look again,
        // but not more than once a minute.
        let may_refresh = {
            let mut last = self.last_forced.lock().expect("kid refresh time");
            let may = last.is_none_or(|at| at.elapsed() >= UNKNOWN_KID_REFRESH);
            if may {
                *last = Some(Instant::now());
            }
            may
        };
        if may_refresh {
            let set = self
                .keys
                .fetch(|current| Arc::ptr_eq(current, &set), fetch)
                .await?;
            if let Some(key) = find(&set, kid)? {
                return Ok(key);
            }
        }
        Err(TokenError::Invalid(format!(
            "no signing key with kid {kid:?}"
        )))
    }
}

#[tracing::instrument(name = "jwks.fetch", skip_all, fields(otel.kind = "client"))]
async fn fetch_jwks(http: reqwest::Client, source: KeySource) -> Result<JwkSet, TokenError> {
    let unavailable = |e: reqwest::Error| TokenError::KeysUnavailable(e.to_string());
    let url = match &source {
        KeySource::Jwks(url) => url.clone(),
        KeySource::Discovery(issuer) => {
            let discovery = format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            );
            let document: Value = http
                .get(&discovery)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(unavailable)?
                .json()
                .await
                .map_err(unavailable)?;
            document["jwks_uri"]
                .as_str()
                .ok_or_else(|| {
                    TokenError::KeysUnavailable("the discovery document has no jwks_uri".into())
                })?
                .to_owned()
        }
    };
    let keys = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(unavailable)?
        .json()
        .await
        .map_err(unavailable)?;
    tracing::info!(%url, "fetched token signing keys");
    Ok(keys)
}

fn find(set: &JwkSet, kid: &str) -> Result<Option<DecodingKey>, TokenError> {
    set.find(kid)
        .map(|jwk| {
            DecodingKey::from_jwk(jwk)
                .map_err(|e| TokenError::KeysUnavailable(format!("unusable key {kid:?}: {e}")))
        })
        .transpose()
}

/// A token for local development (`dev-token` subcommand).
pub fn issue_dev_token(auth: &AuthSettings, user: Uuid, ttl_seconds: u64) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({
        auth.user_claim.clone(): user.to_string(),
        "iat": now,
        "exp": now + ttl_seconds,
    });
    if let Some(issuer) = &auth.tokens.issuer {
        claims["iss"] = issuer.clone().into();
    }
    if let Some(audience) = &auth.tokens.audience {
        claims["aud"] = audience.clone().into();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(auth.secret_key.expose_secret().as_bytes()),
    )
    .expect("HS256 signing with an in-memory key cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn auth() -> AuthSettings {
        Settings::from_vars(&Default::default()).unwrap().auth
    }

    #[tokio::test]
    async fn dev_token_round_trips() {
        let auth = auth();
        let user = Uuid::new_v4();
        let token = issue_dev_token(&auth, user, 60);
        assert_eq!(
            TokenVerifier::new(&auth, Duration::from_secs(5))
                .verify(&token, &auth.secret_key)
                .await
                .unwrap(),
            user
        );
    }

    #[tokio::test]
    async fn other_keys_and_algorithms_are_rejected() {
        let auth = auth();
        let verifier = TokenVerifier::new(&auth, Duration::from_secs(5));
        let user = Uuid::new_v4();
        let claims = serde_json::json!({"sub": user.to_string(), "exp": jsonwebtoken::get_current_timestamp() + 60});
        let wrong_key = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"another key"),
        )
        .unwrap();
        assert!(verifier.verify(&wrong_key, &auth.secret_key).await.is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(auth.secret_key.expose_secret().as_bytes()),
        )
        .unwrap();
        assert!(verifier.verify(&hs512, &auth.secret_key).await.is_err());
    }

    /// RFC 7519's NumericDate may be fractional (PyJWT passes
    /// `time.time() + 600` through as it is).
    #[tokio::test]
    async fn fractional_exp_and_nbf_are_honoured() {
        let auth = auth();
        let verifier = TokenVerifier::new(&auth, Duration::from_secs(5));
        let user = Uuid::new_v4();
        let now = jsonwebtoken::get_current_timestamp() as f64;
        let token = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(auth.secret_key.expose_secret().as_bytes()),
            )
            .unwrap()
        };
        let sub = user.to_string();
        let valid = token(serde_json::json!({"sub": sub, "exp": now + 600.5, "nbf": now - 0.5}));
        assert_eq!(
            verifier.verify(&valid, &auth.secret_key).await.unwrap(),
            user
        );
        for (claims, why) in [
            (
                serde_json::json!({"sub": sub, "exp": now - 600.5}),
                "expired",
            ),
            (
                serde_json::json!({"sub": sub, "exp": now + 600.5, "nbf": now + 300.5}),
                "not valid yet",
            ),
            (serde_json::json!({"sub": sub, "exp": "tomorrow"}), "`exp`"),
            (serde_json::json!({"sub": sub}), "`exp`"),
        ] {
            let err = verifier
                .verify(&token(claims), &auth.secret_key)
                .await
                .unwrap_err();
            assert!(err.to_string().contains(why), "{why}: {err}");
        }
    }

    #[tokio::test]
    async fn a_header_naming_critical_extensions_is_rejected() {
        let auth = auth();
        let verifier = TokenVerifier::new(&auth, Duration::from_secs(5));
        let claims = serde_json::json!({"sub": Uuid::new_v4().to_string(), "exp": jsonwebtoken::get_current_timestamp() + 60});
        let mut header = Header::new(Algorithm::HS256);
        header.crit = Some(vec!["exp".to_owned()]);
        let token = jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_secret(auth.secret_key.expose_secret().as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            verifier.verify(&token, &auth.secret_key).await,
            Err(TokenError::CriticalExtensions)
        ));
    }
}
