//! The market: search, quotes and the ranking shared with task discovery (spec
//! catalogue-and-search.md §8–§9).

pub mod model;
pub mod ranking;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::{agent_routes, platform_routes};
