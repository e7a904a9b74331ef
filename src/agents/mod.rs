//! Machine-side runtime agents (spec agents-and-runtime.md §1.1, §2, §4).

pub mod model;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::{heartbeat_routes, routes};
