//! What every handler shares.

use std::sync::Arc;

use crate::auth::known_keys::KnownKeys;
use crate::auth::token::TokenVerifier;
use crate::db::Database;
use crate::db::entra::EntraPassword;
use crate::events::Events;
use crate::limits::rate::RateLimiter;
use crate::limits::rate::sources::RefusedSources;
use crate::secrets::{Secrets, SecretsError, credential};
use crate::settings::{DatabaseAuth, Settings};

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Arc<Database>,
    /// The database URL, the HS256 key and the admin key, resolved on first use.
    pub secrets: Arc<Secrets>,
    /// User tokens (with RS256, the identity provider's keys).
    pub tokens: Arc<TokenVerifier>,
    /// Application keys lately found valid (see `auth::known_keys`).
    pub known_keys: Arc<KnownKeys>,
    /// Requests per minute of applications and users (`limits::rate`).
    pub rate: Arc<RateLimiter>,
    /// Sources of refused credentials (`limits::rate::sources`).
    pub refused_sources: Arc<RefusedSources>,
    /// Live sessions: streams, long-polls and the listening connection.
    pub events: Arc<Events>,
}

impl AppState {
    /// Cheap and local: nothing here touches the network.
    pub fn new(settings: Settings) -> Result<Self, SecretsError> {
        let settings = Arc::new(settings);
        // Unless the database is known to need no TLS, get it ready early.
        let plain = settings
            .database
            .config
            .as_ref()
            .is_some_and(|c| c.get_ssl_mode() == tokio_postgres::config::SslMode::Disable);
        if !plain {
            crate::db::tls::prepare();
        }
        let secrets = Arc::new(Secrets::new(settings.clone())?);
        let entra = match settings.database.auth {
            DatabaseAuth::Password => None,
            DatabaseAuth::Entra => Some(Arc::new(EntraPassword::new(
                credential(&settings.azure)?,
                settings.fetch_timeout,
            ))),
        };
        let db = Arc::new(Database::new(
            settings.database.clone(),
            secrets.clone(),
            entra,
        ));
        Ok(Self {
            known_keys: Arc::default(),
            tokens: Arc::new(TokenVerifier::new(&settings.auth, settings.fetch_timeout)),
            rate: RateLimiter::new(
                settings.rate_limits,
                settings.database.pool_timeout + settings.database.statement_timeout,
                db.clone(),
            ),
            refused_sources: Arc::default(),
            events: Events::new(&settings, db.clone()),
            db,
            secrets,
            settings,
        })
    }
}
