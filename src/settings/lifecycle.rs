//! Data over time: how long sessions, the trash and the audit trail are
//! kept, and when the purge runs (`lifecycle`).

use std::str::FromStr;

use super::{SettingsError, Vars};

#[derive(Debug, Clone)]
pub struct LifecycleSettings {
    /// `MAX_SESSION_AGE_DAYS`: a session with no activity (its
    /// `updated_at`: appends and session updates; reads do not count) for
    /// this many days is purged, unless its application overrides it
    /// (`settings.retention.max_session_age_days`). 0 (or unset): kept
    /// forever.
    pub max_session_age_days: u32,
    /// `TRASH_RETENTION_DAYS`: a session in the trash for this many days is
    /// purged. 0: the trash is kept until its owners empty it.
    pub trash_retention_days: u32,
    /// `AUDIT_RETENTION_DAYS`: audit events older than this are purged.
    /// 0: kept forever.
    pub audit_retention_days: u32,
    /// `PURGE_SCHEDULE`: when the purge runs, an NCRONTAB expression with
    /// seconds, in UTC (the timer trigger's `schedule`, also used by the
    /// in-process schedule).
    pub purge_schedule: PurgeSchedule,
    /// `PURGE_BATCH_SIZE`: rows per purge statement (each its own
    /// transaction), so no lock is held for long.
    pub purge_batch_size: u32,
    /// `PURGE_IN_PROCESS`: whether this process runs the purge on its
    /// schedule itself. By default it does exactly when no Functions host
    /// started it (`FUNCTIONS_CUSTOMHANDLER_PORT` unset: the bare binary, a
    /// container); under the host the timer function does, and only then
    /// is `POST /purge-expired` served.
    pub purge_in_process: bool,
}

/// A validated `PURGE_SCHEDULE`: the text as given (what the timer
/// trigger reads) and the same schedule for the `cron` crate.
#[derive(Debug, Clone)]
pub struct PurgeSchedule {
    pub expression: String,
    pub schedule: cron::Schedule,
}

const DEFAULT_SCHEDULE: &str = "0 0 3 * * *";

impl FromStr for PurgeSchedule {
    type Err = String;

    /// Six fields, as the Functions host's NCRONTAB takes them: second,
    /// minute, hour, day of month, month, day of week (0 is Sunday). The
    /// `cron` crate numbers days of the week 1 (Sunday) to 7, so numbers
    /// in that field are moved up by one; names need nothing.
    fn from_str(expression: &str) -> Result<Self, String> {
        let fields: Vec<&str> = expression.split_whitespace().collect();
        if fields.len() != 6 {
            return Err(
                "must have six fields: second minute hour day month day-of-week".to_owned(),
            );
        }
        let day_of_week = fields[5]
            .split(',')
            .map(shift_weekdays)
            .collect::<Result<Vec<_>, _>>()?
            .join(",");
        let translated = format!("{} {day_of_week}", fields[..5].join(" "));
        let schedule = cron::Schedule::from_str(&translated).map_err(|e| e.to_string())?;
        Ok(Self {
            expression: fields.join(" "),
            schedule,
        })
    }
}

/// One item of an NCRONTAB day-of-week list (`1`, `1-5`, `*/2`, `1-5/2`,
/// `MON`) for the `cron` crate: day numbers (0-6) plus one; the step after
/// `/` stays.
fn shift_weekdays(item: &str) -> Result<String, String> {
    let (days, step) = match item.split_once('/') {
        Some((days, step)) => (days, Some(step)),
        None => (item, None),
    };
    let shifted = days
        .split('-')
        .map(|day| match day.parse::<u8>() {
            Ok(n @ 0..=6) => Ok((n + 1).to_string()),
            Ok(_) => Err("days of the week are 0 (Sunday) to 6 (Saturday)".to_owned()),
            Err(_) => Ok(day.to_owned()),
        })
        .collect::<Result<Vec<_>, _>>()?
        .join("-");
    Ok(match step {
        Some(step) => format!("{shifted}/{step}"),
        None => shifted,
    })
}

/// The most days any of the retention settings (or an application's
/// override) may be: a hundred years.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

