//! Agent pairings: challenges, pairings, sessions, delegation policies and the pairing-token
//! check of agent routes (spec pairings-and-auth.md).

pub mod auth;
mod challenge;
pub mod model;
pub mod policy;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::routes;
