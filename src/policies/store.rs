//! Policy rows (`policies`).

use super::model::{BudgetCap, Policy};
use crate::clock::format_ms;
use crate::store::{Columns, Position, SqlBuilder, Store, Tx, json};

const COLUMNS: &str = "id, name, allowed_skill_keys, denied_skill_keys, budget_cap, region_rules,
     native_only, handoff_allowed, required_capabilities, created_at, updated_at, revision";

fn policy_at(cols: &mut Columns<'_>) -> Result<Policy, sqlx::Error> {
    let id = cols.take()?;
    let name = cols.take()?;
    let allowed_skill_keys = cols.take_json()?;
    let denied_skill_keys = cols.take_json()?;
    let budget_cap: Option<&str> = cols.take()?;
    let budget_cap: Option<BudgetCap> = budget_cap
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let region_rules = cols.take_json()?;
    let native_only = cols.take::<i64>()? != 0;
    let handoff_allowed = cols.take::<i64>()? != 0;
    let required_capabilities = cols.take_json()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(Policy {
        id,
        name,
        allowed_skill_keys,
        denied_skill_keys,
        budget_cap,
        region_rules,
        native_only,
        handoff_allowed,
        required_capabilities,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
        revision: cols.take()?,
    })
}

fn policy_from(row: &sqlx::any::AnyRow) -> Result<Policy, sqlx::Error> {
    policy_at(&mut Columns::new(row))
}

pub async fn insert(tx: &mut Tx, p: &Policy) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO policies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 0)"
    )))
    .bind(p.id.clone())
    .bind(p.name.clone())
    .bind(json(&p.allowed_skill_keys))
    .bind(json(&p.denied_skill_keys))
    .bind(p.budget_cap.as_ref().map(json))
    .bind(json(&p.region_rules))
    .bind(i64::from(p.native_only))
    .bind(i64::from(p.handoff_allowed))
    .bind(json(&p.required_capabilities))
    .bind(p.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes every field if the row is still at `p.revision`; `false` if it changed first.
pub async fn update(tx: &mut Tx, p: &Policy, updated_at: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE policies SET name = $3, allowed_skill_keys = $4, denied_skill_keys = $5,
             budget_cap = $6, region_rules = $7, native_only = $8, handoff_allowed = $9,
             required_capabilities = $10, updated_at = $11, revision = revision + 1
         WHERE id = $1 AND revision = $2",
    )
    .bind(p.id.clone())
    .bind(p.revision)
    .bind(p.name.clone())
    .bind(json(&p.allowed_skill_keys))
    .bind(json(&p.denied_skill_keys))
    .bind(p.budget_cap.as_ref().map(json))
    .bind(json(&p.region_rules))
    .bind(i64::from(p.native_only))
    .bind(i64::from(p.handoff_allowed))
    .bind(json(&p.required_capabilities))
    .bind(updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn get(store: &Store, id: &str) -> Result<Option<Policy>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM policies WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(policy_from).transpose()
}

/// The policies among `ids` that exist, in no particular order.
pub async fn get_many(store: &Store, ids: &[String]) -> Result<Vec<Policy>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut sql = SqlBuilder::new(&format!("SELECT {COLUMNS} FROM policies WHERE id IN ("));
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(id.clone());
    }
    sql.push(")");
    let rows = sql.build().fetch_all(store).await?;
    rows.iter().map(policy_from).collect()
}

pub async fn list(
    store: &Store,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<Policy>, sqlx::Error> {
    let (t, id) = after.map_or((i64::MIN, String::new()), |p| (p.t, p.id.clone()));
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM policies WHERE created_at > $1 OR (created_at = $1 AND id > $2)
         ORDER BY created_at, id LIMIT $3"
    )))
    .bind(t)
    .bind(id)
    .bind(limit)
    .fetch_all(store)
    .await?;
    rows.iter().map(policy_from).collect()
}
