//! Who is calling, checked inside each statement: the application's key
//! and, for session functions, the user's role. So every request of an
//! application is one round trip, and a rotated or deactivated key is
//! refused by the very next statement on every instance (nothing cached).
//!
//! Conventions of the statements that use these pieces: `$1` is the
//! SHA-256 of the application's key (`NULL` only for keyless calls in
//! development, which act as `dev-app`); for session functions `$2` is
//! the session and `$3` the calling user. Every such statement returns at
//! least one row whose [`verdict!`] columns tell an unknown or deactivated
//! key apart (401) from anything else.

use tokio_postgres::Row;

use super::DbError;
use crate::roles::Role;

/// The CTE `app`: the caller's application (no row for an unknown key).
macro_rules! app_cte {
    () => {
        concat!(
            "app AS (
                 SELECT app_id, is_active FROM applications WHERE api_key_hash = $1
                 UNION ALL
                 SELECT '",
            crate::settings::dev_app_id!(),
            "'::varchar, true WHERE $1::varchar IS NULL
             )"
        )
    };
}
pub(crate) use app_cte;

/// A statement run for an application: the CTE `app`, then `$rest`
/// (continuing the WITH list with a comma, or the main statement).
macro_rules! with_app {
    ($($rest:expr),+ $(,)?) => {
        concat!("WITH ", crate::db::caller::app_cte!(), $($rest),+)
    };
}
pub(crate) use with_app;

/// A statement guarded by the caller's role in session `$2`: the CTE
/// `caller` holds the role of user `$3` (no row when they do not
/// participate, the session is in the trash, or the key is not valid).
/// A trashed session (`trashed_at`, migration V20) is invisible to every
/// function but its owners' trash listing, restore and permanent delete
/// (`db::trash`), which say who may see it themselves. Statements that
/// update the session also say `s.trashed_at IS NULL` in their UPDATE, so
/// that one waiting for a concurrent trash's lock skips the trashed row.
macro_rules! with_caller {
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "WITH ",
            crate::db::caller::app_cte!(),
            ", caller AS (
                 SELECT p.role FROM session_participants p
                 JOIN sessions s ON s.session_id = p.session_id AND s.trashed_at IS NULL
                 JOIN app ON app.is_active
                 WHERE p.session_id = $2 AND p.user_id = $3
             )",
            $($rest),+
        )
    };
}
pub(crate) use with_caller;

/// Like [`with_caller`], and locks the session row first. Statements that
/// change participants (add, change roles, remove) use it so that every
/// statement touching a session and a participant locks them in the same
/// order (session, then participant): appends and updates lock the session
/// by updating it, and the last-owner trigger (migration V7) locks it too.
/// Without one order, an append and a demotion could deadlock. The lock
/// also orders these changes after a feed's registration for the session's
/// events (which updates the row, migration V19), or the registration
/// after them, and after a concurrent trash (the locked row is rechecked:
/// a session trashed meanwhile has no caller).
macro_rules! with_caller_locking_session {
    ($($rest:expr),+ $(,)?) => {
        concat!(
            "WITH ",
            crate::db::caller::app_cte!(),
            ", caller AS (
                 SELECT p.role FROM sessions s
                 JOIN session_participants p ON p.session_id = s.session_id
                 JOIN app ON app.is_active
                 WHERE s.session_id = $2 AND p.user_id = $3 AND s.trashed_at IS NULL
                 FOR NO KEY UPDATE OF s
             )",
            $($rest),+
        )
    };
}
pub(crate) use with_caller_locking_session;

/// The first select-list items and the FROM clause of every application
/// statement: one row, whatever happens, carrying the key's verdict.
/// Joins after it (`LEFT JOIN ... ON true`) add the outcome.
macro_rules! verdict {
    () => {
        "SELECT app.app_id AS app_id, app.is_active AS app_active"
    };
}
pub(crate) use verdict;

macro_rules! verdict_from {
    () => {
        " FROM (VALUES (1)) AS one (x) LEFT JOIN app ON true"
    };
}
pub(crate) use verdict_from;

/// The select list and FROM clause of a statement guarded by the caller's
/// role: the key's verdict, the `caller_role` column that
/// [`Guarded::from_row`] reads (null when the caller does not participate),
/// then `$columns`, from what `$joins` adds.
macro_rules! guarded_select {
    ($columns:expr, $joins:expr $(,)?) => {
        concat!(
            crate::db::caller::verdict!(),
            ", caller.role AS caller_role",
            $columns,
            crate::db::caller::verdict_from!(),
            " LEFT JOIN caller ON true",
            $joins
        )
    };
}
pub(crate) use guarded_select;

/// Why an application key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No application has this key (never issued, replaced, or deleted).
    Unknown,
    /// Its application is deactivated.
    Deactivated,
}

/// Reads a `role` column; the CHECK constraint makes failure a data fault.
pub fn role(value: &str) -> Result<Role, DbError> {
    Role::parse(value)
        .ok_or_else(|| DbError::Other(format!("unknown role {value:?} in the database")))
}

/// Reads the verdict columns: the key is valid, or the statement did
/// nothing and the request is refused.
pub fn check_key(row: &Row) -> Result<(), DbError> {
    match row.get::<_, Option<bool>>("app_active") {
        Some(true) => {
            if crate::telemetry::enabled()
                && let Ok(Some(app_id)) = row.try_get::<_, Option<&str>>("app_id")
            {
                crate::telemetry::record_app_id(app_id);
            }
            Ok(())
        }
        Some(false) => Err(DbError::KeyRefused(KeyRefusal::Deactivated)),
        None => Err(DbError::KeyRefused(KeyRefusal::Unknown)),
    }
}

/// The outcome of an operation guarded by the caller's role in a session.
#[derive(Debug)]
pub enum Guarded<T> {
    /// The caller does not participate, or the session does not exist: the
    /// API reports both as "not found".
    NotVisible,
    /// The caller participates with `role`. `done` is `None` when the role
    /// is not permitted, or when the target of the operation is missing.
    Seen { role: Role, done: Option<T> },
}

impl<T> Guarded<T> {
    /// Reads the key's verdict, the `caller_role` column, then the result
    /// with `done`.
    pub(super) fn from_row(
        row: &Row,
        done: impl FnOnce(&Row) -> Result<Option<T>, DbError>,
    ) -> Result<Self, DbError> {
        check_key(row)?;
        let Some(role) = row.get::<_, Option<&str>>("caller_role") else {
            return Ok(Self::NotVisible);
        };
        Ok(Self::Seen {
            role: self::role(role)?,
            done: done(row)?,
        })
    }
}
