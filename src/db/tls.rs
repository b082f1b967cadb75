//! TLS for PostgreSQL connections (`sslmode=prefer|require`), verifying the
//! server certificate and host name against the system roots. Building it
//! reads the CA file: `SSL_CERT_FILE` (in Azure the package's three roots,
//! `certs/azure-postgres-roots.crt`; or a private CA), else the whole
//! system bundle (about 45 ms). native-tls reads that file, as
//! openssl-probe finds it, whatever roots a connector is given, so the
//! file is chosen by the setting rather than here. It is built once, begun
//! in the background when the process starts, so the first request waits
//! for what is left of it at most. Connections with `sslmode=disable`
//! never need it.

use std::sync::OnceLock;

use postgres_native_tls::MakeTlsConnector;

use super::DbError;

static CONNECTOR: OnceLock<Result<MakeTlsConnector, String>> = OnceLock::new();

/// Starts building the connector on a thread of its own. Reads local files
/// only (no network), so it is fine at start-up.
pub fn prepare() {
    std::thread::spawn(|| {
        let _ = connector();
    });
}

/// The connector; blocks while another thread is still building it.
pub fn connector() -> Result<MakeTlsConnector, DbError> {
    CONNECTOR
        .get_or_init(|| {
            native_tls::TlsConnector::new()
                .map(MakeTlsConnector::new)
                .map_err(|e| format!("cannot initialise TLS: {e}"))
        })
        .clone()
        .map_err(DbError::Other)
}

/// [`connector`], waited for off the async runtime's threads.
pub async fn connector_async() -> Result<MakeTlsConnector, DbError> {
    tokio::task::spawn_blocking(connector)
        .await
        .map_err(|e| DbError::Other(format!("TLS set-up failed: {e}")))?
}
