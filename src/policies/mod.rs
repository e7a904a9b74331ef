//! Policies: deployment-wide rule sets that machines reference through `policyIds`, applied on
//! top of a pairing's delegation policy (spec orchestration.md §4).

pub mod model;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::routes;
