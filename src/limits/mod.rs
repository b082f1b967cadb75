//! What bounds one request's cost beyond the HTTP deadlines of `serve`:
//! a request whose client went away stops its database work.

pub mod abandoned;
