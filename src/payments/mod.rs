//! Payments of market orders: rails, intents, proofs, escrow, release and refund (spec
//! orders-and-payments.md §1.2, §7–§9). The orchestrator never holds funds; it records and
//! verifies the state of each order's one payment. The order side of the payment actions
//! (gates, order status, audit) is `orders::payment`'s.

pub mod model;
pub mod service;
mod store;
pub mod verify;
pub mod x402;
