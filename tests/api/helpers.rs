//! `spawn_app()` and friends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use amplifier_sessions::auth::token::issue_dev_token;
use amplifier_sessions::settings::Settings;
use amplifier_sessions::startup::Application;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::children::DiesWithTest;

pub const ADMIN_KEY: &str = "test-admin-key-not-secure-but-32-bytes-long";
pub const SECRET_KEY: &str = "test-secret-key-not-secure-but-32-bytes-long";

/// The server `scripts/test.sh` started: a superuser URL.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL is not set: run the suite with scripts/test.sh")
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("URL with a database");
    format!("{base}/{db}")
}

pub async fn pg_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(connection);
    client
}

/// Creates an empty database and returns its URL.
pub async fn fresh_database(server_url: &str) -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    pg_connect(server_url)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    with_database(server_url, &name)
}

/// A login role with a password and a database it owns, on the suite's
/// server, for tests about credentials.
pub struct OwnRole {
    pub name: String,
    host: String,
}

impl OwnRole {
    pub async fn create(prefix: &str, password: &str) -> Self {
        let name = format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..8]);
        let admin = pg_connect(&admin_url()).await;
        // Separate calls: CREATE DATABASE cannot run inside a multi-statement batch.
        for sql in [
            format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        let server = admin_url();
        let host = server
            .split_once('@')
            .unwrap()
            .1
            .rsplit_once('/')
            .unwrap()
            .0
            .to_owned();
        Self { name, host }
    }

    /// Its database's URL with `password` (or none).
    pub fn url(&self, password: Option<&str>) -> String {
        let login = match password {
            Some(password) => format!("{}:{password}", self.name),
            None => self.name.clone(),
        };
        format!("postgres://{login}@{}/{}", self.host, self.name)
    }

    /// Changes the password and ends every session of the role, waiting
    /// until they are gone.
    pub async fn rotate_password(&self, password: &str) {
        pg_connect(&admin_url())
            .await
            .batch_execute(&format!("ALTER ROLE {} PASSWORD '{password}'", self.name))
            .await
            .unwrap();
        self.end_sessions().await;
    }

    /// Ends every session of the role (the next requests must log in
    /// again), waiting until they are gone.
    pub async fn end_sessions(&self) {
        pg_connect(&admin_url())
            .await
            .execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = $1",
                &[&self.name],
            )
            .await
            .unwrap();
    }
}

pub fn base_vars(database_url: &str) -> HashMap<String, String> {
    [
        ("ENVIRONMENT", "test"),
        ("DATABASE_URL", database_url),
        ("SECRET_KEY", SECRET_KEY),
        ("ADMIN_API_KEY", ADMIN_KEY),
        ("AUTH_REQUIRED", "true"),
        ("FUNCTIONS_CUSTOMHANDLER_PORT", "0"),
        ("DATABASE_POOL_TIMEOUT_MS", "3000"),
        ("DATABASE_CONNECT_TIMEOUT_MS", "2000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

pub struct TestApp {
    pub address: String,
    pub database_url: String,
    pub http: reqwest::Client,
    pub settings: Settings,
}

/// The app on a random port over a fresh database.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Like [`spawn_app`] with settings overridden. One health call builds the
/// pool (and so the schema) before the test starts.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    let database_url = fresh_database(&admin_url()).await;
    let app = spawn_app_on(&database_url, overrides).await;
    let health = app.get("/api/health").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "test database not ready");
    app
}

/// Service logs of the whole suite go to `target/test-logs/`, at debug
/// level, so that `scripts/test.sh` can check no secret ever reaches them.
fn init_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = repo_path("target/test-logs");
        std::fs::create_dir_all(&dir).unwrap();
        let file =
            std::fs::File::create(dir.join(format!("api-{}.log", std::process::id()))).unwrap();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(amplifier_sessions::telemetry::filter("debug"))
            .with_writer(std::sync::Mutex::new(file))
            .with_ansi(false)
            .try_init();
    });
}

