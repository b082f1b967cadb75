//! What every handler shares.

use std::sync::Arc;

use crate::db::Database;
use crate::secrets::{Secrets, SecretsError};
use crate::settings::Settings;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Arc<Database>,
    /// Token verification and the admin key, resolved on first use.
    pub secrets: Arc<Secrets>,
}

impl AppState {
    /// Cheap and local: nothing here touches the network.
    pub fn new(settings: Settings) -> Result<Self, SecretsError> {
        let settings = Arc::new(settings);
        let secrets = Arc::new(Secrets::new(settings.clone())?);
        Ok(Self {
            db: Arc::new(Database::new(settings.database.clone(), secrets.clone())),
            secrets,
            settings,
        })
    }
}
