//! The errors an operation documents, grouped by what in a request causes
//! them, so that each group's statuses are written once. A handler lists
//! the groups that apply to it beside its own statuses, e.g.
//! `responses((status = 200, ...), CallerProblems, BodyProblems,
//! (status = 409, response = Problem))`. Each status is the shared
//! `Problem` response (problem+json).

use std::collections::BTreeMap;

use utoipa::openapi::{Ref, RefOr, response::Response};

macro_rules! problems {
    ($(#[$doc:meta])* $name:ident: $($status:literal),+) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                [$($status),+]
                    .into_iter()
                    .map(|status: u16| {
                        (status.to_string(), RefOr::Ref(Ref::from_response_name("Problem")))
                    })
                    .collect()
            }
        }
    };
}

problems!(
    /// Every call with credentials: refused (401), not allowed (403), over
    /// a rate limit or its application's share of the instance's database
    /// connections (429), or the database, Key Vault or the identity
    /// provider out of reach (503).
    CallerProblems: 401, 403, 429, 503
);
problems!(
    /// A resource the request names (by an id in its path, or a config in
    /// its body): a malformed id (400), or none the caller can see (404).
    TargetProblems: 400, 404
);
problems!(
    /// A JSON body: malformed (400), stalled (408), over `MAX_BODY_BYTES`
    /// (413), not JSON (415), or a field that is invalid (422).
    BodyProblems: 400, 408, 413, 415, 422
);
problems!(
    /// A request with an `Idempotency-Key` answered before, whose session
    /// (created, forked or appended to) has been deleted since (410).
    ReplayProblems: 410
);
