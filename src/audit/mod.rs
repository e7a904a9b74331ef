//! The audit trail (spec orchestration.md §5). Features call [`record`] inside the transaction
//! of the change it records.

pub mod model;
pub(crate) mod routes;
mod service;
mod store;

pub use model::{Actor, NewAuditEvent};
pub use routes::routes;

use crate::store::Tx;

/// Writes one audit event in `tx`. The payload must already be free of secrets.
pub async fn record(tx: &mut Tx, now_ms: i64, event: NewAuditEvent) -> Result<String, sqlx::Error> {
    store::insert(tx, now_ms, event).await
}
