//! Storage: the lazily built connection pool, migrations, and every SQL
//! statement the service runs (one module per table group).

pub mod applications;
pub mod audit;
pub(crate) mod caller;
pub mod configs;
pub mod entra;
pub mod erasure;
mod error;
pub mod events;
pub mod idempotency;
pub mod listen;
pub mod messages;
pub mod migrate;
pub mod participants;
mod pool;
pub mod pooled;
pub mod purge;
pub mod sessions;
mod statement;
pub mod tls;
pub mod trash;
pub mod user_export;

pub use caller::{Guarded, KeyRefusal};
pub use error::DbError;
pub use pool::{Database, connect_config};
