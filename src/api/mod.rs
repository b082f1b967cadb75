//! The HTTP API: one module per resource, and the function table below,
//! which is the single list of routes. Each entry is an Azure function
//! (`functions/<name>/function.json`); a test keeps the two in step.

mod applications;
mod configs;
mod extract;
mod health;
mod participants;
mod sessions;
mod users;
mod validate;

use axum::Router;
use axum::routing::{MethodFilter, on};

use crate::state::AppState;

/// One Azure function: its folder name, HTTP method and full path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
}

macro_rules! functions {
    ($($name:literal: $method:ident $path:literal => $handler:path,)*) => {
        /// Every function the binary serves.
        pub const FUNCTIONS: &[Function] = &[
            $(Function { name: $name, method: stringify!($method), path: $path },)*
        ];

        /// The router serving exactly [`FUNCTIONS`].
        pub fn router() -> Router<AppState> {
            Router::new()$(.route($path, on(MethodFilter::$method, $handler)))*
        }
    };
}

functions! {
    "health": GET "/api/health" => health::check,
    "create-application": POST "/api/applications" => applications::create,
    "create-config": POST "/api/configs" => configs::create,
    "get-config": GET "/api/configs/{config_id}" => configs::get,
    "create-session": POST "/api/sessions" => sessions::create,
    "get-session": GET "/api/sessions/{session_id}" => sessions::get,
    "add-participant": POST "/api/sessions/{session_id}/participants" => participants::add,
    "list-participants": GET "/api/sessions/{session_id}/participants" => participants::list,
    "list-user-sessions": GET "/api/users/{user_id}/sessions" => users::sessions,
}
