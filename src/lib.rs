//! Amplifier sessions API: an Azure Functions custom handler over PostgreSQL.

pub mod api;
pub mod audit;
pub mod auth;
pub mod db;
pub mod entra_token;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod limits;
pub mod refresh;
pub mod roles;
pub mod search;
pub mod secrets;
pub mod serve;
pub mod settings;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod user_data;
