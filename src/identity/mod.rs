//! Machine identity: identity refs, challenges and EIP-191 proofs checked against MCR.

pub mod challenge;
pub mod model;
pub mod refs;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::routes;