/// The app on a random port over an existing database URL.
pub async fn spawn_app_on(database_url: &str, overrides: &[(&str, &str)]) -> TestApp {
    init_logs();
    let mut vars = base_vars(database_url);
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let settings = Settings::from_vars(&vars).expect("test settings");
    let app = Application::bind(settings.clone()).await.expect("bind");
    let address = format!("http://{}", app.local_addr().unwrap());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        database_url: database_url.to_owned(),
        http: reqwest::Client::new(),
        settings,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
    }

    pub async fn db(&self) -> tokio_postgres::Client {
        pg_connect(&self.database_url).await
    }

    /// The single value of a one-row, one-column query on the app's database.
    pub async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> T {
        self.db().await.query_one(sql, params).await.unwrap().get(0)
    }

    /// Rows in `table` (optionally `WHERE user_id = user`).
    pub async fn count_rows(&self, table: &str, user: Option<Uuid>) -> i64 {
        match user {
            None => {
                self.scalar(&format!("SELECT count(*) FROM {table}"), &[])
                    .await
            }
            Some(user) => {
                self.scalar(
                    &format!("SELECT count(*) FROM {table} WHERE user_id = $1"),
                    &[&user],
                )
                .await
            }
        }
    }

    pub fn token(&self, user: Uuid) -> String {
        issue_dev_token(&self.settings.auth, user, 600)
    }

    /// Registers an application through the API; returns its key.
    pub async fn create_application(&self, app_id: &str) -> String {
        register_application(&self.http, &self.address, ADMIN_KEY, app_id).await
    }

    /// A config private to the application of `key`.
    pub async fn create_config(&self, key: &str) -> Uuid {
        self.create_config_shared(key, false).await
    }

    /// A config, which other applications may use if `shared`.
    pub async fn create_config_shared(&self, key: &str, shared: bool) -> Uuid {
        let response = self
            .post("/api/configs")
            .header("X-API-Key", key)
            .json(&json!({"name": "cfg", "yaml_content": "model: test\n", "shared": shared}))
            .send()
            .await
            .unwrap();
        let body = expect_status(response, StatusCode::CREATED).await;
        assert_eq!(body["shared"], shared);
        body["config_id"].as_str().unwrap().parse().unwrap()
    }

    /// A user caller: an application key plus a token for `user`.
    pub fn as_user(&self, builder: RequestBuilder, key: &str, user: Uuid) -> RequestBuilder {
        builder
            .header("X-API-Key", key)
            .bearer_auth(self.token(user))
    }

    pub async fn create_session(&self, key: &str, user: Uuid, config_id: Uuid) -> Value {
        let response = self
            .as_user(self.post("/api/sessions"), key, user)
            .json(&json!({"config_id": config_id}))
            .send()
            .await
            .unwrap();
        expect_status(response, StatusCode::CREATED).await
    }

    pub async fn add_participant(
        &self,
        key: &str,
        caller: Uuid,
        session: &str,
        user: Uuid,
        role: &str,
    ) -> Response {
        self.as_user(
            self.post(&format!("/api/sessions/{session}/participants")),
            key,
            caller,
        )
        .json(&json!({"user_id": user, "role": role}))
        .send()
        .await
        .unwrap()
    }

    /// With `AUTH_REQUIRED=false`: a config and a session made without
    /// credentials (by the development application and user).
    pub async fn keyless_session(&self) -> (Value, Value) {
        let config = expect_status(
            self.post("/api/configs")
                .json(&json!({"name": "c", "yaml_content": "a: 1"}))
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        let session = expect_status(
            self.post("/api/sessions")
                .json(&json!({"config_id": config["config_id"]}))
                .send()
                .await
                .unwrap(),
            StatusCode::CREATED,
        )
        .await;
        (config, session)
    }

    /// Locks the session's row in a transaction of the test's own, until
    /// the returned client rolls back: a get-session of it then blocks in
    /// PostgreSQL (it records the access), holding its connection.
    pub async fn hold_the_session_row(&self, session_id: &str) -> tokio_postgres::Client {
        let blocker = self.db().await;
        blocker.batch_execute("BEGIN").await.unwrap();
        blocker
            .execute(
                "SELECT 1 FROM sessions WHERE session_id = $1::text::uuid FOR UPDATE",
                &[&session_id],
            )
            .await
            .unwrap();
        blocker
    }

    /// An application, a config and a session owned by a new user.
    pub async fn fixture(&self) -> Fixture {
        let key = self
            .create_application(&format!(
                "app-{}",
                &Uuid::new_v4().simple().to_string()[..8]
            ))
            .await;
        let config_id = self.create_config(&key).await;
        let owner = Uuid::new_v4();
        let session = self.create_session(&key, owner, config_id).await;
        Fixture {
            key,
            owner,
            session_id: session["session_id"].as_str().unwrap().to_owned(),
        }
    }
}

pub struct Fixture {
    pub key: String,
    pub owner: Uuid,
    pub session_id: String,
}

