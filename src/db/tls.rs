//! TLS for PostgreSQL connections (`sslmode=prefer|require`), verifying the
//! server certificate and host name against the system roots (or
//! `SSL_CERT_FILE`, which OpenSSL reads, for a private CA). Building it
//! reads the whole CA bundle (about 40 ms), so it is built once, and begun
//! in the background when the process starts: the first request does not
//! wait for it. Connections with `sslmode=disable` never need it.

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
