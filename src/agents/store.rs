use std::sync::LazyLock;

use sqlx::any::AnyRow;

use super::model::{AgentStatus, MachineAgent};
use crate::clock::format_ms;
use crate::machines::{self, model::Machine};
use crate::store::Position;
use crate::store::{Columns, Conn, Store, Tx, qualified};

/// Every column, in the order `agent_at` reads them.
const COLUMNS: &str = "id, machine_id, label, allowed_provider_keys, status, token_hash, last_seen_at, created_at, updated_at";

/// The agent in `cols` (its `COLUMNS`, in order).
fn agent_at(cols: &mut Columns<'_>) -> Result<MachineAgent, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let label = cols.take()?;
    let allowed_provider_keys = cols.take_json()?;
    let status: &str = cols.take()?;
    let status = AgentStatus::parse(status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown agent status {status:?}").into()))?;
    let token_hash = cols.take()?;
    let last_seen: Option<i64> = cols.take()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(MachineAgent {
        id,
        machine_id,
        label,
        allowed_provider_keys,
        status,
        has_agent_token: status != AgentStatus::Revoked,
        last_seen_at: last_seen.map(format_ms),
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        agent_token: None,
        provisioning_token: None,
        created_at_ms: created_at,
        token_hash,
    })
}

fn agent_from(row: &AnyRow) -> Result<MachineAgent, sqlx::Error> {
    agent_at(&mut Columns::new(row))
}

pub async fn insert(tx: &mut Tx, a: &MachineAgent) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO machine_agents (id, machine_id, label, allowed_provider_keys, status, token_hash, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
    )
    .bind(a.id.clone())
    .bind(a.machine_id.clone())
    .bind(a.label.clone())
    .bind(serde_json::to_string(&a.allowed_provider_keys).expect("strings serialise"))
    .bind(a.status.as_str())
    .bind(a.token_hash.clone())
    .bind(a.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get(store: &Store, id: &str) -> Result<Option<MachineAgent>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM machine_agents WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(agent_from).transpose()
}

/// The agent and its machine in one statement (the heartbeat's read), on a held connection.
pub async fn get_with_machine(
    conn: &mut Conn,
    id: &str,
) -> Result<Option<(MachineAgent, Machine)>, sqlx::Error> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "SELECT {}, {} FROM machine_agents a JOIN machines m ON m.id = a.machine_id WHERE a.id = $1",
            qualified("a", COLUMNS),
            qualified("m", machines::store::COLUMNS),
        )
    });
    let row = sqlx::query(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref()
        .map(|row| {
            let mut cols = Columns::new(row);
            Ok((
                agent_at(&mut cols)?,
                machines::store::machine_at(&mut cols)?,
            ))
        })
        .transpose()
}

pub async fn list_for_machine(
    store: &Store,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<MachineAgent>, sqlx::Error> {
    crate::store::machine_page(
        store,
        "machine_agents",
        COLUMNS,
        machine_id,
        after,
        limit,
        agent_from,
    )
    .await
}

/// Revokes the agent unless it already was; `false` when nothing changed.
pub async fn revoke(tx: &mut Tx, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE machine_agents SET status = 'revoked', updated_at = $2 WHERE id = $1 AND status <> 'revoked'",
    )
    .bind(id.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Marks a heartbeat: `active`, seen now. `false` when the agent was revoked meanwhile.
pub async fn touch(tx: &mut Tx, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE machine_agents SET status = 'active', last_seen_at = $2, updated_at = $2
         WHERE id = $1 AND status <> 'revoked'",
    )
    .bind(id.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}