/// Polls `health_url` until it answers 200 (a refused connection or a 503
/// is retried), failing with `why` after 60 s: a bound for a hang, not a
/// measure of speed.
pub async fn wait_until_healthy(health_url: &str, why: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = reqwest::get(health_url).await.map(|r| r.status());
        if status.as_ref().is_ok_and(|s| *s == StatusCode::OK) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{why} (last answer: {status:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Polls `condition` every 20 ms until it holds, failing with `what` after
/// 60 s. For "the request is now blocked" and the like: waits for the
/// state itself, never for a guessed duration.
pub async fn wait_for<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition().await {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether a request sits unanswered at a local server on one of `ports`
/// (bytes received that it has not read: a frozen process). Read from
/// the kernel's socket table.
pub fn unanswered_requests_at(ports: &[u16]) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields[1]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                let received = fields[4]
                    .split(':')
                    .nth(1)
                    .and_then(|q| u64::from_str_radix(q, 16).ok())
                    .unwrap_or(0);
                local_port.is_some_and(|p| ports.contains(&p)) && received > 0
            })
    })
}

/// How many backends of database `url` wait for a lock (e.g. a request
/// blocked behind a test's open transaction).
pub async fn backends_waiting_for_a_lock(url: &str) -> i64 {
    let database = url.rsplit('/').next().unwrap().to_owned();
    pg_connect(&admin_url())
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = $1 AND wait_event_type = 'Lock'",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

/// Asserts the status and returns the JSON body.
/// Registers `app_id` with the service at `base` (e.g.
/// `http://127.0.0.1:7071`) as the admin; returns the application's key.
pub async fn register_application(
    http: &reqwest::Client,
    base: &str,
    admin_key: &str,
    app_id: &str,
) -> String {
    let response = http
        .post(format!("{base}/api/applications"))
        .header("X-API-Key", admin_key)
        .json(&json!({"app_id": app_id, "app_name": format!("{app_id} app")}))
        .send()
        .await
        .unwrap();
    let body = expect_status(response, StatusCode::CREATED).await;
    body["api_key"].as_str().unwrap().to_owned()
}

pub async fn expect_status(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// Asserts an RFC 9457 problem with this status; returns its `detail`.
pub async fn expect_problem(response: Response, status: StatusCode) -> String {
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = expect_status(response, status).await;
    assert_eq!(content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string());
    body["detail"].as_str().expect("detail").to_owned()
}

pub fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A PostgreSQL server of its own, for tests that stop it or need TLS.
pub struct OwnServer {
    pub dir: tempfile::TempDir,
    pub port: u16,
    ssl: bool,
}

/// A TCP port for a server a test starts, never handed out twice by this
/// process, from below the ephemeral range (32768 and up on Linux) so that
/// no client connection or `bind(0)` takes it meanwhile; one in use by
/// something else is skipped.
pub fn unused_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Each test process starts at its own place, so that two suites
    // running at once (two checkouts) rarely meet.
    let start = (std::process::id() % 100) as u16 * 100;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(offset < 10_000, "no free port");
        let port = 20_000 + (start + offset) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl OwnServer {
    pub fn start(ssl: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = Self {
            dir,
            port: unused_port(),
            ssl,
        };
        server.resume();
        server
    }

    fn script(&self, args: &[&str]) {
        let status = Command::new(repo_path("scripts/local-pg.sh"))
            .args(args)
            .status()
            .expect("run scripts/local-pg.sh");
        assert!(status.success(), "local-pg.sh {args:?} failed");
    }

    pub fn resume(&self) {
        let dir = self.dir.path().to_str().unwrap();
        let port = self.port.to_string();
        let mut args = vec!["start", dir, &port, "--fast"];
        if self.ssl {
            args.push("--ssl");
        }
        self.script(&args);
    }

    pub fn stop(&self) {
        self.script(&["stop", self.dir.path().to_str().unwrap()]);
    }

    pub fn url(&self, host: &str) -> String {
        format!("postgres://postgres:postgres@{host}:{}/postgres", self.port)
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let _ = Command::new(repo_path("scripts/local-pg.sh"))
            .args(["stop", self.dir.path().to_str().unwrap()])
            .status();
    }
}

fn chromium() -> String {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
        .expect("a headless browser is needed: apt-get install chromium (scripts/test.sh does this as root)")
        .to_owned()
}

/// The DOM of `url` after headless Chromium ran its scripts (up to 15 s of
/// virtual time), with a fresh profile and no background traffic.
pub async fn dump_dom(url: &str) -> String {
    let url = url.to_owned();
    tokio::task::spawn_blocking(move || {
        let profile = tempfile::tempdir().unwrap();
        let output = Command::new(chromium())
            .dies_with_test()
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &format!("--user-data-dir={}", profile.path().display()),
                "--virtual-time-budget=15000",
                "--dump-dom",
                &url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    })
    .await
    .unwrap()
}

/// A database URL nothing listens at: a port of [`unused_port`], which no
/// other test gets.
pub fn closed_port_url() -> String {
    format!(
        "postgres://nobody:nothing@127.0.0.1:{}/nowhere",
        unused_port()
    )
}
