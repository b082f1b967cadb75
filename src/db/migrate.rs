//! Embedded schema migrations (`migrations/V*__*.sql`), applied under a
//! PostgreSQL advisory lock so that any number of instances starting at once
//! on an empty database all succeed: one migrates, the others wait and then
//! find nothing left to do.

use postgres_native_tls::MakeTlsConnector;

use super::DbError;

refinery::embed_migrations!("migrations");

/// Arbitrary, fixed key naming "the migration lock" of this service.
const MIGRATION_LOCK_KEY: i64 = 0x616d_706c_6966_7931;

/// Applies pending migrations on a dedicated connection. Closing that
/// connection releases the lock, even if a migration fails half-way.
pub async fn run(config: &tokio_postgres::Config, tls: MakeTlsConnector) -> Result<(), DbError> {
    let (mut client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended with an error");
        }
    });
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = migrations::runner().run_async(&mut client).await;
    drop(client);
    let _ = driver.await;
    let report = report.map_err(|e| DbError::Other(format!("migration failed: {e}")))?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    Ok(())
}
