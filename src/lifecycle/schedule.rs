//! Without a Functions host (the bare binary, a container), the process
//! runs the purge itself on `PURGE_SCHEDULE` (UTC). Every instance keeps
//! the schedule; the purge's advisory lock lets one of them purge and the
//! others skip.

use std::sync::Arc;

use chrono::Utc;

use crate::db::Database;
use crate::settings::Settings;

/// Runs the purge at each time of the schedule, for as long as the
/// runtime does.
pub fn spawn(db: Arc<Database>, settings: Arc<Settings>) {
    tokio::spawn(async move {
        let schedule = &settings.lifecycle.purge_schedule;
        tracing::info!(schedule = %schedule.expression, "purge runs in this process");
        loop {
            let Some(next) = schedule.schedule.upcoming(Utc).next() else {
                tracing::warn!("the purge schedule has no further times");
                return;
            };
            let wait = (next - Utc::now()).to_std().unwrap_or_default();
            tokio::time::sleep(wait).await;
            match super::run(&db, &settings, false).await {
                Ok(super::Outcome::Done(report)) => tracing::info!("{}", report.summary()),
                Ok(super::Outcome::Skipped) => {}
                Err(e) => tracing::error!(error = %e, "purge failed"),
            }
        }
    });
}
