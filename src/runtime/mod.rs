//! Runtime endpoints: where a machine's runtimes (model servers, tools) answer, registered by
//! hand or leased by heartbeats (spec agents-and-runtime.md §3, §5, §6).

pub mod model;
pub(crate) mod routes;
pub mod service;
pub mod store;

pub use routes::routes;
