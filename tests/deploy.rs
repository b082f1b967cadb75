//! The deploy rehearsal: `scripts/deploy.sh`, the script the deploy workflow
//! runs, run here twice against stand-ins of what Azure provides, then used
//! as a client would.
//!
//! - `az` is tests/support/fake_az.py: it evaluates infra/main.bicep for the
//!   app settings and outputs, keeps Key Vault secrets, and "publishes" the
//!   package the way the platform does: unpacked into a fresh directory and
//!   started as an unprivileged user, with the app settings from the Bicep
//!   plus the platform's own variables (managed identity endpoint, port).
//! - Key Vault and the managed identity endpoint are tests/support/fake_azure.py,
//!   spoken to by the real Azure SDK crates; the vault answers under its
//!   real name (`<vault>.vault.azure.net`, via the app's own /etc/hosts), so
//!   the service runs in `production` with every check on.
//! - PostgreSQL is a real server with TLS, with roles made the way Azure
//!   makes them: an Entra administrator (`LOGIN CREATEDB CREATEROLE
//!   NOSUPERUSER`, member of `azure_pg_admin`) who owns the database, and
//!   `pgaadauth_create_principal_with_oid`, which makes the app's own role;
//!   each logs in with the token its identity gets.
//! - User tokens come from a local OpenID provider (RS256, as Entra ID).
//!
//! It runs alone (its own test target, after the others) because it builds
//! the release package, as the workflow does.

#[allow(dead_code)]
#[path = "api/children.rs"]
mod children;
#[allow(dead_code)]
#[path = "api/fake_azure.rs"]
mod fake_azure;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;
#[allow(dead_code)]
#[path = "api/idp.rs"]
mod idp;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use jsonwebtoken::get_current_timestamp;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use fake_azure::{FakeAzure, TOKEN as APP_IDENTITY_TOKEN};
use helpers::*;
use idp::{jwk, sign, signing_key, start_idp};

const DEPLOYER: &str = "amplifier-ci";
const DEPLOYER_TOKEN: &str = "deployer-entra-token-from-the-az-login";
const VAULT: &str = "kv-amplifier-rehearsal";
const IDENTITY: &str = "id-amplifier-production";
const AUDIENCE: &str = "6f1b2c3d-0000-4000-8000-00000000a0d1";

/// PostgreSQL as Azure Database for PostgreSQL sets it up for Entra ID.
async fn azure_like_postgres(server: &OwnServer) {
    let admin = pg_connect(&server.url("127.0.0.1")).await;
    for sql in [
        "CREATE ROLE azure_pg_admin NOLOGIN".to_owned(),
        format!(
            "CREATE ROLE \"{DEPLOYER}\" LOGIN CREATEDB CREATEROLE NOSUPERUSER \
             IN ROLE azure_pg_admin PASSWORD '{DEPLOYER_TOKEN}'"
        ),
        format!("CREATE DATABASE amplifier OWNER \"{DEPLOYER}\""),
        // What Azure's function does for a service principal: a plain login
        // role (no admin), whose password is whatever token its identity
        // gets (here: what the identity stand-in hands out).
        format!(
            "CREATE FUNCTION pgaadauth_create_principal_with_oid(
                 role_name text, object_id text, object_type text, is_admin boolean, is_mfa boolean)
             RETURNS text LANGUAGE plpgsql SECURITY DEFINER AS $$
             BEGIN
                 EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', role_name, '{APP_IDENTITY_TOKEN}');
                 RETURN format('Created role for %s', role_name);
             END $$"
        ),
        "REVOKE ALL ON FUNCTION pgaadauth_create_principal_with_oid FROM PUBLIC".to_owned(),
        "GRANT EXECUTE ON FUNCTION pgaadauth_create_principal_with_oid TO azure_pg_admin".to_owned(),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
}

struct Rehearsal {
    azure: FakeAzure,
    bin: tempfile::TempDir,
    env: HashMap<String, String>,
    app_url: String,
}

