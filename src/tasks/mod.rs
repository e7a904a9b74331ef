//! Tasks (discover → resolve → execute) and the routes, runs and outcomes that record each
//! execution (spec orchestration.md §2–§3). Orders and direct reads create internal tasks and
//! record their executions through [`service`]'s recording functions.

pub mod model;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::routes;
