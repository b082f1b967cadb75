//! The deployment package: exactly the function app, and it runs.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use reqwest::StatusCode;

use crate::helpers::*;
use crate::process::Served;

fn files_under(root: &std::path::Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.insert(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    files
}

#[tokio::test]
async fn the_package_holds_exactly_the_function_app_and_serves_health() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("package.zip");
    let packaged = Command::new(repo_path("scripts/package.sh"))
        .arg(&zip)
        .args(["--binary", env!("CARGO_BIN_EXE_amplifier-sessions")])
        .status()
        .unwrap();
    assert!(packaged.success());
    let unpacked = dir.path().join("app");
    let unzip = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(&zip)
        .arg(&unpacked)
        .status()
        .unwrap();
    assert!(unzip.success());

    let roots = "certs/azure-postgres-roots.crt";
    let mut expected: BTreeSet<String> = [
        "host.json".to_owned(),
        "amplifier-sessions".to_owned(),
        roots.to_owned(),
    ]
    .into();
    for entry in std::fs::read_dir(repo_path("functions")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let file = format!("{name}/function.json");
        assert_eq!(
            std::fs::read(unpacked.join(&file)).unwrap(),
            std::fs::read(repo_path(&format!("functions/{file}"))).unwrap(),
            "{file}"
        );
        expected.insert(file);
    }
    assert_eq!(
        files_under(&unpacked),
        expected,
        "nothing more, nothing less"
    );
    assert_eq!(
        std::fs::read(unpacked.join("host.json")).unwrap(),
        std::fs::read(repo_path("host.json")).unwrap()
    );
    // The roots SSL_CERT_FILE names in Azure (infra/main.bicep): the three
    // Azure Database for PostgreSQL documents, each a certificate OpenSSL
    // reads.
    let pem = std::fs::read_to_string(unpacked.join(roots)).unwrap();
    assert_eq!(pem, std::fs::read_to_string(repo_path(roots)).unwrap());
    let blocks: Vec<&str> = pem.split("-----BEGIN CERTIFICATE-----").skip(1).collect();
    assert_eq!(blocks.len(), 3, "{pem}");
    for block in blocks {
        let cert = format!("-----BEGIN CERTIFICATE-----{block}");
        native_tls::Certificate::from_pem(cert.as_bytes()).unwrap();
    }
    for root in [
        "DigiCert Global Root G2",
        "Microsoft RSA Root Certificate Authority 2017",
        "DigiCert Global Root CA",
    ] {
        assert!(pem.contains(&format!("# {root}\n")), "{root}");
    }

    // python's zipfile does not restore modes; the zip records them (Azure's
    // unpacking does): check the recorded bit, then run the unpacked copy.
    let listing = Command::new("python3")
        .args(["-c", "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); print(oct(z.getinfo('amplifier-sessions').external_attr >> 16))"])
        .arg(&zip)
        .output()
        .unwrap();
    let mode = String::from_utf8(listing.stdout).unwrap();
    assert!(
        mode.trim().ends_with("755"),
        "executable in the zip: {mode}"
    );
    let binary = unpacked.join("amplifier-sessions");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();

    let database_url = fresh_database(&admin_url()).await;
    let served = Served::start_binary(&binary, base_vars(&database_url)).await;
    let health = reqwest::get(served.url("/api/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    served.stop();
}
