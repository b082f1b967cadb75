//! Builds the application: router, middleware and listener. Tests use the
//! same code with port 0.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::api;
use crate::error::ApiError;
use crate::settings::Settings;
use crate::state::AppState;

pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds the port and builds the router. Touches no database or remote
    /// service: the Functions host expects the port open within milliseconds.
    pub async fn bind(settings: Settings) -> std::io::Result<Self> {
        let addr = SocketAddr::new(settings.host, settings.port);
        let listener = TcpListener::bind(addr).await?;
        let state = AppState::new(settings).map_err(std::io::Error::other)?;
        let router = router(state);
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM or Ctrl-C, then finishes in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
    }
}

pub fn router(state: AppState) -> Router {
    let max_body = state.settings.max_body_bytes;
    let (api, _) = api::router();
    api
        // The Functions host polls `/` until it answers; any response counts.
        .route("/", get(|| async { "amplifier-sessions" }))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("handler panicked".to_owned()).into_response()
        }))
        .with_state(state)
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