pub(super) fn from_vars(vars: &Vars<'_>) -> Result<LifecycleSettings, SettingsError> {
    let days = |name: &'static str, default: u32| -> Result<u32, SettingsError> {
        let days = vars.parse_or(name, default)?;
        if days > MAX_RETENTION_DAYS {
            return Err(SettingsError::new(
                name,
                format!("must be at most {MAX_RETENTION_DAYS} days (0 keeps forever)"),
            ));
        }
        Ok(days)
    };
    let purge_schedule = vars
        .get("PURGE_SCHEDULE")
        .unwrap_or(DEFAULT_SCHEDULE)
        .parse()
        .map_err(|e| SettingsError::new("PURGE_SCHEDULE", e))?;
    let purge_batch_size = vars.parse_or("PURGE_BATCH_SIZE", 2000)?;
    if !(1..=50_000).contains(&purge_batch_size) {
        return Err(SettingsError::new(
            "PURGE_BATCH_SIZE",
            "must be between 1 and 50000",
        ));
    }
    Ok(LifecycleSettings {
        max_session_age_days: days("MAX_SESSION_AGE_DAYS", 0)?,
        trash_retention_days: days("TRASH_RETENTION_DAYS", 30)?,
        audit_retention_days: days("AUDIT_RETENTION_DAYS", 365)?,
        purge_schedule,
        purge_batch_size,
        purge_in_process: vars.parse_or(
            "PURGE_IN_PROCESS",
            !vars.is_set("FUNCTIONS_CUSTOMHANDLER_PORT"),
        )?,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, TimeZone, Timelike, Utc, Weekday};

    use crate::settings::Settings;
    use crate::settings::tests::vars;

    #[test]
    fn defaults_keep_sessions_and_purge_trash_and_audit_nightly() {
        let s = Settings::from_vars(&vars(&[])).unwrap().lifecycle;
        assert_eq!(s.max_session_age_days, 0);
        assert_eq!(s.trash_retention_days, 30);
        assert_eq!(s.audit_retention_days, 365);
        assert_eq!(s.purge_schedule.expression, "0 0 3 * * *");
        assert_eq!(s.purge_batch_size, 2000);
        assert!(s.purge_in_process, "no host: the process runs the schedule");
        let next = s
            .purge_schedule
            .schedule
            .after(&Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap())
            .next()
            .unwrap();
        assert_eq!(next, Utc.with_ymd_and_hms(2026, 1, 2, 3, 0, 0).unwrap());
        let hosted = Settings::from_vars(&vars(&[("FUNCTIONS_CUSTOMHANDLER_PORT", "4000")]))
            .unwrap()
            .lifecycle;
        assert!(!hosted.purge_in_process, "the host's timer runs it");
    }

    /// NCRONTAB's day 1 is Monday (0 Sunday); the `cron` crate's is Sunday.
    #[test]
    fn days_of_the_week_mean_what_they_mean_to_the_functions_host() {
        let at = |expression: &str| {
            let s = Settings::from_vars(&vars(&[("PURGE_SCHEDULE", expression)]))
                .unwrap()
                .lifecycle
                .purge_schedule;
            // 2026-01-01 is a Thursday.
            s.schedule
                .after(&Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap())
                .take(3)
                .map(|t| (t.weekday(), t.hour()))
                .collect::<Vec<_>>()
        };
        assert_eq!(at("0 30 4 * * 1")[0], (Weekday::Mon, 4));
        assert_eq!(at("0 0 1 * * 0")[0], (Weekday::Sun, 1));
        assert_eq!(at("0 0 1 * * 6")[0], (Weekday::Sat, 1));
        assert_eq!(
            at("0 0 2 * * 1-5"),
            [(Weekday::Thu, 2), (Weekday::Fri, 2), (Weekday::Mon, 2)]
        );
        assert_eq!(
            at("0 0 2 * * 1/2"),
            [(Weekday::Fri, 2), (Weekday::Mon, 2), (Weekday::Wed, 2)]
        );
        assert_eq!(at("0 0 2 * * SUN,6")[0], (Weekday::Sat, 2));
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("MAX_SESSION_AGE_DAYS", "-1"),
            ("MAX_SESSION_AGE_DAYS", "36501"),
            ("TRASH_RETENTION_DAYS", "x"),
            ("AUDIT_RETENTION_DAYS", "1.5"),
            ("PURGE_SCHEDULE", "0 3 * * *"),
            ("PURGE_SCHEDULE", "0 0 3 * * * 2030"),
            ("PURGE_SCHEDULE", "0 0 25 * * *"),
            ("PURGE_SCHEDULE", "0 0 3 * * 7"),
            ("PURGE_BATCH_SIZE", "0"),
            ("PURGE_IN_PROCESS", "maybe"),
        ] {
            let err = Settings::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name, "{value}");
        }
    }
}
