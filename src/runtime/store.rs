use sqlx::Row;
use sqlx::any::AnyRow;

use super::model::{EndpointRow, EndpointSpec, EndpointStatus};
use crate::clients::runtime::AuthType;
use crate::config::NetworkScope;
use crate::store::Position;
use crate::store::{Store, Tx};

const COLUMNS: &str =
    "id, machine_id, provider_key, source, agent_id, label, endpoint_base_url, auth_type,
     auth_token, model_alias, network_scope, probe_path, status, lease_expires_at, last_checked_at,
     last_healthy_at, health_error, created_at, updated_at";

fn decode_err(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {value:?}").into())
}

pub fn endpoint_from(row: &AnyRow) -> Result<EndpointRow, sqlx::Error> {
    let auth_type: String = row.try_get("auth_type")?;
    let scope: String = row.try_get("network_scope")?;
    let status: String = row.try_get("status")?;
    Ok(EndpointRow {
        id: row.try_get("id")?,
        machine_id: row.try_get("machine_id")?,
        provider_key: row.try_get("provider_key")?,
        source: row.try_get("source")?,
        agent_id: row.try_get("agent_id")?,
        label: row.try_get("label")?,
        endpoint_base_url: row.try_get("endpoint_base_url")?,
        auth_type: AuthType::parse(&auth_type)
            .ok_or_else(|| decode_err("auth type", &auth_type))?,
        sealed_auth_token: row.try_get("auth_token")?,
        model_alias: row.try_get("model_alias")?,
        network_scope: NetworkScope::parse(&scope)
            .ok_or_else(|| decode_err("network scope", &scope))?,
        probe_path: row.try_get("probe_path")?,
        status: EndpointStatus::parse(&status)
            .ok_or_else(|| decode_err("endpoint status", &status))?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        last_checked_at: row.try_get("last_checked_at")?,
        last_healthy_at: row.try_get("last_healthy_at")?,
        health_error: row.try_get("health_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// Who an upsert writes as.
pub enum Owner<'a> {
    Manual,
    Agent(&'a str),
}

/// Creates or replaces the endpoint of (machine, provider key). An existing endpoint is taken
/// over whatever its source. Token retention (spec §5.3): `none` clears the token; a sent token
/// replaces it; otherwise it is kept only when the auth type is unchanged. Returns the stored row
/// and whether it was created.
pub async fn upsert(
    tx: &mut Tx,
    machine_id: &str,
    owner: Owner<'_>,
    spec: &EndpointSpec,
    sealed_token: Option<String>,
    new_id: &str,
    now_ms: i64,
) -> Result<(EndpointRow, bool), sqlx::Error> {
    let (source, agent_id) = match owner {
        Owner::Manual => ("manual", None),
        Owner::Agent(id) => ("agent", Some(id.to_string())),
    };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO runtime_endpoints
             (id, machine_id, provider_key, source, agent_id, label, endpoint_base_url, auth_type,
              auth_token, model_alias, network_scope, probe_path, status, lease_expires_at,
              created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)
         ON CONFLICT (machine_id, provider_key) DO UPDATE SET
             source = excluded.source, agent_id = excluded.agent_id, label = excluded.label,
             endpoint_base_url = excluded.endpoint_base_url,
             auth_token = CASE
                 WHEN excluded.auth_type = 'none' THEN NULL
                 WHEN excluded.auth_token IS NOT NULL THEN excluded.auth_token
                 WHEN runtime_endpoints.auth_type = excluded.auth_type THEN runtime_endpoints.auth_token
                 ELSE NULL END,
             auth_type = excluded.auth_type, model_alias = excluded.model_alias,
             network_scope = excluded.network_scope, probe_path = excluded.probe_path,
             status = excluded.status, lease_expires_at = excluded.lease_expires_at,
             updated_at = excluded.updated_at
         RETURNING {COLUMNS}"
    )))
    .bind(new_id.to_string())
    .bind(machine_id.to_string())
    .bind(spec.provider_key.clone())
    .bind(source)
    .bind(agent_id)
    .bind(spec.label.clone())
    .bind(spec.endpoint_base_url.clone())
    .bind(spec.auth_type.as_str())
    .bind(sealed_token)
    .bind(spec.model_alias.clone())
    .bind(spec.network_scope.as_str())
    .bind(spec.probe_path.clone())
    .bind(spec.status.as_str())
    .bind(spec.lease_expires_at)
    .bind(now_ms)
    .fetch_one(&mut **tx)
    .await?;
    let stored = endpoint_from(&row)?;
    let created = stored.id == new_id;
    Ok((stored, created))
}

pub async fn get(
    store: &Store,
    machine_id: &str,
    provider_key: &str,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM runtime_endpoints WHERE machine_id = $1 AND provider_key = $2"
    )))
    .bind(machine_id.to_string())
    .bind(provider_key.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(endpoint_from).transpose()
}

