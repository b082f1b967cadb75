//! What bounds one request's cost beyond the HTTP deadlines of `serve`,
//! and one caller's share of the service: a request whose client went
//! away stops its database work (`abandoned`); callers are held to their
//! requests per minute (`rate`).

pub mod abandoned;
pub mod rate;
