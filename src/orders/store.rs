//! Orders and disputes (`market_orders`, `order_disputes`).

use rust_decimal::Decimal;
use serde_json::Value;

use super::model::{DisputeStatus, MarketOrder, OrderDispute, OrderStatus};
use crate::catalog::model::{ExecutionMode, IntegrationStatus, ServiceType};
use crate::clock::format_ms;
use crate::store::{Columns, Position, SqlBuilder, Store, Tx, json};

#[derive(Debug, Clone, Copy)]
pub enum OrdersOf<'a> {
    Machine(&'a str),
    Pairing(&'a str),
}

fn unknown(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} {value:?}").into())
}

const COLUMNS: &str = "id, machine_id, agent_pairing_id, search_id, quote_id, service_id,
     skill_key, provider_key, service_type, operation, execution_mode, integration_status, status,
     input, budget, amount, currency, payment, service_snapshot, task_id, route_id, run_id,
     outcome_id, handoff, error_message, cancel_reason, created_at, updated_at";

fn order_at(cols: &mut Columns<'_>) -> Result<MarketOrder, sqlx::Error> {
    let id = cols.take()?;
    let machine_id = cols.take()?;
    let agent_pairing_id = cols.take()?;
    let search_id = cols.take()?;
    let quote_id = cols.take()?;
    let service_id = cols.take()?;
    let skill_key = cols.take()?;
    let provider_key = cols.take()?;
    let service_type: &str = cols.take()?;
    let service_type =
        ServiceType::parse(service_type).ok_or_else(|| unknown("service type", service_type))?;
    let operation = cols.take()?;
    let mode: &str = cols.take()?;
    let execution_mode = ExecutionMode::parse(mode).ok_or_else(|| unknown("mode", mode))?;
    let integration: &str = cols.take()?;
    let integration_status =
        IntegrationStatus::parse(integration).ok_or_else(|| unknown("status", integration))?;
    let status: &str = cols.take()?;
    let status = OrderStatus::parse(status).ok_or_else(|| unknown("order status", status))?;
    let input = cols.take_json()?;
    let budget: Option<&str> = cols.take()?;
    let budget = budget
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let amount: &str = cols.take()?;
    let exact_amount: Decimal =
        crate::money::parse(amount).ok_or_else(|| unknown("amount", amount))?;
    let currency = cols.take()?;
    let payment = cols.take_json()?;
    let service_snapshot = cols.take_json()?;
    let task_id = cols.take()?;
    let route_id = cols.take()?;
    let run_id = cols.take()?;
    let outcome_id = cols.take()?;
    let handoff: Option<&str> = cols.take()?;
    let handoff = handoff
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let error_message = cols.take()?;
    let cancel_reason = cols.take()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(MarketOrder {
        id,
        machine_id,
        agent_pairing_id,
        search_id,
        quote_id,
        service_id,
        skill_key,
        provider_key,
        service_type,
        operation,
        execution_mode,
        integration_status,
        status,
        input,
        budget,
        amount: crate::money::to_f64(exact_amount),
        currency,
        payment,
        service_snapshot,
        task_id,
        route_id,
        run_id,
        outcome_id,
        handoff,
        error_message,
        cancel_reason,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        exact_amount,
        created_at_ms: created_at,
        updated_at_ms: updated_at,
    })
}

fn order_from(row: &sqlx::any::AnyRow) -> Result<MarketOrder, sqlx::Error> {
    order_at(&mut Columns::new(row))
}

pub async fn insert(tx: &mut Tx, o: &MarketOrder) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_orders ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
                 $19, $20, $21, $22, $23, $24, $25, $26, $27, $27)"
    )))
    .bind(o.id.clone())
    .bind(o.machine_id.clone())
    .bind(o.agent_pairing_id.clone())
    .bind(o.search_id.clone())
    .bind(o.quote_id.clone())
    .bind(o.service_id.clone())
    .bind(o.skill_key.clone())
    .bind(o.provider_key.clone())
    .bind(o.service_type.as_str())
    .bind(o.operation.clone())
    .bind(o.execution_mode.as_str())
    .bind(o.integration_status.as_str())
    .bind(o.status.as_str())
    .bind(Value::Object(o.input.clone()).to_string())
    .bind(o.budget.as_ref().map(json))
    .bind(o.exact_amount.to_string())
    .bind(o.currency.clone())
    .bind(json(&o.payment))
    .bind(json(&o.service_snapshot))
    .bind(o.task_id.clone())
    .bind(o.route_id.clone())
    .bind(o.run_id.clone())
    .bind(o.outcome_id.clone())
    .bind(o.handoff.as_ref().map(json))
    .bind(o.error_message.clone())
    .bind(o.cancel_reason.clone())
    .bind(o.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the order's mutable fields if its status is still `expected` (compare-and-set);
/// `false` when another request changed it first.
pub async fn update(
    tx: &mut Tx,
    o: &MarketOrder,
    expected: OrderStatus,
    updated_at: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE market_orders SET status = $3, input = $4, task_id = $5, route_id = $6,
             run_id = $7, outcome_id = $8, handoff = $9, error_message = $10,
             cancel_reason = $11, updated_at = $12
         WHERE id = $1 AND status = $2",
    )
    .bind(o.id.clone())
    .bind(expected.as_str())
    .bind(o.status.as_str())
    .bind(Value::Object(o.input.clone()).to_string())
    .bind(o.task_id.clone())
    .bind(o.route_id.clone())
    .bind(o.run_id.clone())
    .bind(o.outcome_id.clone())
    .bind(o.handoff.as_ref().map(json))
    .bind(o.error_message.clone())
    .bind(o.cancel_reason.clone())
    .bind(updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn get(store: &Store, id: &str) -> Result<Option<MarketOrder>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM market_orders WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(order_from).transpose()
}

/// The order, read in `tx` (after [`Store::lock_row`] on it).
pub async fn get_in(tx: &mut Tx, id: &str) -> Result<Option<MarketOrder>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM market_orders WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(order_from).transpose()
}

