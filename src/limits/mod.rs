//! What bounds one request's cost beyond the HTTP deadlines of `serve`:
//! a request whose client went away stops its database work, and one
//! application holds at most its share of the database connections.

pub mod abandoned;
pub mod pool_share;