pub async fn list_for_machine(
    store: &Store,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    crate::store::machine_page(
        store,
        "runtime_endpoints",
        COLUMNS,
        machine_id,
        after,
        limit,
        endpoint_from,
    )
    .await
}

/// Every endpoint of a machine, by provider key (a machine has one per provider).
pub async fn all_for_machine(
    store: &Store,
    machine_id: &str,
) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM runtime_endpoints WHERE machine_id = $1 ORDER BY provider_key"
    )))
    .bind(machine_id.to_string())
    .fetch_all(store)
    .await?;
    rows.iter().map(endpoint_from).collect()
}

/// The endpoints an agent owns, by provider key.
pub async fn list_for_agent(tx: &mut Tx, agent_id: &str) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM runtime_endpoints WHERE agent_id = $1 ORDER BY provider_key"
    )))
    .bind(agent_id.to_string())
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(endpoint_from).collect()
}

/// Deletes the endpoint; returns its id and source when it existed.
pub async fn delete(
    tx: &mut Tx,
    machine_id: &str,
    provider_key: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row = sqlx::query("DELETE FROM runtime_endpoints WHERE machine_id = $1 AND provider_key = $2 RETURNING id, source")
        .bind(machine_id.to_string())
        .bind(provider_key.to_string())
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| Ok((row.try_get("id")?, row.try_get("source")?)))
        .transpose()
}

/// Ends the leases of an agent's endpoints (agent revoked); returns their provider keys.
pub async fn expire_agent_leases(
    tx: &mut Tx,
    agent_id: &str,
    now_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE runtime_endpoints SET lease_expires_at = $2, updated_at = $2
         WHERE agent_id = $1 AND (lease_expires_at IS NULL OR lease_expires_at > $2)
         RETURNING provider_key",
    )
    .bind(agent_id.to_string())
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await
}

/// Lease sweeper: persists `unreachable` for passed leases. Returns (id, machine, provider key,
/// previous status) of each endpoint changed.
pub async fn sweep_expired(
    tx: &mut Tx,
    now_ms: i64,
) -> Result<Vec<(String, String, String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, machine_id, provider_key, status FROM runtime_endpoints
         WHERE lease_expires_at <= $1 AND status <> 'unreachable'",
    )
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?;
    let mut changed = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        let updated = sqlx::query(
            "UPDATE runtime_endpoints SET status = 'unreachable', last_checked_at = $2
             WHERE id = $1 AND lease_expires_at <= $2 AND status <> 'unreachable'",
        )
        .bind(id.clone())
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if updated == 1 {
            changed.push((
                id,
                row.try_get("machine_id")?,
                row.try_get("provider_key")?,
                row.try_get("status")?,
            ));
        }
    }
    Ok(changed)
}

/// Endpoints the prober covers: unexpired (or no) lease, on a non-archived machine.
pub async fn probe_candidates(store: &Store, now_ms: i64) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM runtime_endpoints e JOIN machines m ON m.id = e.machine_id
         WHERE m.status <> 'archived' AND (e.lease_expires_at IS NULL OR e.lease_expires_at > $1)
         ORDER BY e.id",
        COLUMNS
            .split(',')
            .map(|c| format!("e.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    )))
    .bind(now_ms)
    .fetch_all(store)
    .await?;
    rows.iter().map(endpoint_from).collect()
}

/// Records a probe result. Returns the previous status when the status changed.
pub async fn record_probe(
    tx: &mut Tx,
    id: &str,
    status: EndpointStatus,
    health_error: Option<&str>,
    healthy: bool,
    now_ms: i64,
) -> Result<Option<String>, sqlx::Error> {
    let previous: Option<String> =
        sqlx::query_scalar("SELECT status FROM runtime_endpoints WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?;
    let Some(previous) = previous else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE runtime_endpoints SET status = $2, health_error = $3, last_checked_at = $4,
             last_healthy_at = CASE WHEN $5 = 1 THEN $4 ELSE last_healthy_at END
         WHERE id = $1",
    )
    .bind(id.to_string())
    .bind(status.as_str())
    .bind(health_error.map(str::to_string))
    .bind(now_ms)
    .bind(i64::from(healthy))
    .execute(&mut **tx)
    .await?;
    Ok((previous != status.as_str()).then_some(previous))
}
