//! Who may call: user tokens (HS256 or RS256), the admin key, and the
//! development shortcuts (`AUTH_REQUIRED=false`).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use super::{Environment, SettingsError, Vars};

/// Values that ship in `.env.development` / `.env.test` or as defaults. They
/// are public, so staging and production refuse them.
const DEVELOPMENT_SECRET_KEY: &str = "development-secret-key-not-secure";
const KNOWN_DEVELOPMENT_SECRETS: &[&str] = &[
    DEVELOPMENT_SECRET_KEY,
    "dev-admin-key",
    "test-secret-key-not-secure-but-32-bytes-long",
    "test-admin-key-not-secure-but-32-bytes-long",
];
const MIN_SECRET_BYTES: usize = 32;

/// The application that unauthenticated calls act as when
/// `AUTH_REQUIRED=false` (a macro too, for SQL text built at compile time).
macro_rules! dev_app_id {
    () => {
        "dev-app"
    };
}
pub(crate) use dev_app_id;
pub const DEV_APP_ID: &str = dev_app_id!();
/// The user that unauthenticated calls act as when `AUTH_REQUIRED=false`.
pub const DEV_USER_ID: Uuid = Uuid::from_u128(0x00000000_0000_4000_8000_000000000001);

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub required: bool,
    pub secret_key: SecretString,
    pub admin_api_key: Option<SecretString>,
    pub user_claim: String,
    pub tokens: TokenSettings,
}

/// How user tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenAlgorithm {
    /// Signed with `SECRET_KEY` (development, or a trusted issuer sharing it).
    Hs256,
    /// Signed by an identity provider (Entra ID) whose public keys are
    /// published as a JWKS.
    Rs256 { keys: KeySource },
}

/// Where RS256 public keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Jwks(String),
    /// `{issuer}/.well-known/openid-configuration` names the JWKS.
    Discovery(String),
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub algorithm: TokenAlgorithm,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// How long fetched signing keys are trusted before they are fetched again.
    pub jwks_ttl: Duration,
}

pub(super) fn from_vars(
    vars: &Vars<'_>,
    environment: Environment,
    key_vault: bool,
) -> Result<AuthSettings, SettingsError> {
    let deployed = environment.is_deployed();
    let issuer = vars.get("JWT_ISSUER").map(str::to_owned);
    let algorithm = match vars.get("JWT_ALGORITHM").unwrap_or("HS256") {
        "HS256" => TokenAlgorithm::Hs256,
        "RS256" => {
            let keys = match (vars.get("JWT_JWKS_URL"), &issuer) {
                (Some(url), _) => KeySource::Jwks(url.to_owned()),
                (None, Some(issuer)) => KeySource::Discovery(issuer.clone()),
                (None, None) => {
                    return Err(SettingsError::new(
                        "JWT_JWKS_URL",
                        "RS256 needs JWT_JWKS_URL or JWT_ISSUER (for OpenID discovery)",
                    ));
                }
            };
            TokenAlgorithm::Rs256 { keys }
        }
        _ => {
            return Err(SettingsError::new(
                "JWT_ALGORITHM",
                "must be HS256 or RS256",
            ));
        }
    };
    let tokens = TokenSettings {
        issuer,
        audience: vars.get("JWT_AUDIENCE").map(str::to_owned),
        jwks_ttl: Duration::from_secs(vars.parse_or("JWT_JWKS_TTL_SECONDS", 3600)?),
        algorithm,
    };
    if matches!(tokens.algorithm, TokenAlgorithm::Rs256 { .. }) {
        // An identity provider signs tokens for many applications: only
        // its issuer and our audience make a token ours.
        for (name, value) in [
            ("JWT_ISSUER", &tokens.issuer),
            ("JWT_AUDIENCE", &tokens.audience),
        ] {
            if value.is_none() {
                return Err(SettingsError::new(
                    name,
                    "must be set with JWT_ALGORITHM=RS256",
                ));
            }
        }
    }
    let auth = AuthSettings {
        tokens,
        required: vars.parse_or("AUTH_REQUIRED", true)?,
        secret_key: SecretString::from(vars.get("SECRET_KEY").unwrap_or(if deployed {
            ""
        } else {
            DEVELOPMENT_SECRET_KEY
        })),
        admin_api_key: vars.get("ADMIN_API_KEY").map(SecretString::from),
        user_claim: vars.get("JWT_USER_CLAIM").unwrap_or("sub").to_owned(),
    };
    if deployed {
        if !auth.required {
            return Err(SettingsError::new(
                "AUTH_REQUIRED",
                "must be true in staging and production",
            ));
        }
        // With a Key Vault they are checked once resolved (`secrets`).
        if !key_vault {
            check_deployed_secret(&auth)?;
        }
    }
    Ok(auth)
}

