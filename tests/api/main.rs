//! Integration tests: the real router over HTTP against a real PostgreSQL
//! server (started by `scripts/test.sh`, URL in `TEST_DATABASE_URL`), with a
//! fresh database per test.

mod app_admin;
mod app_insights;
mod applications;
mod audit;
mod auth;
mod children;
mod config_sharing;
mod config_writes;
mod configs;
mod cors;
mod docs;
mod drills;
mod erasure;
mod errors;
mod events;
mod exhaustion;
mod fake_azure;
mod faults;
mod forks;
mod functions;
mod health;
mod helpers;
mod idempotency;
mod idp;
mod keyvault;
mod lifecycle;
mod matrix;
mod numbers;
mod owners;
mod package;
mod pagination;
mod participants;
mod pool_shares;
mod process;
mod purge;
mod rate_limits;
mod rs256;
mod sessions;
mod sse;
mod telemetry;
mod tenants;
mod transcripts;
mod trash;
mod user_sessions;
