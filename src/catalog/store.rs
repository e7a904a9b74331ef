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

/// The stored config of `skill_key`, read in `tx` (and locked there on PostgreSQL) so that a
/// change and its audit event see the row they replace.
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

pub async fn upsert(tx: &mut Tx, row: &ConfigRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO skill_configs (skill_key, enabled, settings, credentials, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (skill_key) DO UPDATE SET
             enabled = excluded.enabled, settings = excluded.settings,
             credentials = excluded.credentials, updated_at = excluded.updated_at",
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
