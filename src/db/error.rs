//! Why a storage call failed, in the terms the HTTP layer needs: the
//! server's SQLSTATE mapped once, here.

use tokio_postgres::error::SqlState;

use crate::secrets::SecretsError;

/// Raised by the `ensure_session_keeps_an_owner` trigger (migration V7).
const LAST_OWNER_SQLSTATE: &str = "AM001";
/// Raised by the `protect_shared_configs` trigger (migration V9); its
/// DETAIL is the number of other applications' sessions.
const CONFIG_SHARED_SQLSTATE: &str = "AM002";

/// Why a storage call failed, in the terms the HTTP layer needs.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server cannot be reached or refused us for now; worth a retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A unique constraint rejected the write.
    #[error("unique constraint {0} violated")]
    UniqueViolation(String),
    /// PostgreSQL refused a value (SQLSTATE class 22). Input is checked
    /// before it gets here, so the message is only logged.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// A row the statement refers to was deleted while it ran (foreign key
    /// violation, SQLSTATE 23503): e.g. a participant added to a session
    /// being deleted.
    #[error("a referenced row vanished: {0}")]
    Vanished(String),
    /// A serialization failure or deadlock (SQLSTATE class 40): nothing
    /// was written; the same request may succeed when retried.
    #[error("transaction conflict: {0}")]
    Conflict(String),
    /// The server refused our password (SQLSTATE 28P01): perhaps rotated.
    #[error("password rejected: {0}")]
    PasswordRejected(String),
    /// The secrets (Key Vault) could not be resolved.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The schema is missing, or the service's role may not use it (not
    /// migrated, or privileges never granted): a deployment fault.
    #[error("the database schema is not usable: {0}")]
    SchemaUnusable(String),
    /// The application key was refused by the statement (see `caller`).
    #[error("application key refused: {0:?}")]
    KeyRefused(super::KeyRefusal),
    /// The write would leave a session without an owner (migration V7).
    #[error("a session must keep at least one owner")]
    LastOwner,
    /// The config is used by this many sessions of other applications, so
    /// it may not be deleted or change its content (migration V9).
    #[error("the config is used by {0} sessions of other applications")]
    ConfigShared(i64),
    /// The calling application holds its share of the pool (see
    /// `limits::pool_share`): refused without touching the database.
    #[error("{0}")]
    OverShare(crate::limits::pool_share::OverShare),
    /// A statement was cancelled: it ran past `DATABASE_STATEMENT_TIMEOUT_MS`
    /// (SQLSTATE 57014).
    #[error("statement cancelled: {0}")]
    Cancelled(String),
    #[error("database error: {0}")]
    Other(String),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(err: tokio_postgres::Error) -> Self {
        let Some(db) = err.as_db_error() else {
            let message = err.to_string();
            // A value that does not convert is our fault, not the server's.
            if message.starts_with("error serializing parameter")
                || message.starts_with("error deserializing column")
            {
                return Self::Other(message);
            }
            // Otherwise the socket failed, closed, or TLS refused the server.
            return Self::Unavailable(message);
        };
        // tokio-postgres' own Display says only "db error"; keep the server's words.
        let message = format!("{} ({})", db.message(), db.code().code());
        let code = db.code();
        if code.code() == LAST_OWNER_SQLSTATE {
            return Self::LastOwner;
        }
        if code.code() == CONFIG_SHARED_SQLSTATE {
            return Self::ConfigShared(db.detail().and_then(|d| d.parse().ok()).unwrap_or(1));
        }
        if *code == SqlState::QUERY_CANCELED {
            return Self::Cancelled(message);
        }
        if *code == SqlState::FOREIGN_KEY_VIOLATION {
            return Self::Vanished(message);
        }
        if *code == SqlState::INVALID_PASSWORD {
            return Self::PasswordRejected(message);
        }
        if *code == SqlState::UNIQUE_VIOLATION {
            return Self::UniqueViolation(db.constraint().unwrap_or_default().to_owned());
        }
        if [
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::UNDEFINED_TABLE,
            SqlState::UNDEFINED_COLUMN,
            SqlState::UNDEFINED_FUNCTION,
        ]
        .contains(code)
        {
            return Self::SchemaUnusable(message);
        }
        let class = &code.code()[..2];
        if class == "22" {
            return Self::InvalidValue(message);
        }
        if class == "40" {
            return Self::Conflict(message);
        }
        // Class 08 (connection exception), 28 (rejected credentials), and
        // shutdown or overload: the service cannot use its database right now.
        if class == "08"
            || class == "28"
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
            ]
            .contains(code)
        {
            return Self::Unavailable(message);
        }
        Self::Other(message)
    }
}

impl From<deadpool_postgres::PoolError> for DbError {
    fn from(err: deadpool_postgres::PoolError) -> Self {
        match err {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Unavailable(other.to_string()),
        }
    }
}
