//! Azure: the Key Vault the secrets come from, and the credential the
//! service authenticates with (managed identity in Azure, the developer's
//! own login elsewhere).

use std::time::Duration;

use super::{Environment, SettingsError, Vars};

#[derive(Debug, Clone)]
pub struct AzureSettings {
    pub credential: CredentialKind,
    /// A user-assigned managed identity (`AZURE_CLIENT_ID`).
    pub client_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// The app's managed identity (in Azure).
    ManagedIdentity,
    /// The developer's Azure CLI / azd login (local runs).
    DeveloperTools,
}

#[derive(Debug, Clone)]
pub struct KeyVaultSettings {
    pub url: String,
    pub names: SecretNames,
    /// Key Vault's check that an authentication challenge names the vault's
    /// own domain. Only local stand-ins may turn it off.
    pub verify_challenge_resource: bool,
    /// How often the secrets are read again (rotations take effect).
    pub refresh_interval: Duration,
}

/// Names of the secrets in Key Vault.
#[derive(Debug, Clone)]
pub struct SecretNames {
    pub database_url: String,
    pub secret_key: String,
    pub admin_api_key: String,
}

pub(super) fn azure_settings(
    vars: &Vars<'_>,
    environment: Environment,
) -> Result<AzureSettings, SettingsError> {
    // In Azure the platform announces the managed identity endpoint.
    let in_azure = vars.is_set("IDENTITY_ENDPOINT") || environment.is_deployed();
    let credential = match vars.get("AZURE_CREDENTIAL") {
        Some("managed-identity") => CredentialKind::ManagedIdentity,
        Some("developer-tools") => CredentialKind::DeveloperTools,
        Some(_) => {
            return Err(SettingsError::new(
                "AZURE_CREDENTIAL",
                "must be managed-identity or developer-tools",
            ));
        }
        None if in_azure => CredentialKind::ManagedIdentity,
        None => CredentialKind::DeveloperTools,
    };
    Ok(AzureSettings {
        credential,
        client_id: vars.get("AZURE_CLIENT_ID").map(str::to_owned),
    })
}

pub(super) fn key_vault_settings(
    vars: &Vars<'_>,
    environment: Environment,
) -> Result<Option<KeyVaultSettings>, SettingsError> {
    let url = match (
        vars.get("AZURE_KEYVAULT_URL"),
        vars.get("AZURE_KEYVAULT_NAME"),
    ) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(name)) => format!("https://{name}.vault.azure.net"),
        (None, None) => return Ok(None),
    };
    let verify_challenge_resource =
        vars.parse_or("AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", true)?;
    if !verify_challenge_resource && environment.is_deployed() {
        return Err(SettingsError::new(
            "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE",
            "may only be turned off outside staging and production",
        ));
    }
    let name = |setting: &str, default: &str| vars.get(setting).unwrap_or(default).to_owned();
    Ok(Some(KeyVaultSettings {
        url,
        names: SecretNames {
            database_url: name(
                "KEYVAULT_SECRET_DATABASE_URL",
                "postgresql-connection-string",
            ),
            secret_key: name("KEYVAULT_SECRET_SECRET_KEY", "jwt-secret-key"),
            admin_api_key: name("KEYVAULT_SECRET_ADMIN_API_KEY", "admin-api-key"),
        },
        verify_challenge_resource,
        refresh_interval: Duration::from_secs(vars.parse_or("KEYVAULT_REFRESH_SECONDS", 3600)?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;
    use crate::settings::tests::{production, vars};

    #[test]
    fn key_vault_settings() {
        let s = Settings::from_vars(&vars(&[("AZURE_KEYVAULT_NAME", "amp-kv")])).unwrap();
        let kv = s.key_vault.unwrap();
        assert_eq!(kv.url, "https://amp-kv.vault.azure.net");
        assert_eq!(kv.names.database_url, "postgresql-connection-string");
        assert_eq!(s.azure.credential, CredentialKind::DeveloperTools);
        assert!(kv.verify_challenge_resource);

        // Production with a vault: secrets may come from it, so they are not
        // required in the environment; managed identity is the credential.
        let mut p = production(&[
            ("AZURE_KEYVAULT_NAME", "amp-kv"),
            ("AZURE_CLIENT_ID", "cid"),
        ]);
        for k in ["DATABASE_URL", "SECRET_KEY", "ADMIN_API_KEY"] {
            p.remove(k);
        }
        let s = Settings::from_vars(&p).unwrap();
        assert!(s.key_vault.is_some());
        assert_eq!(s.azure.credential, CredentialKind::ManagedIdentity);
        assert_eq!(s.azure.client_id.as_deref(), Some("cid"));
        assert!(s.database.config.is_none());

        let err = Settings::from_vars(&production(&[
            ("AZURE_KEYVAULT_NAME", "amp-kv"),
            ("AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE", "false"),
        ]))
        .unwrap_err();
        assert_eq!(err.name, "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE");
    }
}
