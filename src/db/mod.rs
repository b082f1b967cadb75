//! Storage: the lazily built connection pool, migrations, and every SQL
//! statement the service runs (one module per table group).

pub mod applications;
pub mod configs;
pub mod entra;
mod error;
pub mod idempotency;
pub mod messages;
pub mod migrate;
pub mod participants;
mod pool;
pub mod sessions;

pub use error::DbError;
pub use pool::{Database, connect_config, tls_connector};

/// A statement guarded by the caller's role: `$1` is the session, `$2` the
/// caller, and the CTE `caller` holds the caller's role (no row when the
/// caller does not participate). `$rest` continues the WITH list or starts
/// the main statement.
macro_rules! with_caller {
    ($rest:literal) => {
        concat!(
            "WITH caller AS (
                 SELECT role FROM session_participants WHERE session_id = $1 AND user_id = $2
             )",
            $rest
        )
    };
}
pub(crate) use with_caller;

/// Like [`with_caller`], and locks the session row first. Statements that
/// change participants' roles use it so that every statement touching a
/// session and a participant locks them in the same order (session, then
/// participant): appends and updates lock the session by updating it, and
/// the last-owner trigger (migration V7) locks it too. Without one order,
/// an append and a demotion could deadlock.
macro_rules! with_caller_locking_session {
    ($rest:literal) => {
        concat!(
            "WITH caller AS (
                 SELECT p.role FROM sessions s
                 JOIN session_participants p ON p.session_id = s.session_id
                 WHERE s.session_id = $1 AND p.user_id = $2
                 FOR NO KEY UPDATE OF s
             )",
            $rest
        )
    };
}
pub(crate) use with_caller_locking_session;

/// The outcome of an operation guarded by the caller's role in a session.
#[derive(Debug)]
pub enum Guarded<T> {
    /// The caller does not participate, or the session does not exist: the
    /// API reports both as "not found".
    NotVisible,
    /// The caller participates with `role`. `done` is `None` when the role
    /// is not permitted, or when the target of the operation is missing.
    Seen {
        role: crate::roles::Role,
        done: Option<T>,
    },
}

impl<T> Guarded<T> {
    /// Reads the `caller_role` column, then the result with `done`.
    fn from_row(
        row: Option<tokio_postgres::Row>,
        done: impl FnOnce(&tokio_postgres::Row) -> Result<Option<T>, DbError>,
    ) -> Result<Self, DbError> {
        let Some(row) = row else {
            return Ok(Self::NotVisible);
        };
        Ok(Self::Seen {
            role: crate::roles::Role::from_db(row.get("caller_role"))?,
            done: done(&row)?,
        })
    }
}
