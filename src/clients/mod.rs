//! Outbound HTTP clients (DESIGN.md `clients/`): each call has its own timeout, and failures
//! of the remote side are mapped to the spec's error codes here, never leaked to API clients.

pub mod evm_rpc;
pub mod mcr;
pub mod outbound;
pub mod provider;
pub mod runtime;
