//! What bounds one request's cost beyond the HTTP deadlines of `serve`,
//! and one caller's share of the service: a request whose client went
//! away stops its database work (`abandoned`); one application holds at
//! most its share of the database connections (`pool_share`); callers are
//! held to their requests per minute (`rate`); background work holds to
//! its share of the time (`pace`).

pub mod abandoned;
pub mod pace;
pub mod pool_share;
pub mod rate;
