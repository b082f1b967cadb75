//! Secrets from Key Vault through the official Azure SDK, against local
//! stand-ins speaking the real protocols (tests/support/fake_azure.py): an
//! App Service managed-identity endpoint and an HTTPS Key Vault with its
//! authentication challenge. The binary runs as in Azure, trusting the
//! stand-in's CA through SSL_CERT_FILE.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::fake_azure::{FakeAzure, TOKEN};
use crate::helpers::*;
use crate::process::Served;

#[tokio::test]
async fn secrets_come_from_the_vault_and_missing_ones_from_the_environment() {
    let database_url = fresh_database(&admin_url()).await;
    let vault_admin = format!("vault-admin-{}", Uuid::new_v4().simple());
    // No jwt-secret-key in the vault: SECRET_KEY comes from the environment.
    let azure = FakeAzure::start(&json!({
        "postgresql-connection-string": database_url,
        "admin-api-key": vault_admin,
    }));
    // The environment's DATABASE_URL and ADMIN_API_KEY must lose to the vault.
    let vars = azure.vars(&closed_port_url());
    let served = Served::start(vars.clone()).await;
    let http = reqwest::Client::new();

    let health = http.get(served.url("/api/health")).send().await.unwrap();
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "the database URL came from the vault"
    );

    let with_env_key = http
        .post(served.url("/api/applications"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"app_id": "kv-app", "app_name": "KV"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_env_key.status(),
        StatusCode::UNAUTHORIZED,
        "the vault's admin key wins"
    );
    let key = register_application(&http, &served.url(""), &vault_admin, "kv-app").await;

    let settings = amplifier_sessions::settings::Settings::from_vars(&vars).unwrap();
    let token =
        amplifier_sessions::auth::token::issue_dev_token(&settings.auth, Uuid::new_v4(), 600);
    let response = http
        .get(served.url("/api/users/me/sessions"))
        .header("X-API-Key", &key)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "SECRET_KEY fell back to the environment"
    );
    let logs = served.stop();

    let requests = azure.requests();
    assert!(requests.contains("vault challenge"), "{requests}");
    assert!(
        requests.contains("identity https://vault.azure.net client_id=11111111"),
        "{requests}"
    );
    for secret in [
        "postgresql-connection-string",
        "admin-api-key",
        "jwt-secret-key",
    ] {
        assert_eq!(
            requests.matches(&format!("vault get {secret}")).count(),
            1,
            "cached: {requests}"
        );
    }
    assert!(
        !logs.contains(&vault_admin) && !logs.contains(TOKEN),
        "{logs}"
    );
}

#[tokio::test]
async fn an_unreachable_vault_is_a_503_never_a_fallback() {
    let database_url = fresh_database(&admin_url()).await;
    let azure = FakeAzure::start(&json!({}));
    let mut vars = azure.vars(&database_url);
    let closed = unused_port();
    vars.insert(
        "AZURE_KEYVAULT_URL".into(),
        format!("https://localhost:{closed}"),
    );
    let served = Served::start(vars).await;
    let started = Instant::now();
    let response = reqwest::get(served.url("/api/health")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the wait timeout: {:?}",
        started.elapsed()
    );
    let response = reqwest::Client::new()
        .post(served.url("/api/applications"))
        .header("X-API-Key", ADMIN_KEY)
        .json(&json!({"app_id": "kv-app", "app_name": "KV"}))
        .send()
        .await
        .unwrap();
    let detail = expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(detail.contains("secrets"), "{detail}");
    let logs = served.stop();
    assert!(logs.contains("Key Vault"), "a log line says why: {logs}");
}

#[tokio::test]
async fn a_vault_that_denies_access_is_a_503_never_a_fallback() {
    let database_url = fresh_database(&admin_url()).await;
    let azure = FakeAzure::start(&json!({"postgresql-connection-string": database_url}));
    std::fs::write(azure.dir.path().join("deny"), "").unwrap();
    // The environment has a working DATABASE_URL; it must not be used.
    let served = Served::start(azure.vars(&database_url)).await;
    let response = reqwest::get(served.url("/api/health")).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let logs = served.stop();
    assert!(
        logs.contains("not authorized"),
        "a log line says why: {logs}"
    );
}

#[tokio::test]
async fn a_rotated_database_password_is_picked_up_without_restart() {
    let (old, new) = (
        format!("old-{}", Uuid::new_v4().simple()),
        format!("new-{}", Uuid::new_v4().simple()),
    );
    let role = OwnRole::create("kv", &old).await;
    let url = |password: &str| role.url(Some(password));

    let azure = FakeAzure::start(&json!({"postgresql-connection-string": url(&old)}));
    let mut vars = azure.vars(&closed_port_url());
    // No background warm-up connection that could still be logging in while
    // the test terminates the others.
    vars.insert("DATABASE_POOL_MIN_SIZE".into(), "0".into());
    let served = Served::start(vars).await;
    assert_eq!(
        reqwest::get(served.url("/api/health"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Rotate: the database and the vault change; the service is not told.
    azure.set_secrets(&json!({"postgresql-connection-string": url(&new)}));
    role.rotate_password(&new).await;

    wait_until_healthy(
        &served.url("/api/health"),
        "never recovered after the rotation",
    )
    .await;
    let logs = served.stop();
    let requests = azure.requests();
    assert_eq!(
        requests
            .matches("vault get postgresql-connection-string")
            .count(),
        2,
        "{requests}\n{logs}"
    );
}

/// `DATABASE_AUTH=entra`: no password in the URL; the managed identity's
/// token for Azure Database for PostgreSQL is the password of each new
/// connection. Here a local role's password is the token the stand-in
/// endpoint hands out.
#[tokio::test]
async fn passwordless_database_login_with_entra_tokens_and_rotation() {
    let role = OwnRole::create("entra", TOKEN).await;
    let azure = FakeAzure::start(&json!({}));
    let mut vars = azure.vars(&role.url(None));
    vars.remove("AZURE_KEYVAULT_URL");
    vars.insert("DATABASE_AUTH".into(), "entra".into());
    vars.insert("DATABASE_POOL_MIN_SIZE".into(), "0".into());
    let fetched = |azure: &FakeAzure| {
        azure
            .requests()
            .matches("identity https://ossrdbms-aad.database.windows.net")
            .count()
    };

    // A long-lived token is fetched once and reused.
    let served = Served::start(vars.clone()).await;
    for _ in 0..3 {
        assert_eq!(
            reqwest::get(served.url("/api/health"))
                .await
                .unwrap()
                .status(),
            StatusCode::OK
        );
    }
    assert_eq!(
        fetched(&azure),
        1,
        "the token is cached: {}",
        azure.requests()
    );
    let mut logs = served.stop();

    // Tokens close to expiry are replaced before new connections use them:
    // the identity's token changes (and with it what PostgreSQL accepts).
    std::fs::write(azure.dir.path().join("expires_in"), "200").unwrap();
    let served = Served::start(vars).await;
    assert_eq!(
        reqwest::get(served.url("/api/health"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let rotated = format!("rotated-token-{}", Uuid::new_v4().simple());
    std::fs::write(azure.dir.path().join("token"), &rotated).unwrap();
    role.rotate_password(&rotated).await;
    wait_until_healthy(
        &served.url("/api/health"),
        "new connections never used the new token",
    )
    .await;
    logs.push_str(&served.stop());
    assert!(fetched(&azure) >= 3, "{}", azure.requests());
    assert!(
        !logs.contains(TOKEN) && !logs.contains(&rotated),
        "tokens never logged: {logs}"
    );
}
