//! Tasks, routes, outcomes and runs (`tasks`, `task_routes`, `task_outcomes`, `task_runs`).

use serde_json::Value;

use super::model::{
    OutcomeRecord, OutcomeStatus, RouteRecord, RouteStatus, RunRecord, RunStatus, TaskRecord,
    TaskStatus,
};
use crate::catalog::model::{ExecutionMode, IntegrationStatus, ServiceType};
use crate::clock::format_ms;
use crate::store::{Columns, Position, SqlBuilder, Store, Tx, json};

fn unknown(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {value:?}").into())
}

const TASK_COLUMNS: &str = "id, machine_id, service_type, operation, task_type, status, input,
     constraints, discovery, route_id, outcome_id, order_id, created_at, updated_at";

fn task_at(cols: &mut Columns<'_>) -> Result<TaskRecord, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let service_type: &str = cols.take()?;
    let service_type =
        ServiceType::parse(service_type).ok_or_else(|| unknown("service type", service_type))?;
    let operation = cols.take()?;
    let task_type = cols.take()?;
    let status: &str = cols.take()?;
    let status = TaskStatus::parse(status).ok_or_else(|| unknown("task status", status))?;
    let input = cols.take_json()?;
    let constraints = cols.take_json()?;
    let discovery = cols.take_json()?;
    let route_id = cols.take()?;
    let outcome_id = cols.take()?;
    let order_id = cols.take()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(TaskRecord {
        id,
        machine_id,
        service_type,
        operation,
        task_type,
        status,
        input,
        constraints,
        discovery,
        route_id,
        outcome_id,
        order_id,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
    })
}