impl Rehearsal {
    fn state(&self) -> &Path {
        self.azure.dir.path()
    }

    fn read(&self, name: &str) -> Value {
        serde_json::from_str(&std::fs::read_to_string(self.state().join(name)).unwrap()).unwrap()
    }

    /// Runs `<root>/scripts/deploy.sh` as the workflow does; returns its output.
    fn deploy(&self, root: &Path, extra: &[(&str, &str)]) -> String {
        let output = Command::new(root.join("scripts/deploy.sh"))
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.bin.path().display(),
                    std::env::var("PATH").unwrap()
                ),
            )
            .envs(&self.env)
            .envs(extra.iter().copied())
            .current_dir(root)
            .output()
            .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let site = std::fs::read_to_string(self.state().join("site.log")).unwrap_or_default();
        // The suite's log-hygiene check reads these too.
        let logs = repo_path("target/test-logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("deploy-script.log"), &printed).unwrap();
        std::fs::write(logs.join("deploy-site.log"), &site).unwrap();
        assert!(
            output.status.success(),
            "deploy.sh failed:\n{printed}\n--- the app's log:\n{site}"
        );
        printed
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.app_url)
    }
}

impl Drop for Rehearsal {
    fn drop(&mut self) {
        let _ = Command::new(self.bin.path().join("az"))
            .args(["functionapp", "stop"])
            .env("FAKE_AZURE_STATE", self.azure.dir.path())
            .status();
    }
}

/// A copy of the working tree (what `git ls-files` knows, uncommitted
/// changes included) with one more migration: the next release.
fn next_release(with_migration: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    let files = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(repo_path(""))
        .output()
        .unwrap();
    for file in String::from_utf8(files.stdout).unwrap().lines() {
        let from = repo_path(file);
        if !from.is_file() {
            continue; // deleted in the working tree
        }
        let to = copy.path().join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    std::fs::write(
        copy.path()
            .join("migrations/V999__rehearsal_next_release.sql"),
        with_migration,
    )
    .unwrap();
    copy
}

/// Where PgBouncer would be (the app's `DATABASE_URL` port): a TCP relay to
/// the server that notes the local port of each of its own connections to
/// it, so that the server's view (`pg_stat_activity.client_port`) tells
/// connections that came through it from those that did not.
struct PgBouncerStandIn {
    port: u16,
    relayed_from: std::sync::Arc<std::sync::Mutex<Vec<i32>>>,
}

impl PgBouncerStandIn {
    async fn start(server_port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let relayed_from = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let noted = relayed_from.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) =
                    tokio::net::TcpStream::connect(("127.0.0.1", server_port)).await
                else {
                    continue;
                };
                let local = server.local_addr().unwrap().port();
                noted.lock().unwrap().push(i32::from(local));
                tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Self { port, relayed_from }
    }
}

