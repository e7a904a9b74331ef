//! The machine registry (spec identity-and-machines.md §5–§7).

pub mod model;
mod routes;
pub mod service;
mod store;

pub use routes::routes;
