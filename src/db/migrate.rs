//! Embedded schema migrations (`migrations/V*__*.sql`), applied under a
//! PostgreSQL advisory lock so that any number of instances starting at once
//! on an empty database all succeed: one migrates, the others wait and then
//! find nothing left to do.

use refinery::Target;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{Client, Socket};

use super::DbError;

refinery::embed_migrations!("migrations");

/// Arbitrary, fixed key naming "the migration lock" of this service.
const MIGRATION_LOCK_KEY: i64 = 0x616d_706c_6966_7931;

/// Applies pending migrations on a dedicated connection, then, with
/// `grant_to`, gives that role what the service needs (see [`grant`]).
/// Closing the connection releases the lock, even if a migration fails
/// half-way.
pub async fn run<T>(
    config: &tokio_postgres::Config,
    tls: T,
    grant_to: Option<&str>,
) -> Result<(), DbError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    run_to(config, tls, Target::Latest, grant_to).await
}

/// Like [`run`], stopping after migration `version` (e.g. to test a later
/// migration on data in an earlier schema).
pub async fn run_until<T>(
    config: &tokio_postgres::Config,
    tls: T,
    version: i32,
) -> Result<(), DbError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    run_to(config, tls, Target::Version(version), None).await
}

async fn run_to<T>(
    config: &tokio_postgres::Config,
    tls: T,
    target: Target,
    grant_to: Option<&str>,
) -> Result<(), DbError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (mut client, connection) = config.connect(tls).await?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended with an error");
        }
    });
    let result = migrate_and_grant(&mut client, target, grant_to).await;
    drop(client);
    let _ = driver.await;
    result
}

async fn migrate_and_grant(
    client: &mut Client,
    target: Target,
    grant_to: Option<&str>,
) -> Result<(), DbError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let report = migrations::runner()
        .set_target(target)
        .run_async(client)
        .await
        .map_err(|e| DbError::Other(format!("migration failed: {e}")))?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    if let Some(role) = grant_to {
        grant(client, role).await?;
        tracing::info!(role, "granted the service's privileges");
    }
    Ok(())
}

/// The privileges the service's own role needs, and no more: to connect,
/// to read and write the rows of every table (not the migration history),
/// to use sequences and functions; and the same on whatever later
/// migrations create, which run as this (the migrating) role. Deployments
/// migrate as one role and serve as another (docs/deploy.md); re-running
/// is harmless.
pub async fn grant(client: &Client, role: &str) -> Result<(), DbError> {
    let database: String = client
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let (database, role) = (quote_ident(&database), quote_ident(role));
    client
        .batch_execute(&format!(
            "BEGIN;
             GRANT CONNECT ON DATABASE {database} TO {role};
             GRANT USAGE ON SCHEMA public TO {role};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
             REVOKE ALL ON refinery_schema_history FROM {role};
             GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {role};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public
                 GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public
                 GRANT USAGE, SELECT ON SEQUENCES TO {role};
             ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO {role};
             COMMIT;"
        ))
        .await?;
    Ok(())
}

/// An SQL identifier, quoted: role names of Entra principals contain
/// spaces, `@` and dashes.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(
            super::quote_ident("alice@contoso.com"),
            "\"alice@contoso.com\""
        );
        assert_eq!(super::quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
