//! The Azure stand-ins of tests/support/fake_azure.py (managed-identity
//! endpoint, HTTPS Key Vault, HTTPS Application Insights ingestion),
//! started for one test.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::children::KillOnDrop;
use crate::helpers::*;

pub struct FakeAzure {
    child: KillOnDrop,
    pub dir: tempfile::TempDir,
    pub identity_port: u16,
    pub vault_port: u16,
    pub ingestion_port: u16,
}

pub const TOKEN: &str = "local-managed-identity-token";
/// The identity's token for Azure Monitor (Application Insights
/// ingestion accepts no other).
pub const MONITOR_TOKEN: &str = "local-managed-identity-token-for-azure-monitor";
/// The instrumentation key the ingestion stand-in expects.
pub const IKEY: &str = "0a1b2c3d-0000-4000-8000-00000000beef";

impl FakeAzure {
    pub fn start(secrets: &Value) -> Self {
        Self::start_with_names(secrets, &[])
    }

    /// Like [`FakeAzure::start`], with a vault certificate valid for
    /// `dns_names` too (e.g. `<vault>.vault.azure.net`).
    pub fn start_with_names(secrets: &Value, dns_names: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs = Command::new(repo_path("scripts/make-test-certs.sh"))
            .arg(dir.path().join("tls"))
            .args(dns_names)
            .status()
            .unwrap();
        assert!(certs.success());
        std::fs::write(dir.path().join("token"), TOKEN).unwrap();
        std::fs::write(dir.path().join("monitor_token"), MONITOR_TOKEN).unwrap();
        std::fs::write(dir.path().join("ikey"), IKEY).unwrap();
        let fake = |dir: &tempfile::TempDir| {
            KillOnDrop::spawn(
                Command::new("python3")
                    .arg(repo_path("tests/support/fake_azure.py"))
                    .arg(dir.path())
                    .stdout(Stdio::null()),
            )
        };
        let mut azure = Self {
            child: fake(&dir),
            dir,
            identity_port: 0,
            vault_port: 0,
            ingestion_port: 0,
        };
        azure.set_secrets(secrets);
        let ports = azure.dir.path().join("ports.json");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ports.exists() {
            assert!(Instant::now() < deadline, "fake Azure did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let ports: Value = serde_json::from_str(&std::fs::read_to_string(ports).unwrap()).unwrap();
        azure.identity_port = ports["identity"].as_u64().unwrap() as u16;
        azure.vault_port = ports["vault"].as_u64().unwrap() as u16;
        azure.ingestion_port = ports["ingestion"].as_u64().unwrap() as u16;
        azure
    }

    pub fn set_secrets(&self, secrets: &Value) {
        let tmp = self.dir.path().join("secrets.json.tmp");
        std::fs::write(&tmp, secrets.to_string()).unwrap();
        std::fs::rename(tmp, self.dir.path().join("secrets.json")).unwrap();
    }

    /// What the stand-ins were asked, in order.
    pub fn requests(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap_or_default()
    }

    /// Settings as App Service / Functions would give them, plus trust in
    /// the local CA and, for a vault not under vault.azure.net, the
    /// development-only switch for the challenge-domain check.
    pub fn vars(&self, database_url: &str) -> HashMap<String, String> {
        let mut vars = base_vars(database_url);
        vars.extend(
            [
                (
                    "IDENTITY_ENDPOINT",
                    format!("http://127.0.0.1:{}/msi/token", self.identity_port),
                ),
                ("IDENTITY_HEADER", "local-identity-header".to_owned()),
                (
                    "AZURE_CLIENT_ID",
                    "11111111-2222-3333-4444-555555555555".to_owned(),
                ),
                (
                    "AZURE_KEYVAULT_URL",
                    format!("https://localhost:{}", self.vault_port),
                ),
                (
                    "AZURE_KEYVAULT_VERIFY_CHALLENGE_RESOURCE",
                    "false".to_owned(),
                ),
                (
                    "SSL_CERT_FILE",
                    self.dir.path().join("tls/ca.crt").display().to_string(),
                ),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        vars
    }
}

impl FakeAzure {
    /// Takes both stand-ins down: connections are refused (an outage).
    pub fn stop(&mut self) {
        self.child.kill();
    }

    /// Freezes both stand-ins (SIGSTOP): connections are accepted by the
    /// kernel and never answered, the worst kind of outage.
    pub fn hang(&self) {
        self.child.signal(libc::SIGSTOP);
    }
}