pub async fn insert_task(tx: &mut Tx, t: &TaskRecord) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO tasks ({TASK_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)"
    )))
    .bind(t.id.clone())
    .bind(t.machine_id.clone())
    .bind(t.service_type.as_str())
    .bind(t.operation.clone())
    .bind(t.task_type.clone())
    .bind(t.status.as_str())
    .bind(Value::Object(t.input.clone()).to_string())
    .bind(json(&t.constraints))
    .bind(json(&t.discovery))
    .bind(t.route_id.clone())
    .bind(t.outcome_id.clone())
    .bind(t.order_id.clone())
    .bind(t.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the task's mutable fields if its status is still `expected` (compare-and-set);
/// `false` when another request changed it first.
pub async fn update_task(
    tx: &mut Tx,
    t: &TaskRecord,
    expected: TaskStatus,
    updated_at: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE tasks SET status = $3, input = $4, constraints = $5, discovery = $6,
             route_id = $7, outcome_id = $8, order_id = $9, updated_at = $10
         WHERE id = $1 AND status = $2",
    )
    .bind(t.id.clone())
    .bind(expected.as_str())
    .bind(t.status.as_str())
    .bind(Value::Object(t.input.clone()).to_string())
    .bind(json(&t.constraints))
    .bind(json(&t.discovery))
    .bind(t.route_id.clone())
    .bind(t.outcome_id.clone())
    .bind(t.order_id.clone())
    .bind(updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn task(store: &Store, id: &str) -> Result<Option<TaskRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref()
        .map(|r| task_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn task_in(tx: &mut Tx, id: &str) -> Result<Option<TaskRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(|r| task_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn tasks_of(
    store: &Store,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<TaskRecord>, sqlx::Error> {
    crate::store::machine_page(
        store,
        "tasks",
        TASK_COLUMNS,
        machine_id,
        after,
        limit,
        |r| task_at(&mut Columns::new(r)),
    )
    .await
}

const ROUTE_COLUMNS: &str = "id, machine_id, task_id, selected_skill_key, selected_service_id,
     execution_mode, integration_status, status, reason, score, fallback_chain, handoff,
     resolution, order_id, created_at, updated_at";

fn route_at(cols: &mut Columns<'_>) -> Result<RouteRecord, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let task_id = cols.take()?;
    let selected_skill_key = cols.take()?;
    let selected_service_id = cols.take()?;
    let mode: &str = cols.take()?;
    let execution_mode = ExecutionMode::parse(mode).ok_or_else(|| unknown("mode", mode))?;
    let integration: &str = cols.take()?;
    let integration_status =
        IntegrationStatus::parse(integration).ok_or_else(|| unknown("status", integration))?;
    let status: &str = cols.take()?;
    let status = RouteStatus::parse(status).ok_or_else(|| unknown("route status", status))?;
    let reason = cols.take()?;
    let score = cols.take()?;
    let fallback_chain = cols.take_json()?;
    let handoff: Option<&str> = cols.take()?;
    let handoff = handoff
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let resolution = cols.take_json()?;
    let order_id = cols.take()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(RouteRecord {
        id,
        machine_id,
        task_id,
        selected_skill_key,
        selected_service_id,
        execution_mode,
        integration_status,
        status,
        reason,
        score,
        fallback_chain,
        handoff,
        order_id,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
        resolution,
    })
}

/// Inserts a route, or updates the status of one already stored.
pub async fn save_route(tx: &mut Tx, r: &RouteRecord, updated_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO task_routes ({ROUTE_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason,
             updated_at = excluded.updated_at"
    )))
    .bind(r.id.clone())
    .bind(r.machine_id.clone())
    .bind(r.task_id.clone())
    .bind(r.selected_skill_key.clone())
    .bind(r.selected_service_id.clone())
    .bind(r.execution_mode.as_str())
    .bind(r.integration_status.as_str())
    .bind(r.status.as_str())
    .bind(r.reason.clone())
    .bind(r.score)
    .bind(json(&r.fallback_chain))
    .bind(r.handoff.as_ref().map(json))
    .bind(r.resolution.to_string())
    .bind(r.order_id.clone())
    .bind(r.created_at_ms)
    .bind(updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn route(store: &Store, id: &str) -> Result<Option<RouteRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROUTE_COLUMNS} FROM task_routes WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref()
        .map(|r| route_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn route_in(tx: &mut Tx, id: &str) -> Result<Option<RouteRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ROUTE_COLUMNS} FROM task_routes WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(|r| route_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn routes_of(
    store: &Store,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<RouteRecord>, sqlx::Error> {
    crate::store::machine_page(
        store,
        "task_routes",
        ROUTE_COLUMNS,
        machine_id,
        after,
        limit,
        |r| route_at(&mut Columns::new(r)),
    )
    .await
}

const OUTCOME_COLUMNS: &str = "id, machine_id, task_id, route_id, status, skill_key, service_id,
     execution_mode, receipt_ref, logs_ref, external_ref, error_code, error_message, result,
     created_at, updated_at";

fn outcome_at(cols: &mut Columns<'_>) -> Result<OutcomeRecord, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let task_id = cols.take()?;
    let route_id = cols.take()?;
    let status: &str = cols.take()?;
    let status = OutcomeStatus::parse(status).ok_or_else(|| unknown("outcome status", status))?;
    let skill_key = cols.take()?;
    let service_id = cols.take()?;
    let mode: &str = cols.take()?;
    let execution_mode = ExecutionMode::parse(mode).ok_or_else(|| unknown("mode", mode))?;
    let receipt_ref = cols.take()?;
    let logs_ref = cols.take()?;
    let external_ref = cols.take()?;
    let error_code = cols.take()?;
    let error_message = cols.take()?;
    let result: Option<&str> = cols.take()?;
    let result = result
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(OutcomeRecord {
        id,
        machine_id,
        task_id,
        route_id,
        status,
        skill_key,
        service_id,
        execution_mode,
        receipt_ref,
        logs_ref,
        external_ref,
        error_code,
        error_message,
        result,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
    })
}

pub async fn save_outcome(
    tx: &mut Tx,
    o: &OutcomeRecord,
    updated_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO task_outcomes ({OUTCOME_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status,
             receipt_ref = excluded.receipt_ref, logs_ref = excluded.logs_ref,
             external_ref = excluded.external_ref, error_code = excluded.error_code,
             error_message = excluded.error_message, result = excluded.result,
             updated_at = excluded.updated_at"
    )))
    .bind(o.id.clone())
    .bind(o.machine_id.clone())
    .bind(o.task_id.clone())
    .bind(o.route_id.clone())
    .bind(o.status.as_str())
    .bind(o.skill_key.clone())
    .bind(o.service_id.clone())
    .bind(o.execution_mode.as_str())
    .bind(o.receipt_ref.clone())
    .bind(o.logs_ref.clone())
    .bind(o.external_ref.clone())
    .bind(o.error_code.clone())
    .bind(o.error_message.clone())
    .bind(o.result.as_ref().map(Value::to_string))
    .bind(o.created_at_ms)
    .bind(updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn outcome(store: &Store, id: &str) -> Result<Option<OutcomeRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {OUTCOME_COLUMNS} FROM task_outcomes WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref()
        .map(|r| outcome_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn outcome_in(tx: &mut Tx, id: &str) -> Result<Option<OutcomeRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {OUTCOME_COLUMNS} FROM task_outcomes WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(|r| outcome_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn outcomes_of(
    store: &Store,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<OutcomeRecord>, sqlx::Error> {
    crate::store::machine_page(
        store,
        "task_outcomes",
        OUTCOME_COLUMNS,
        machine_id,
        after,
        limit,
        |r| outcome_at(&mut Columns::new(r)),
    )
    .await
}

const RUN_COLUMNS: &str = "id, machine_id, task_id, route_id, outcome_id, status, execution_mode,
     skill_key, service_id, summary, order_id, created_at, updated_at";

fn run_at(cols: &mut Columns<'_>) -> Result<RunRecord, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let task_id = cols.take()?;
    let route_id = cols.take()?;
    let outcome_id = cols.take()?;
    let status: &str = cols.take()?;
    let status = RunStatus::parse(status).ok_or_else(|| unknown("run status", status))?;
    let mode: Option<&str> = cols.take()?;
    let execution_mode = mode
        .map(|m| ExecutionMode::parse(m).ok_or_else(|| unknown("mode", m)))
        .transpose()?;
    let skill_key = cols.take()?;
    let service_id = cols.take()?;
    let summary = cols.take()?;
    let order_id = cols.take()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(RunRecord {
        id,
        machine_id,
        task_id,
        route_id,
        outcome_id,
        status,
        execution_mode,
        skill_key,
        service_id,
        summary,
        order_id,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
    })
}

pub async fn save_run(tx: &mut Tx, r: &RunRecord, updated_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO task_runs ({RUN_COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, summary = excluded.summary,
             outcome_id = excluded.outcome_id, updated_at = excluded.updated_at"
    )))
    .bind(r.id.clone())
    .bind(r.machine_id.clone())
    .bind(r.task_id.clone())
    .bind(r.route_id.clone())
    .bind(r.outcome_id.clone())
    .bind(r.status.as_str())
    .bind(r.execution_mode.map(ExecutionMode::as_str))
    .bind(r.skill_key.clone())
    .bind(r.service_id.clone())
    .bind(r.summary.clone())
    .bind(r.order_id.clone())
    .bind(r.created_at_ms)
    .bind(updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn run(store: &Store, id: &str) -> Result<Option<RunRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM task_runs WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref()
        .map(|r| run_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn run_of_outcome(
    tx: &mut Tx,
    outcome_id: &str,
) -> Result<Option<RunRecord>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM task_runs WHERE outcome_id = $1"
    )))
    .bind(outcome_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(|r| run_at(&mut Columns::new(r)))
        .transpose()
}

/// The exact-match filters of `GET /runs`.
#[derive(Debug, Default)]
pub struct RunFilters<'a> {
    pub status: Option<RunStatus>,
    pub skill_key: Option<&'a str>,
    pub service_id: Option<&'a str>,
    pub execution_mode: Option<ExecutionMode>,
}

pub async fn runs_of(
    store: &Store,
    machine_id: &str,
    filters: &RunFilters<'_>,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<RunRecord>, sqlx::Error> {
    let mut sql = SqlBuilder::new(&format!(
        "SELECT {RUN_COLUMNS} FROM task_runs WHERE machine_id = "
    ));
    sql.bind(machine_id.to_string());
    if let Some(status) = filters.status {
        sql.push(" AND status = ").bind(status.as_str());
    }
    if let Some(key) = filters.skill_key {
        sql.push(" AND skill_key = ").bind(key.to_string());
    }
    if let Some(id) = filters.service_id {
        sql.push(" AND service_id = ").bind(id.to_string());
    }
    if let Some(mode) = filters.execution_mode {
        sql.push(" AND execution_mode = ").bind(mode.as_str());
    }
    if let Some(after) = after {
        sql.push(" AND (created_at > ")
            .bind(after.t)
            .push(" OR (created_at = ")
            .bind(after.t)
            .push(" AND id > ")
            .bind(after.id.clone())
            .push("))");
    }
    sql.push(" ORDER BY created_at, id LIMIT ").bind(limit);
    let rows = sql.build().fetch_all(store).await?;
    rows.iter().map(|r| run_at(&mut Columns::new(r))).collect()
}
