//! Data over time (issue 18): how long a deleted session stays in the
//! trash. (Minimal for now: the retention purge adds its own settings.)

use super::{SettingsError, Vars};

/// The longest trash retention accepted: about 100 years, far inside
/// PostgreSQL's interval and timestamp ranges.
const MAX_TRASH_RETENTION_DAYS: i32 = 36_500;

#[derive(Debug, Clone, Copy)]
pub struct LifecycleSettings {
    /// `TRASH_RETENTION_DAYS` (default 30): a deleted session stays in its
    /// owners' trash, restorable, this many days after it was deleted;
    /// then the purge deletes it for good.
    pub trash_retention_days: i32,
}

pub(super) fn from_vars(vars: &Vars<'_>) -> Result<LifecycleSettings, SettingsError> {
    let trash_retention_days = vars.parse_or("TRASH_RETENTION_DAYS", 30)?;
    if !(1..=MAX_TRASH_RETENTION_DAYS).contains(&trash_retention_days) {
        return Err(SettingsError::new(
            "TRASH_RETENTION_DAYS",
            format!("must be between 1 and {MAX_TRASH_RETENTION_DAYS}"),
        ));
    }
    Ok(LifecycleSettings {
        trash_retention_days,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
    use super::super::tests::vars;

    #[test]
    fn trash_retention_defaults_to_30_days_and_is_bounded() {
        let s = Settings::from_vars(&vars(&[])).unwrap();
        assert_eq!(s.lifecycle.trash_retention_days, 30);
        let s = Settings::from_vars(&vars(&[("TRASH_RETENTION_DAYS", "7")])).unwrap();
        assert_eq!(s.lifecycle.trash_retention_days, 7);
        for bad in ["0", "-1", "36501", "soon"] {
            let err = Settings::from_vars(&vars(&[("TRASH_RETENTION_DAYS", bad)])).unwrap_err();
            assert_eq!(err.name, "TRASH_RETENTION_DAYS", "{bad}");
        }
    }
}
