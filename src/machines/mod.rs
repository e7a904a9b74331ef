//! The machine registry (spec identity-and-machines.md §5–§7).

pub mod model;
pub(crate) mod routes;
pub mod service;
pub(crate) mod store;

pub use routes::routes;
