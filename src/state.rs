//! What every handler shares.

use std::sync::Arc;

use crate::auth::token::TokenVerifier;
use crate::db::Database;
use crate::settings::Settings;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Arc<Database>,
    pub tokens: Arc<TokenVerifier>,
}

impl AppState {
    /// Cheap and local: nothing here touches the network.
    pub fn new(settings: Settings) -> Self {
        Self {
            db: Arc::new(Database::new(settings.database.clone())),
            tokens: Arc::new(TokenVerifier::new(&settings.auth)),
            settings: Arc::new(settings),
        }
    }
}