pub async fn list_for_machine(
    store: &Store,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<MarketOrder>, sqlx::Error> {
    crate::store::machine_page(
        store,
        "market_orders",
        COLUMNS,
        machine_id,
        after,
        limit,
        order_from,
    )
    .await
}

/// The amounts of a pairing's orders created since `since_ms` that count against its daily
/// limit (cancelled and failed ones do not), read in the transaction that holds the pairing's
/// lock.
pub async fn spent_since(
    tx: &mut Tx,
    pairing_id: &str,
    since_ms: i64,
) -> Result<Vec<Decimal>, sqlx::Error> {
    let amounts: Vec<String> = sqlx::query_scalar(
        "SELECT amount FROM market_orders
         WHERE agent_pairing_id = $1 AND created_at >= $2 AND status NOT IN ('cancelled', 'failed')",
    )
    .bind(pairing_id.to_string())
    .bind(since_ms)
    .fetch_all(&mut **tx)
    .await?;
    Ok(amounts
        .iter()
        .filter_map(|a| crate::money::parse(a))
        .collect())
}

/// Orders of `of` in a non-terminal state, and handoff orders whose payment is held or release
/// pending (§1.1).
pub async fn count_open(store: &Store, of: OrdersOf<'_>) -> Result<i64, sqlx::Error> {
    let (column, id) = match of {
        OrdersOf::Machine(id) => ("o.machine_id", id),
        OrdersOf::Pairing(id) => ("o.agent_pairing_id", id),
    };
    let mut sql = SqlBuilder::new(
        "SELECT COUNT(*) FROM market_orders o LEFT JOIN market_payments p ON p.order_id = o.id WHERE ",
    );
    sql.push(column).push(" = ").bind(id.to_string());
    sql.push(
        " AND (o.status IN ('created', 'payment_pending', 'ready', 'executing', 'delivered', 'disputed')
              OR (o.status = 'handoff' AND p.status IN ('held', 'release_pending')))",
    );
    let row = sql.build().fetch_one(store).await?;
    sqlx::Row::try_get(&row, 0)
}

/// Orders left `executing` since before `before_ms` (an execution interrupted by a crash).
pub async fn interrupted(store: &Store, before_ms: i64) -> Result<Vec<MarketOrder>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM market_orders WHERE status = 'executing' AND updated_at < $1
         ORDER BY updated_at LIMIT 100"
    )))
    .bind(before_ms)
    .fetch_all(store)
    .await?;
    rows.iter().map(order_from).collect()
}

const DISPUTE_COLUMNS: &str =
    "id, order_id, machine_id, status, reason, evidence, created_at, updated_at";

fn dispute_at(cols: &mut Columns<'_>) -> Result<OrderDispute, sqlx::Error> {
    let id = cols.take()?;
    let order_id = cols.take()?;
    let machine_id = cols.take()?;
    let status: &str = cols.take()?;
    let status = DisputeStatus::parse(status).ok_or_else(|| unknown("dispute status", status))?;
    let reason = cols.take()?;
    let evidence = cols.take_json()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(OrderDispute {
        id,
        order_id,
        machine_id,
        status,
        reason,
        evidence,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
    })
}

pub async fn insert_dispute(tx: &mut Tx, d: &OrderDispute) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO order_disputes ({DISPUTE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
    )))
    .bind(d.id.clone())
    .bind(d.order_id.clone())
    .bind(d.machine_id.clone())
    .bind(d.status.as_str())
    .bind(d.reason.clone())
    .bind(Value::Object(d.evidence.clone()).to_string())
    .bind(d.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Marks the order's open disputes resolved; the ids resolved.
pub async fn resolve_disputes(
    tx: &mut Tx,
    order_id: &str,
    now_ms: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE order_disputes SET status = 'resolved', updated_at = $2
         WHERE order_id = $1 AND status = 'open' RETURNING id",
    )
    .bind(order_id.to_string())
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await
}

#[allow(dead_code)]
pub async fn disputes_of(store: &Store, order_id: &str) -> Result<Vec<OrderDispute>, sqlx::Error> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {DISPUTE_COLUMNS} FROM order_disputes WHERE order_id = $1 ORDER BY created_at, id"
    )))
    .bind(order_id.to_string())
    .fetch_all(store)
    .await?;
    rows.iter()
        .map(|r| dispute_at(&mut Columns::new(r)))
        .collect()
}
