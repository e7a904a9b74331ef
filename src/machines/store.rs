use sqlx::any::AnyRow;

use super::model::{Machine, MachineStatus};
use crate::clock::format_ms;
use crate::store::Position;
use crate::store::{Columns, Store, Tx, json};

/// Every column, in the order `machine_at` reads them.
pub(crate) const COLUMNS: &str = "id, display_name, status, owner_id, identity_ref, identity_proof, machine_type,
     runtime_profile, capabilities, labels, policy_ids, skill_keys, created_at, updated_at, revision";

/// The machine in `cols` (its `COLUMNS`, in order).
pub(crate) fn machine_at(cols: &mut Columns<'_>) -> Result<Machine, sqlx::Error> {
    let id = cols.take()?;
    let display_name = cols.take()?;
    let status: &str = cols.take()?;
    let status = MachineStatus::parse(status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown machine status {status:?}").into()))?;
    let owner_id = cols.take()?;
    let identity_ref = cols.take()?;
    let identity_proof: Option<&str> = cols.take()?;
    let identity_proof = identity_proof
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let machine_type = cols.take()?;
    let runtime_profile = cols.take()?;
    let capabilities = cols.take_json()?;
    let labels = cols.take_json()?;
    let policy_ids = cols.take_json()?;
    let skill_keys = cols.take_json()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(Machine {
        id,
        display_name,
        status,
        owner_id,
        identity_ref,
        identity_proof,
        machine_type,
        runtime_profile,
        capabilities,
        labels,
        policy_ids,
        skill_keys,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
        revision: cols.take()?,
    })
}

fn machine_from(row: &AnyRow) -> Result<Machine, sqlx::Error> {
    machine_at(&mut Columns::new(row))
}

/// Inserts `machine`; a unique violation means a live machine already has its identity.
pub async fn insert(tx: &mut Tx, m: &Machine, created_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO machines ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, 0)"
    )))
    .bind(m.id.clone())
    .bind(m.display_name.clone())
    .bind(m.status.as_str())
    .bind(m.owner_id.clone())
    .bind(m.identity_ref.clone())
    .bind(m.identity_proof.as_ref().map(json))
    .bind(m.machine_type.clone())
    .bind(m.runtime_profile.clone())
    .bind(json(&m.capabilities))
    .bind(json(&m.labels))
    .bind(json(&m.policy_ids))
    .bind(json(&m.skill_keys))
    .bind(created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes every mutable field if the row is still at `m.revision`; `false` if someone else
/// changed it first.
pub async fn update(tx: &mut Tx, m: &Machine, updated_at: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE machines SET display_name = $3, status = $4, owner_id = $5, identity_proof = $6,
             machine_type = $7, runtime_profile = $8, capabilities = $9, labels = $10,
             policy_ids = $11, skill_keys = $12, updated_at = $13, revision = revision + 1
         WHERE id = $1 AND revision = $2",
    )
    .bind(m.id.clone())
    .bind(m.revision)
    .bind(m.display_name.clone())
    .bind(m.status.as_str())
    .bind(m.owner_id.clone())
    .bind(m.identity_proof.as_ref().map(json))
    .bind(m.machine_type.clone())
    .bind(m.runtime_profile.clone())
    .bind(json(&m.capabilities))
    .bind(json(&m.labels))
    .bind(json(&m.policy_ids))
    .bind(json(&m.skill_keys))
    .bind(updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Machine>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM machines WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(machine_from).transpose()
}

/// Non-archived machines after `after`, oldest first.
pub async fn list_live(
    store: &Store,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<Machine>, sqlx::Error> {
    let (t, id) = after.map_or((i64::MIN, String::new()), |p| (p.t, p.id.clone()));
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM machines
         WHERE status <> 'archived' AND (created_at > $1 OR (created_at = $1 AND id > $2))
         ORDER BY created_at, id LIMIT $3"
    )))
    .bind(t)
    .bind(id)
    .bind(limit)
    .fetch_all(store)
    .await?;
    rows.iter().map(machine_from).collect()
}

/// Whether a non-archived machine already has `identity_ref`.
pub async fn live_identity_exists(store: &Store, identity_ref: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar(
        "SELECT id FROM machines WHERE identity_ref = $1 AND status <> 'archived'",
    )
    .bind(identity_ref.to_string())
    .fetch_optional(store)
    .await?;
    Ok(found.is_some())
}
