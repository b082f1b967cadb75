//! The `purge-expired` timer function (`functions/purge-expired/
//! function.json`, `"schedule": "%PURGE_SCHEDULE%"`), in the Functions
//! host's protocol for functions that are not HTTP-triggered: the host
//! POSTs to `/{function name}` on the handler's port (127.0.0.1) a JSON
//! object `{"Data": {<binding name>: <trigger value>}, "Metadata": {...}}`
//! (for a timer, the value is `{"Schedule": {...}, "ScheduleStatus":
//! {"Last", "Next", "LastUpdated"}, "IsPastDue": bool}`), and reads the
//! 2xx response's JSON body `{"Outputs": {...}, "Logs": [...],
//! "ReturnValue": ...}`; a non-2xx status fails the invocation.
//!
//! Sources: Learn, "Azure Functions custom handlers", sections "Request
//! payload" and "Response payload"
//! (https://learn.microsoft.com/azure/azure-functions/functions-custom-handlers);
//! Azure/azure-functions-host (v4.1037.0),
//! src/WebJobs.Script/Workers/Http/DefaultHttpWorkerService.cs
//! (`ProcessDefaultInvocationRequest`: POST to
//! `http://127.0.0.1:{port}/{FunctionMetadata.Name}`,
//! `EnsureSuccessStatusCode`, then `ReadAsAsync<HttpScriptInvocationResult>`,
//! a JSON formatter, so `Content-Type: application/json`),
//! Workers/Http/HttpScriptInvocationContext.cs (`Data`, `Metadata`),
//! Workers/Http/HttpScriptInvocationResult.cs (`ReturnValue`, `Outputs`,
//! `Logs`), Workers/MessageExtensions/ScriptInvocationContextExtensions.cs
//! (`ToHttpScriptInvocationContext`: trigger values go in `Data`, other
//! binding data in `Metadata`).
//!
//! Not a public function: not in the route table or the OpenAPI document,
//! and the host never forwards an outside request here (it forwards only
//! HTTP-triggered functions' routes, under `/api`). In a process no host
//! started (`PURGE_IN_PROCESS`, by default when `FUNCTIONS_CUSTOMHANDLER_PORT`
//! is unset) the route does not exist (404, like any unknown path), and
//! under a host it answers only loopback peers, as the host is, so a
//! handler port exposed by mistake cannot be used to run purges.

use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Outcome;
use crate::error::ApiError;
use crate::state::AppState;

/// The path the host POSTs to: the function's folder name.
pub const PATH: &str = "/purge-expired";

/// What the host sends (fields this function does not need are ignored).
#[derive(Debug, Deserialize)]
pub struct Invocation {
    #[serde(rename = "Data", default)]
    data: Map<String, Value>,
}

impl Invocation {
    /// Whether the host says the run is late (`IsPastDue` of the timer
    /// binding): missed while no instance ran, run now.
    fn past_due(&self) -> bool {
        self.data.values().any(|timer| {
            // Some host versions pass the binding's value as JSON text.
            let parsed;
            let timer = match timer {
                Value::String(text) => {
                    parsed = serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
                    &parsed
                }
                other => other,
            };
            timer["IsPastDue"] == Value::Bool(true)
        })
    }
}

/// What the host reads back.
#[derive(Debug, Serialize)]
pub struct InvocationResult {
    #[serde(rename = "Outputs")]
    outputs: Map<String, Value>,
    /// Written to the invocation's log by the host.
    #[serde(rename = "Logs")]
    logs: Vec<String>,
    /// A timer function has no `$return` binding: nothing to return.
    #[serde(rename = "ReturnValue")]
    return_value: Value,
}

pub async fn invoke(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if state.settings.lifecycle.purge_in_process || !peer.ip().is_loopback() {
        return Err(ApiError::NotFound(format!("no function at POST {PATH}")));
    }
    let invocation: Invocation = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("not the host's invocation request: {e}")))?;
    let mut logs = Vec::new();
    if invocation.past_due() {
        logs.push("the timer is past due: purging now".to_owned());
    }
    match super::run(&state.db, &state.settings, false).await? {
        Outcome::Done(report) => logs.push(report.summary()),
        Outcome::Skipped => logs.push("skipped: another instance is purging".to_owned()),
    }
    Ok(Json(InvocationResult {
        outputs: Map::new(),
        logs,
        return_value: Value::Null,
    })
    .into_response())
}
