//! Data over time (issue 18): the retention purge, and the two things that
//! run it on `PURGE_SCHEDULE`: the Functions host's timer trigger
//! (`timer`, `POST /purge-expired`), or, without a host, this process
//! itself (`schedule`). An operator runs it once with
//! `amplifier-sessions purge [--dry-run]`.

pub mod purge;
pub mod schedule;
pub mod timer;

pub use purge::{Outcome, Report, run};
