//! User bearer tokens (JWT). HS256 with `SECRET_KEY` today; the verifier is
//! built once from settings so other algorithms (RS256 with JWKS) can slot in.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde_json::Value;
use uuid::Uuid;

use crate::settings::AuthSettings;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 30;

pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    user_claim: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the `{0}` claim is missing or not a UUID")]
    BadUserClaim(String),
}

impl TokenVerifier {
    pub fn new(auth: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        Self {
            key: DecodingKey::from_secret(auth.secret_key.expose_secret().as_bytes()),
            validation,
            user_claim: auth.user_claim.clone(),
        }
    }

    /// The user id the token vouches for.
    pub fn verify(&self, token: &str) -> Result<Uuid, TokenError> {
        let data =
            jsonwebtoken::decode::<HashMap<String, Value>>(token, &self.key, &self.validation)
                .map_err(|e| TokenError::Invalid(e.to_string()))?;
        data.claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| TokenError::BadUserClaim(self.user_claim.clone()))
    }
}

/// A token for local development (`dev-token` subcommand).
pub fn issue_dev_token(auth: &AuthSettings, user: Uuid, ttl_seconds: u64) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        auth.user_claim.clone(): user.to_string(),
        "iat": now,
        "exp": now + ttl_seconds,
    });
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

    #[test]
    fn dev_token_round_trips() {
        let auth = auth();
        let user = Uuid::new_v4();
        let token = issue_dev_token(&auth, user, 60);
        assert_eq!(TokenVerifier::new(&auth).verify(&token).unwrap(), user);
    }

    #[test]
    fn other_keys_and_algorithms_are_rejected() {
        let auth = auth();
        let verifier = TokenVerifier::new(&auth);
        let user = Uuid::new_v4();
        let claims = serde_json::json!({"sub": user.to_string(), "exp": jsonwebtoken::get_current_timestamp() + 60});
        let wrong_key = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"another key"),
        )
        .unwrap();
        assert!(verifier.verify(&wrong_key).is_err());
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(auth.secret_key.expose_secret().as_bytes()),
        )
        .unwrap();
        assert!(verifier.verify(&hs512).is_err());
    }
}
