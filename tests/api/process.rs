//! The real binary as the Functions host runs it: sub-commands, start-up
//! checks, TLS to PostgreSQL, concurrent migrations and log hygiene.

use std::collections::HashMap;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::children::{DiesWithTest, KillOnDrop};
use crate::helpers::*;

const BIN: &str = env!("CARGO_BIN_EXE_amplifier-sessions");

/// The binary with only `vars` set, run from an empty directory so no
/// `.env` file of the repository is read.
pub(crate) fn command(vars: &HashMap<String, String>, cwd: &std::path::Path) -> Command {
    command_for(std::path::Path::new(BIN), vars, cwd)
}

fn command_for(
    binary: &std::path::Path,
    vars: &HashMap<String, String>,
    cwd: &std::path::Path,
) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .dies_with_test();
    cmd
}

fn run(vars: &HashMap<String, String>, args: &[&str]) -> Output {
    let cwd = tempfile::tempdir().unwrap();
    command(vars, cwd.path()).args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub(crate) struct Served {
    child: KillOnDrop,
    base: String,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    _cwd: tempfile::TempDir,
}

impl Served {
    /// Starts `serve` on port 0 and reads the port it got from its
    /// "listening" log line (no race with other tests for a free port).
    pub(crate) async fn start(vars: HashMap<String, String>) -> Self {
        Self::start_binary(std::path::Path::new(BIN), vars).await
    }

    /// Like [`Served::start`], for another copy of the binary.
    pub(crate) async fn start_binary(
        binary: &std::path::Path,
        mut vars: HashMap<String, String>,
    ) -> Self {
        vars.insert("FUNCTIONS_CUSTOMHANDLER_PORT".into(), "0".into());
        vars.entry("LOG_LEVEL".into())
            .or_insert_with(|| "info".into());
        let cwd = tempfile::tempdir().unwrap();
        let mut child = KillOnDrop::spawn(
            command_for(binary, &vars, cwd.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            collect(child.0.stdout.take().unwrap(), output.clone()),
            collect(child.0.stderr.take().unwrap(), output.clone()),
        ];
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            let printed = output.lock().unwrap().clone();
            // Text (`listening addr=127.0.0.1:N`) or JSON (`"addr":"127.0.0.1:N"`).
            let after = printed
                .split("listening")
                .nth(1)
                .and_then(|rest| rest.split("127.0.0.1:").nth(1));
            if let Some(rest) = after {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                break digits;
            }
            assert!(
                Instant::now() < deadline,
                "binary never listened: {printed}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            output,
            readers,
            _cwd: cwd,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything it printed so far.
    pub(crate) fn printed(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Stops the process (SIGTERM: a graceful shutdown) and returns
    /// everything it printed. (Dropped without this, e.g. by a failed
    /// assertion, the process is killed.)
    pub(crate) fn stop(mut self) -> String {
        self.child.signal(libc::SIGTERM);
        self.child.0.wait().unwrap();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        self.output.lock().unwrap().clone()
    }
}

/// Appends everything `stream` yields to `into`, on a thread of its own.
fn collect(
    mut stream: impl std::io::Read + Send + 'static,
    into: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buffer) {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    })
}

#[test]
fn unknown_environment_refuses_to_start() {
    let output = run(&[("ENVIRONMENT".into(), "prod".into())].into(), &["serve"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("ENVIRONMENT"), "{}", text(&output));
}

#[test]
fn production_with_weak_secrets_refuses_naming_the_setting_not_the_value() {
    let vars: HashMap<String, String> = [
        ("ENVIRONMENT", "production"),
        (
            "DATABASE_URL",
            "postgres://u:p@db.invalid/app?sslmode=require",
        ),
        ("SECRET_KEY", "tooshort-s3cr3t"),
        ("ADMIN_API_KEY", "0123456789abcdef0123456789abcdef-admin"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let output = run(&vars, &["serve"]);
    assert!(!output.status.success());
    let printed = text(&output);
    assert!(printed.contains("SECRET_KEY"), "{printed}");
    assert!(!printed.contains("tooshort-s3cr3t"), "{printed}");
}

#[tokio::test]
async fn dev_token_prints_a_token_the_api_accepts_and_is_refused_in_production() {
    let app = spawn_app().await;
    let key = app.create_application("token-app").await;
    let user = Uuid::new_v4();
    let vars = base_vars(&app.database_url);
    let output = run(&vars, &["dev-token", "--user", &user.to_string()]);
    assert!(output.status.success(), "{}", text(&output));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    let body = expect_status(
        app.get("/api/users/me/sessions")
            .header("X-API-Key", &key)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(body["user_id"], user.to_string());

    let mut production = vars.clone();
    production.insert("ENVIRONMENT".into(), "production".into());
    production.insert(
        "SECRET_KEY".into(),
        "0123456789abcdef0123456789abcdef-secret".into(),
    );
    production.insert(
        "ADMIN_API_KEY".into(),
        "0123456789abcdef0123456789abcdef-admin".into(),
    );
    let output = run(&production, &["dev-token", "--user", &user.to_string()]);
    assert!(!output.status.success());
    assert!(text(&output).contains("refused"), "{}", text(&output));
}

#[tokio::test]
async fn eight_processes_migrating_one_empty_database_all_succeed() {
    let database_url = fresh_database(&admin_url()).await;
    let vars = base_vars(&database_url);
    let cwd = tempfile::tempdir().unwrap();
    let children: Vec<Child> = (0..8)
        .map(|_| {
            command(&vars, cwd.path())
                .arg("migrate")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // (Each dies with this test's thread should the test fail here.)
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
    let migrations = std::fs::read_dir(repo_path("migrations")).unwrap().count() as i64;
    let db = pg_connect(&database_url).await;
    let applied: i64 = db
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(applied, migrations);
    let tables: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'
             AND table_name IN ('configs', 'applications', 'users', 'sessions',
                                'session_participants', 'configuration')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 6);
}

/// The basic calls over a verified TLS connection to a server with `ssl=on`.
#[tokio::test]
async fn basic_calls_over_tls_with_a_trusted_private_ca() {
    let server = OwnServer::start(true);
    let plain = fresh_database(&server.url("127.0.0.1")).await;
    let db_name = plain.rsplit('/').next().unwrap().to_owned();
    let tls_url = format!(
        "{}?sslmode=require",
        with_database(&server.url("localhost"), &db_name)
    );

    let mut vars = base_vars(&tls_url);
    vars.insert(
        "SSL_CERT_FILE".into(),
        server.ca_file().to_str().unwrap().into(),
    );
    let served = Served::start(vars.clone()).await;
    let http = reqwest::Client::new();
    let health = http.get(served.url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let key = register_application(&http, &served.url(""), ADMIN_KEY, "tls-app").await;
    let config = expect_status(
        http.post(served.url("/api/configs"))
            .header("X-API-Key", &key)
            .json(&json!({"name": "c", "yaml_content": "a: 1"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let user = Uuid::new_v4();
    let settings = amplifier_sessions::settings::Settings::from_vars(&vars).unwrap();
    let token = amplifier_sessions::auth::token::issue_dev_token(&settings.auth, user, 600);
    let session = expect_status(
        http.post(served.url("/api/sessions"))
            .header("X-API-Key", &key)
            .bearer_auth(&token)
            .json(&json!({"config_id": config["config_id"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let path = format!("/api/sessions/{}", session["session_id"].as_str().unwrap());
    expect_status(
        http.get(served.url(&path))
            .header("X-API-Key", &key)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;

    // The service's connections really are encrypted.
    let admin = pg_connect(&server.url("127.0.0.1")).await;
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE ssl AND application_name = 'amplifier-sessions'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1);
    served.stop();

    // Without trusting the CA, `require` refuses the server's certificate.
    vars.remove("SSL_CERT_FILE");
    let untrusted = Served::start(vars).await;
    let health = http.get(untrusted.url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    untrusted.stop();
}

/// Secrets never reach the logs, even at debug level and on failures.
#[tokio::test]
async fn no_log_line_contains_a_password_key_or_token() {
    let password = format!("pw-{}", Uuid::new_v4().simple());
    let role = OwnRole::create("hygiene", &password).await;
    let database_url = role.url(Some(&password));

    let admin_key = format!("admin-{}", Uuid::new_v4().simple());
    let secret_key = format!("secret-{}", Uuid::new_v4().simple());
    let bogus_key = format!("amp_bogus{}", Uuid::new_v4().simple());
    let mut vars = base_vars(&database_url);
    vars.insert("ADMIN_API_KEY".into(), admin_key.clone());
    vars.insert("SECRET_KEY".into(), secret_key.clone());
    vars.insert("LOG_LEVEL".into(), "debug".into());

    let served = Served::start(vars.clone()).await;
    let http = reqwest::Client::new();
    let app_key = register_application(&http, &served.url(""), &admin_key, "log-app").await;
    let settings = amplifier_sessions::settings::Settings::from_vars(&vars).unwrap();
    let token =
        amplifier_sessions::auth::token::issue_dev_token(&settings.auth, Uuid::new_v4(), 600);
    let config = expect_status(
        http.post(served.url("/api/configs"))
            .header("X-API-Key", &app_key)
            .json(&json!({"name": "c", "yaml_content": "a: 1"}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    let response = http
        .post(served.url("/api/sessions"))
        .header("X-API-Key", &app_key)
        .bearer_auth(&token)
        .json(&json!({"config_id": config["config_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // Failures: an unknown key, a tampered token.
    let response = http
        .get(served.url("/api/users/me/sessions"))
        .header("X-API-Key", &bogus_key)
        .bearer_auth(format!("{token}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let mut printed = served.stop();

    // A wrong database password is logged as a failure, never echoed.
    let wrong_password = format!("wrong-{}", Uuid::new_v4().simple());
    vars.insert("DATABASE_URL".into(), role.url(Some(&wrong_password)));
    let failing = Served::start(vars).await;
    let health = http.get(failing.url("/api/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    printed.push_str(&failing.stop());

    assert!(
        printed.contains("listening"),
        "logs were captured: {printed}"
    );
    assert!(
        printed.contains("password authentication failed"),
        "{printed}"
    );
    for secret in [
        &password,
        &wrong_password,
        &admin_key,
        &secret_key,
        &bogus_key,
        &app_key,
        &token,
    ] {
        assert!(
            !printed.contains(secret.as_str()),
            "a secret leaked into the logs:\n{printed}"
        );
    }
}

/// One structured line per request, for Application Insights to query;
/// the route template, not the path (which holds ids).
#[tokio::test]
async fn every_request_is_one_json_log_line_with_the_invocation_id() {
    let app = spawn_app().await;
    let f = app.fixture().await;
    let mut vars = base_vars(&app.database_url);
    vars.insert("LOG_FORMAT".into(), "json".into());
    let served = Served::start(vars).await;
    let response = reqwest::Client::new()
        .get(served.url(&format!("/api/sessions/{}", f.session_id)))
        .header("X-API-Key", &f.key)
        .bearer_auth(app.token(f.owner))
        .header(
            "X-Azure-Functions-InvocationId",
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    let printed = served.stop();
    let lines: Vec<serde_json::Value> = printed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<_> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert_eq!(requests.len(), 1, "{printed}");
    let line = requests[0];
    assert_eq!(line["method"], "GET");
    assert_eq!(line["route"], "/api/sessions/{session_id}");
    assert_eq!(line["status"], 200);
    assert_eq!(
        line["invocation_id"],
        "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    );
    assert!(line["latency_ms"].as_f64().unwrap() > 0.0);
    // Written once the body was sent: its size and that it went whole.
    assert_eq!(line["outcome"], "complete");
    assert_eq!(line["bytes"], body.len());
    assert!(!printed.contains(&f.session_id), "no ids from the path");
}

/// What a caller writes into a log line is bounded: an invocation id (or a
/// method) forged to 8,000 bytes is cut to its first 128 and marked, so
/// that no request can fill the logs with text of its choosing.
#[tokio::test]
async fn forged_long_header_values_are_logged_cut_and_marked() {
    let mut vars = base_vars(&closed_port_url());
    vars.insert("LOG_FORMAT".into(), "json".into());
    let served = Served::start(vars).await;
    let forged_id = format!("forged-{}", "x".repeat(8_000));
    let forged_method = format!("LONG{}", "M".repeat(8_000));
    let http = reqwest::Client::new();
    for method in ["GET", &forged_method] {
        let response = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                served.url("/api/openapi.json"),
            )
            .header("X-Azure-Functions-InvocationId", &forged_id)
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let printed = served.stop();
    assert!(!printed.contains(&forged_id[..1_000]), "{printed}");
    assert!(!printed.contains(&forged_method[..1_000]), "{printed}");
    let requests: Vec<serde_json::Value> = printed
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{printed}");
    for line in &requests {
        let id = line["invocation_id"].as_str().unwrap();
        assert!(id.starts_with(&forged_id[..128]), "{id}");
        assert!(id.ends_with("(truncated, 8007 bytes)"), "{id}");
    }
    assert_eq!(requests[0]["method"], "GET");
    let method = requests[1]["method"].as_str().unwrap();
    assert!(
        method.starts_with(&forged_method[..128]) && method.ends_with("(truncated, 8004 bytes)"),
        "{method}"
    );
}
