//! What every handler shares.

use std::sync::Arc;

use crate::db::Database;
use crate::db::entra::EntraPassword;
use crate::secrets::{Secrets, SecretsError, credential};
use crate::settings::{DatabaseAuth, Settings};

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
        let entra = match settings.database.auth {
            DatabaseAuth::Password => None,
            DatabaseAuth::Entra => Some(Arc::new(EntraPassword::new(credential(&settings.azure)?))),
        };
        Ok(Self {
            db: Arc::new(Database::new(
                settings.database.clone(),
                secrets.clone(),
                entra,
            )),
            secrets,
            settings,
        })
    }
}
