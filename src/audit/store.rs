use serde_json::Value;
use sqlx::Row;

use super::model::{AuditEvent, Filters, NewAuditEvent};
use crate::clock::format_ms;
use crate::store::{Position, SqlBuilder, Store, Tx, new_id};

pub async fn insert(tx: &mut Tx, now_ms: i64, event: NewAuditEvent) -> Result<String, sqlx::Error> {
    let id = new_id("evt_");
    sqlx::query(
        "INSERT INTO audit_events
             (id, actor, type, resource_type, resource_id, machine_id, payload, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id.clone())
    .bind(event.actor.as_str())
    .bind(event.event_type)
    .bind(event.resource_type)
    .bind(event.resource_id)
    .bind(event.machine_id)
    .bind(event.payload.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// Newest first; the keyset is `(created_at, id)` descending.
pub async fn list(
    store: &Store,
    filters: &Filters<'_>,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let mut sql = SqlBuilder::new(
        "SELECT id, actor, type, resource_type, resource_id, machine_id, payload, created_at
         FROM audit_events WHERE 1 = 1",
    );
    for (column, value) in [
        ("type", filters.event_type),
        ("resource_type", filters.resource_type),
        ("resource_id", filters.resource_id),
        ("machine_id", filters.machine_id),
    ] {
        if let Some(value) = value {
            sql.push(" AND ")
                .push(column)
                .push(" = ")
                .bind(value.to_string());
        }
    }
    if let Some(after) = after {
        sql.push(" AND (created_at < ")
            .bind(after.t)
            .push(" OR (created_at = ")
            .bind(after.t)
            .push(" AND id < ")
            .bind(after.id.clone())
            .push("))");
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .bind(limit);
    let rows = sql.build().fetch_all(store).await?;
    rows.iter()
        .map(|row| {
            let created_at_ms: i64 = row.try_get("created_at")?;
            let payload: String = row.try_get("payload")?;
            Ok(AuditEvent {
                id: row.try_get("id")?,
                actor: row.try_get("actor")?,
                event_type: row.try_get("type")?,
                resource_type: row.try_get("resource_type")?,
                resource_id: row.try_get("resource_id")?,
                machine_id: row.try_get("machine_id")?,
                payload: serde_json::from_str(&payload)
                    .unwrap_or_else(|_| Value::Object(Default::default())),
                created_at: format_ms(created_at_ms),
                created_at_ms,
            })
        })
        .collect()
}
