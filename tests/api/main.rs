//! Integration tests: the real router over HTTP against a real PostgreSQL
//! server (started by `scripts/test.sh`, URL in `TEST_DATABASE_URL`), with a
//! fresh database per test.

mod applications;
mod auth;
mod configs;
mod errors;
mod faults;
mod functions;
mod health;
mod helpers;
mod participants;
mod process;
mod sessions;
mod user_sessions;
