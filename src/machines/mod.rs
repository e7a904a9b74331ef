//! The machine registry (spec identity-and-machines.md §5–§7).

pub mod model;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::routes;
