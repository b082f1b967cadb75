//! Builds the application: router, middleware and listener. Tests use the
//! same code with port 0.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::api;
use crate::auth;
use crate::error::ApiError;
use crate::events::Events;
use crate::lifecycle;
use crate::limits;
use crate::serve;
use crate::settings::{HttpSettings, Settings};
use crate::state::AppState;
use crate::telemetry;

pub struct Application {
    listener: TcpListener,
    router: Router,
    http: HttpSettings,
    events: Arc<Events>,
}

impl Application {
    /// Binds the port and builds the router. Touches no database or remote
    /// service: the Functions host expects the port open within milliseconds.
    pub async fn bind(settings: Settings) -> std::io::Result<Self> {
        let addr = SocketAddr::new(settings.http.host, settings.http.port);
        let listener = TcpListener::bind(addr).await?;
        let http = settings.http.clone();
        let state = AppState::new(settings).map_err(std::io::Error::other)?;
        telemetry::metrics::observe(&state.db, &state.events, &state.rate);
        if state.settings.lifecycle.purge_in_process {
            lifecycle::schedule::spawn(state.db.clone(), state.settings.clone());
        }
        let events = state.events.clone();
        let router = router(state);
        Ok(Self {
            listener,
            router,
            http,
            events,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests;
    /// streams and long-polls end at once (clients resume elsewhere), so
    /// they do not hold up the drain.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let events = self.events;
        let shutdown = async move {
            shutdown_signal().await;
            events.shut_down();
        };
        serve::serve(self.listener, self.router, &self.http, shutdown).await
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.settings.http.max_body_bytes;
    let origins = state.settings.http.allowed_origins.clone();
    let (mut api, _) = api::router();
    if !state.settings.auth.required {
        api = api.layer(axum::middleware::from_fn(auth::dev_user::explain_not_found));
    }
    let router = api
        // The Functions host polls `/` until it answers; any response counts.
        .route("/", get(|| async { "amplifier-sessions" }))
        // The host's timer trigger: not a public function (see lifecycle::timer).
        .route(lifecycle::timer::PATH, post(lifecycle::timer::invoke))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".to_owned()).into_response()
        }))
        .layer(axum::middleware::from_fn(limits::abandoned::watch))
        .layer(axum::middleware::from_fn(limits::rate::headers_middleware))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::rate::sources::middleware,
        ))
        .layer(axum::middleware::from_fn(limits::pool_share::scope))
        .layer(axum::middleware::from_fn(telemetry::log_request))
        .with_state(state);
    match cors(&origins) {
        Some(cors) => router.layer(cors),
        // In Azure the platform answers CORS (preflights never get here) but
        // cannot expose response headers, so every response does it.
        None => router.layer(SetResponseHeaderLayer::if_not_present(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_str(&EXPOSED_HEADERS.map(|h| h.as_str().to_owned()).join(", "))
                .expect("header names are valid values"),
        )),
    }
}

/// Response headers browser clients need to read.
const EXPOSED_HEADERS: [HeaderName; 6] = [
    header::LOCATION,
    header::RETRY_AFTER,
    header::WWW_AUTHENTICATE,
    HeaderName::from_static(api::idempotency::REPLAYED_HEADER),
    limits::rate::RATELIMIT,
    limits::rate::RATELIMIT_POLICY,
];

/// Browsers on `origins` may call the API: preflights are answered here,
/// before routing, and responses expose the headers clients read. `None`
/// when no origin is allowed (in Azure the platform does CORS).
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).expect("settings accept only visible ASCII origins"));
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static(crate::auth::API_KEY_HEADER),
                HeaderName::from_static(api::idempotency::HEADER),
            ])
            .expose_headers(EXPOSED_HEADERS)
            .max_age(std::time::Duration::from_secs(600)),
    )
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no function at {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> Response {
    ApiError::MethodNotAllowed(format!("{} does not accept {method}", uri.path())).into_response()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
