//! Skill config rows (`skill_configs`).

use serde_json::{Map, Value};

use crate::store::{Columns, Store, Tx};

const COLUMNS: &str = "skill_key, enabled, settings, credentials, updated_at";

/// A stored skill config.
#[derive(Debug, Clone)]
pub struct ConfigRow {
    pub skill_key: String,
    pub enabled: bool,
    pub settings: Map<String, Value>,
    /// The credential set, sealed; never leaves the server.
    pub sealed_credentials: Option<String>,
    pub updated_at: i64,
}

fn config_at(cols: &mut Columns<'_>) -> Result<ConfigRow, sqlx::Error> {
    Ok(ConfigRow {
        skill_key: cols.take()?,
        enabled: cols.take::<i64>()? != 0,
        settings: cols.take_json()?,
        sealed_credentials: cols.take()?,
        updated_at: cols.take()?,
    })
}

fn config_from(row: &sqlx::any::AnyRow) -> Result<ConfigRow, sqlx::Error> {
    config_at(&mut Columns::new(row))
}

pub async fn get(store: &Store, skill_key: &str) -> Result<Option<ConfigRow>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM skill_configs WHERE skill_key = $1"
    )))
    .bind(skill_key.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(config_from).transpose()
}

/// Every stored config (one per configured skill: a small table).
pub async fn all(store: &Store) -> Result<Vec<ConfigRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM skill_configs ORDER BY skill_key"
    )))
    .fetch_all(store)
    .await?;
    rows.iter().map(config_from).collect()
}

/// The stored config of `skill_key`, read in `tx` after `Store::lock_row_by` locked it, so
/// that a change and its audit event see the row they replace.
pub async fn get_for_update(
    tx: &mut Tx,
    skill_key: &str,
) -> Result<Option<ConfigRow>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM skill_configs WHERE skill_key = $1"
    )))
    .bind(skill_key.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(config_from).transpose()
}

/// Inserts the first config of a skill; `false` when another writer inserted it first.
pub async fn insert_new(tx: &mut Tx, row: &ConfigRow) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO skill_configs (skill_key, enabled, settings, credentials, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (skill_key) DO NOTHING",
    )
    .bind(row.skill_key.clone())
    .bind(i64::from(row.enabled))
    .bind(Value::Object(row.settings.clone()).to_string())
    .bind(row.sealed_credentials.clone())
    .bind(row.updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Replaces a skill's config (its row locked in `tx`).
pub async fn update(tx: &mut Tx, row: &ConfigRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE skill_configs SET enabled = $2, settings = $3, credentials = $4, updated_at = $5
         WHERE skill_key = $1",
    )
    .bind(row.skill_key.clone())
    .bind(i64::from(row.enabled))
    .bind(Value::Object(row.settings.clone()).to_string())
    .bind(row.sealed_credentials.clone())
    .bind(row.updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
