//! Market orders and the direct read (spec orders-and-payments.md §1.1, §3–§5).

pub mod model;
pub mod payment;
pub(crate) mod routes;
pub mod service;
mod store;

pub use routes::{agent_optional_routes, agent_routes, platform_routes};
pub use service::ensure_none_open;
pub use store::OrdersOf;
