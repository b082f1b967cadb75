//! Knowing that a request was abandoned: its client went away (or a
//! deadline passed) and hyper dropped the handler's future. A connection
//! checked out for such a request is not returned to the pool as it is:
//! its running statement is cancelled (`db::pooled`).

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST: Arc<Abandoned>;
}

/// Set when the request's future is dropped before it produced a response.
#[derive(Default, Debug)]
pub struct Abandoned(AtomicBool);

impl Abandoned {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The flag of the request being handled on this task, if any.
pub fn current() -> Option<Arc<Abandoned>> {
    REQUEST.try_with(Arc::clone).ok()
}

/// Middleware: gives the handler a flag that is set if the handler's
/// future is dropped unfinished.
pub async fn watch(request: Request, next: Next) -> Response {
    let flag = Arc::new(Abandoned::default());
    // Declared before the guard, so that when this future is dropped the
    // guard drops (and sets the flag) first, then the handler with its
    // connections, which read it.
    let mut handler = pin!(REQUEST.scope(flag.clone(), next.run(request)));
    let guard = SetOnDrop(Some(flag));
    let response = handler.as_mut().await;
    guard.disarm();
    response
}

struct SetOnDrop(Option<Arc<Abandoned>>);

impl SetOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = &self.0 {
            flag.0.store(true, Ordering::Release);
        }
    }
}
