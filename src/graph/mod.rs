//! The machine graph: nodes and edges an operator draws for a machine (spec orchestration.md §1).

pub mod model;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::routes;