// Two workers: deploy.sh runs (its smoke test included) while the test's
// thread waits for it, and the PgBouncer stand-in and the IdP must go on
// serving meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_script_deploys_and_redeploys_a_working_api() {
    let server = OwnServer::start(true);
    azure_like_postgres(&server).await;
    let vault_host = format!("{VAULT}.vault.azure.net");
    let azure = FakeAzure::start_with_names(&json!({}), &[&vault_host]);
    let state = azure.dir.path().to_owned();
    // The app runs as another user: it must reach its files and the CAs.
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bundle = state.join("ca-bundle.crt");
    std::fs::write(
        &bundle,
        [
            std::fs::read_to_string(server.ca_file()).unwrap(),
            std::fs::read_to_string(state.join("tls/ca.crt")).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let signer = signing_key("rehearsal-key");
    let idp = start_idp(vec![jwk(&signer)]).await;
    // The production parameters' server has PgBouncer: the pool goes
    // through it (appPort), the listening connection and migrations not.
    let pgbouncer = PgBouncerStandIn::start(server.port).await;
    let app_port = unused_port();
    let app_url = format!("http://127.0.0.1:{app_port}");

    std::fs::write(state.join("cli_token"), DEPLOYER_TOKEN).unwrap();
    let write = |name: &str, value: Value| {
        std::fs::write(state.join(name), value.to_string()).unwrap();
    };
    write(
        "arm-outputs.json",
        json!({
            "identity": {"id": format!("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{IDENTITY}"),
                         "name": IDENTITY, "principalId": "0f0e0d0c-0000-4000-8000-00000000beef",
                         "clientId": "11111111-2222-3333-4444-555555555555"},
            "monitoring": {"appInsightsConnectionString": "InstrumentationKey=00000000-0000-0000-0000-000000000000"},
            "storage": {"name": "stamplifierrehearsal", "deploymentContainerUrl": "https://stamplifierrehearsal.blob.core.windows.net/deployments"},
            "keyVault": {"name": VAULT, "uri": format!("https://{vault_host}/")},
            "postgres": {"fqdn": "localhost", "port": server.port, "appPort": pgbouncer.port, "databaseName": "amplifier"},
            "functionApp": {"name": "func-amplifier-production-rehearsal", "url": app_url},
        }),
    );
    write(
        "platform.json",
        json!({
            "env": {
                "FUNCTIONS_CUSTOMHANDLER_PORT": app_port.to_string(),
                "IDENTITY_ENDPOINT": format!("http://127.0.0.1:{}/msi/token", azure.identity_port),
                "IDENTITY_HEADER": "local-identity-header",
                "SSL_CERT_FILE": bundle.display().to_string(),
                // The vault's real name, on the stand-in's port.
                "AZURE_KEYVAULT_URL": format!("https://{vault_host}:{}", azure.vault_port),
            },
            "hosts": [format!("127.0.0.1 {vault_host}")],
        }),
    );
    let bin = tempfile::tempdir().unwrap();
    std::fs::write(
        bin.path().join("az"),
        format!(
            "#!/bin/sh\nexec python3 {} \"$@\"\n",
            repo_path("tests/support/fake_az.py").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        bin.path().join("az"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let env: HashMap<String, String> = [
        ("FAKE_AZURE_STATE", state.display().to_string()),
        ("RESOURCE_GROUP", "rg-amplifier-rehearsal".to_owned()),
        ("DEPLOYER_OBJECT_ID", Uuid::new_v4().to_string()),
        ("DEPLOYER_NAME", DEPLOYER.to_owned()),
        ("JWT_ISSUER", idp.base.clone()),
        ("JWT_AUDIENCE", AUDIENCE.to_owned()),
        ("PGSSLROOTCERT", bundle.display().to_string()),
        ("SSL_CERT_FILE", bundle.display().to_string()),
        ("SMOKE_INTERVAL", "0.5".to_owned()),
        ("SMOKE_ATTEMPTS", "60".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let rehearsal = Rehearsal {
        azure,
        bin,
        env,
        app_url,
    };

    // The first deployment: empty vault, empty database. As in the
    // workflow, deploy.sh hands the app's URL on as a step output.
    let step_outputs = tempfile::NamedTempFile::new().unwrap();
    let printed = rehearsal.deploy(
        &repo_path(""),
        &[("GITHUB_OUTPUT", step_outputs.path().to_str().unwrap())],
    );
    assert!(
        printed.contains("secret admin-api-key created"),
        "{printed}"
    );
    let deployments = rehearsal.read("deployments.json");
    assert_eq!(
        deployments[0]["parameters"]["keyVaultCreateMode"], "default",
        "no soft-deleted vault to recover"
    );
    let settings = rehearsal.read("app-settings.json");
    assert_eq!(settings["ENVIRONMENT"], "production");
    assert_eq!(settings["MIGRATE_ON_START"], "false");
    assert_eq!(
        settings["DATABASE_LISTEN_PORT"],
        server.port.to_string(),
        "the listening connection goes to the server, not to PgBouncer"
    );
    let admin_key = rehearsal.read("secrets.json")["admin-api-key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(admin_key.len() >= 32);
    // The timer function is in the package, its schedule among the app
    // settings (the host refuses a function whose %SETTING% is unset).
    let site = state.join("site");
    assert_eq!(
        std::fs::read(site.join("purge-expired/function.json")).unwrap(),
        std::fs::read(repo_path("functions/purge-expired/function.json")).unwrap()
    );
    assert_eq!(settings["PURGE_SCHEDULE"], "0 0 3 * * *");
    // OpenSSL's roots: a file of the package, where Azure mounts it.
    let roots = settings["SSL_CERT_FILE"].as_str().unwrap();
    let in_package = roots
        .strip_prefix("/home/site/wwwroot/")
        .unwrap_or_else(|| panic!("SSL_CERT_FILE {roots} is not in the package"));
    assert!(
        site.join(in_package).is_file(),
        "{roots} not in the package"
    );
    for name in [
        "MAX_SESSION_AGE_DAYS",
        "TRASH_RETENTION_DAYS",
        "AUDIT_RETENTION_DAYS",
    ] {
        assert!(settings[name].is_string(), "{name} not among {settings}");
    }
    if running_as_root() {
        let pid = std::fs::read_to_string(state.join("site.pid")).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
        assert!(
            status.contains("Uid:\t65534"),
            "the app runs unprivileged: {status}"
        );
    }

    // The workflow's next step: the smoke test, at that URL.
    let outputs = std::fs::read_to_string(step_outputs.path()).unwrap();
    let url = outputs.lines().find_map(|line| line.strip_prefix("url="));
    assert_eq!(url, Some(rehearsal.app_url.as_str()), "{outputs}");
    let smoke = Command::new(repo_path("scripts/smoke.sh"))
        .arg(&rehearsal.app_url)
        .output()
        .unwrap();
    assert!(
        smoke.status.success(),
        "scripts/smoke.sh failed:\n{}{}",
        String::from_utf8_lossy(&smoke.stdout),
        String::from_utf8_lossy(&smoke.stderr)
    );

    // A client's first steps. (No idle connections kept: the redeploy
    // replaces the process behind the same address.)
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let health = http.get(rehearsal.url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // The timer's invocation, as the host POSTs it on the handler's port:
    // the deployed app purges (its lock on the direct connection, its
    // batches through PgBouncer) and answers in the host's protocol.
    let timer = expect_status(
        http.post(rehearsal.url("/purge-expired"))
            .json(
                &json!({"Data": {"timer": {"Schedule": {"AdjustForDST": true},
                                              "ScheduleStatus": null, "IsPastDue": false}},
                          "Metadata": {"sys": {"MethodName": "purge-expired"}}}),
            )
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert!(
        timer["Logs"][0].as_str().unwrap().starts_with("purged: "),
        "{timer}"
    );
    let key = register_application(&http, &rehearsal.url(""), &admin_key, "web-app").await;
    let token = |user: Uuid| {
        sign(
            &signer,
            &json!({"oid": user.to_string(), "iss": idp.base, "aud": AUDIENCE,
                    "exp": get_current_timestamp() + 600}),
        )
    };
    let (owner, guest) = (Uuid::new_v4(), Uuid::new_v4());
    let config = expect_status(
        http.post(rehearsal.url("/api/configs"))
            .header("X-API-Key", &key)
            .json(&json!({"name": "assistant", "yaml_content": "model: gpt\n"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let session = expect_status(
        http.post(rehearsal.url("/api/sessions"))
            .header("X-API-Key", &key)
            .bearer_auth(token(owner))
            .json(&json!({"config_id": config["config_id"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let session_id = session["session_id"].as_str().unwrap().to_owned();
    expect_status(
        http.post(rehearsal.url(&format!("/api/sessions/{session_id}/participants")))
            .header("X-API-Key", &key)
            .bearer_auth(token(owner))
            .json(&json!({"user_id": guest, "role": "editor"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let listed = |user: Uuid| {
        let request = http
            .get(rehearsal.url("/api/users/me/sessions"))
            .header("X-API-Key", &key)
            .bearer_auth(token(user));
        async move { expect_status(request.send().await.unwrap(), StatusCode::OK).await }
    };
    for user in [owner, guest] {
        assert_eq!(listed(user).await["sessions"][0]["session_id"], session_id);
    }
    live_session(
        &http,
        &rehearsal,
        &key,
        &token(guest),
        &token(owner),
        &session_id,
    )
    .await;
    // The pool went through PgBouncer's port, the listening connection
    // (logged in with the identity's token, over TLS) straight to the server.
    let activity = pg_connect(&server.url("127.0.0.1"))
        .await
        .query(
            "SELECT client_port, query LIKE 'LISTEN%' FROM pg_stat_activity WHERE usename = $1",
            &[&IDENTITY],
        )
        .await
        .unwrap();
    let relayed = pgbouncer.relayed_from.lock().unwrap().clone();
    let (listening, pooled): (Vec<_>, Vec<_>) =
        activity.iter().partition(|row| row.get::<_, bool>(1));
    assert_eq!(listening.len(), 1, "one listening connection");
    assert!(!relayed.contains(&listening[0].get::<_, i32>(0)));
    assert!(
        pooled
            .iter()
            .all(|row| relayed.contains(&row.get::<_, i32>(0))),
        "pooled connections go through PgBouncer: {relayed:?}"
    );

    // The next release, with a migration, deployed over the first.
    let next = next_release(
        "CREATE TABLE rehearsal_next_release (id INTEGER PRIMARY KEY);\n\
         INSERT INTO rehearsal_next_release VALUES (1);\n",
    );
    let target = repo_path("target");
    rehearsal.deploy(
        next.path(),
        &[("CARGO_TARGET_DIR", target.to_str().unwrap())],
    );
    assert_eq!(
        rehearsal.read("secrets.json")["admin-api-key"],
        admin_key.as_str(),
        "an existing secret is never replaced"
    );
    assert_eq!(
        listed(owner).await["sessions"][0]["session_id"],
        session_id,
        "the data survived"
    );
    // The new table was made by the deployer and is usable by the app's
    // role (default privileges), which logs in as the app does.
    let as_app = pg_connect(&format!(
        "postgres://{IDENTITY}:{APP_IDENTITY_TOKEN}@127.0.0.1:{}/amplifier",
        server.port
    ))
    .await;
    let id: i32 = as_app
        .query_one("SELECT id FROM rehearsal_next_release", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 1);
    assert!(
        as_app
            .query("SELECT * FROM refinery_schema_history", &[])
            .await
            .is_err(),
        "the app cannot touch the migration history"
    );
    assert!(
        as_app.batch_execute("DROP TABLE sessions").await.is_err(),
        "the app cannot change the schema"
    );
}

/// A participant follows the session live (a stream with headers) while
/// the owner appends, as Azure would serve it: the instance listens over
/// its own connection.
async fn live_session(
    http: &reqwest::Client,
    rehearsal: &Rehearsal,
    key: &str,
    follower: &str,
    writer: &str,
    session_id: &str,
) {
    let mut stream = http
        .get(rehearsal.url(&format!("/api/sessions/{session_id}/events")))
        .header("X-API-Key", key)
        .bearer_auth(follower)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let mut received = String::new();
    let mut read_until = async |needle: &str| {
        while !received.contains(needle) {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), stream.chunk())
                .await
                .expect("the stream went quiet")
                .unwrap()
                .expect("the stream ended");
            received.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until("event: snapshot").await;
    expect_status(
        http.post(rehearsal.url(&format!("/api/sessions/{session_id}/messages")))
            .header("X-API-Key", key)
            .bearer_auth(writer)
            .json(&json!({"messages": [{"role": "user", "text": "live"}]}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    read_until("id: 1\nevent: message").await;
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}