/// Staging and production never run with public or weak secrets.
pub fn check_deployed_secret(auth: &AuthSettings) -> Result<(), SettingsError> {
    if auth.tokens.algorithm == TokenAlgorithm::Hs256 {
        check_strong_secret("SECRET_KEY", Some(&auth.secret_key))?;
    }
    check_strong_secret("ADMIN_API_KEY", auth.admin_api_key.as_ref())
}

fn check_strong_secret(
    name: &'static str,
    value: Option<&SecretString>,
) -> Result<(), SettingsError> {
    let value = value.map(|v| v.expose_secret()).unwrap_or_default();
    if value.is_empty() {
        return Err(SettingsError::new(
            name,
            "must be set in staging and production",
        ));
    }
    if value.len() < MIN_SECRET_BYTES {
        return Err(SettingsError::new(
            name,
            format!("must be at least {MIN_SECRET_BYTES} bytes in staging and production"),
        ));
    }
    if KNOWN_DEVELOPMENT_SECRETS.contains(&value) {
        return Err(SettingsError::new(
            name,
            "is a published development value; generate a new one",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::settings::tests::{production, vars};

    #[test]
    fn rs256_needs_keys_issuer_and_audience() {
        let rs = |extra: &[(&str, &str)]| {
            let mut v = vars(&[("JWT_ALGORITHM", "RS256")]);
            v.extend(vars(extra));
            Settings::from_vars(&v)
        };
        assert_eq!(rs(&[]).unwrap_err().name, "JWT_JWKS_URL");
        assert_eq!(
            rs(&[("JWT_ISSUER", "https://idp")]).unwrap_err().name,
            "JWT_AUDIENCE"
        );
        let s = rs(&[("JWT_ISSUER", "https://idp"), ("JWT_AUDIENCE", "api://x")]).unwrap();
        assert_eq!(
            s.auth.tokens.algorithm,
            TokenAlgorithm::Rs256 {
                keys: KeySource::Discovery("https://idp".into())
            }
        );
        let s = rs(&[
            ("JWT_ISSUER", "https://idp"),
            ("JWT_AUDIENCE", "api://x"),
            ("JWT_JWKS_URL", "https://idp/keys"),
        ])
        .unwrap();
        assert_eq!(
            s.auth.tokens.algorithm,
            TokenAlgorithm::Rs256 {
                keys: KeySource::Jwks("https://idp/keys".into())
            }
        );
        assert_eq!(
            Settings::from_vars(&vars(&[("JWT_ALGORITHM", "none")]))
                .unwrap_err()
                .name,
            "JWT_ALGORITHM"
        );
        // Production with RS256 needs no SECRET_KEY.
        let mut p = production(&[
            ("JWT_ALGORITHM", "RS256"),
            ("JWT_ISSUER", "https://idp"),
            ("JWT_AUDIENCE", "api://x"),
        ]);
        p.remove("SECRET_KEY");
        assert!(Settings::from_vars(&p).is_ok());
    }
}
