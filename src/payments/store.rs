//! Payment rows (`market_payments`).

use super::model::{MarketPayment, PaymentStatus};
use crate::clock::format_ms;
use crate::store::{Columns, Store, Tx, json};

const COLUMNS: &str = "id, order_id, machine_id, status, rail, amount, currency, notes, proof,
     transaction_key, release_transaction_hash, refund_transaction_hash, refund_reason,
     created_at, updated_at";

fn payment_at(cols: &mut Columns<'_>) -> Result<MarketPayment, sqlx::Error> {
    let id = cols.take()?;
    let order_id = cols.take()?;
    let machine_id = cols.take()?;
    let status: &str = cols.take()?;
    let status = PaymentStatus::parse(status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown payment status {status:?}").into()))?;
    let rail = cols.take_json()?;
    let amount: Option<&str> = cols.take()?;
    let exact_amount = amount.and_then(crate::money::parse);
    let currency = cols.take()?;
    let notes = cols.take_json()?;
    let proof: Option<&str> = cols.take()?;
    let proof = proof
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let transaction_key = cols.take()?;
    let release_transaction_hash = cols.take()?;
    let refund_transaction_hash = cols.take()?;
    let refund_reason = cols.take()?;
    let created_at: i64 = cols.take()?;
    let updated_at: i64 = cols.take()?;
    Ok(MarketPayment {
        id,
        order_id,
        machine_id,
        status,
        rail,
        amount: exact_amount.map(crate::money::to_f64),
        currency,
        notes,
        proof,
        release_transaction_hash,
        refund_transaction_hash,
        refund_reason,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        exact_amount,
        transaction_key,
        created_at_ms: created_at,
    })
}

/// The payment of an order, read in `tx` (the caller holds the order's row lock or its
/// transaction serialises writers).
pub async fn of_order_in(
    tx: &mut Tx,
    order_id: &str,
) -> Result<Option<MarketPayment>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM market_payments WHERE order_id = $1"
    )))
    .bind(order_id.to_string())
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref()
        .map(|r| payment_at(&mut Columns::new(r)))
        .transpose()
}

pub async fn of_order(store: &Store, order_id: &str) -> Result<Option<MarketPayment>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM market_payments WHERE order_id = $1"
    )))
    .bind(order_id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref()
        .map(|r| payment_at(&mut Columns::new(r)))
        .transpose()
}

/// Inserts a new payment, last updated at `updated_at` (a proof or an escrow lock creates a
/// payment planned a moment before it is held).
pub async fn insert(tx: &mut Tx, p: &MarketPayment, updated_at: i64) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO market_payments ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    )))
    .bind(p.id.clone())
    .bind(p.order_id.clone())
    .bind(p.machine_id.clone())
    .bind(p.status.as_str())
    .bind(json(&p.rail))
    .bind(p.exact_amount.map(|a| a.to_string()))
    .bind(p.currency.clone())
    .bind(json(&p.notes))
    .bind(p.proof.as_ref().map(json))
    .bind(p.transaction_key.clone())
    .bind(p.release_transaction_hash.clone())
    .bind(p.refund_transaction_hash.clone())
    .bind(p.refund_reason.clone())
    .bind(p.created_at_ms)
    .bind(updated_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the payment's mutable fields if its status is still `expected`; `false` otherwise. A
/// `transaction_key` another payment holds is a unique violation.
pub async fn update(
    tx: &mut Tx,
    p: &MarketPayment,
    expected: PaymentStatus,
    updated_at: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE market_payments SET status = $3, rail = $4, amount = $5, currency = $6,
             notes = $7, proof = $8, transaction_key = $9, release_transaction_hash = $10,
             refund_transaction_hash = $11, refund_reason = $12, updated_at = $13
         WHERE id = $1 AND status = $2",
    )
    .bind(p.id.clone())
    .bind(expected.as_str())
    .bind(p.status.as_str())
    .bind(json(&p.rail))
    .bind(p.exact_amount.map(|a| a.to_string()))
    .bind(p.currency.clone())
    .bind(json(&p.notes))
    .bind(p.proof.as_ref().map(json))
    .bind(p.transaction_key.clone())
    .bind(p.release_transaction_hash.clone())
    .bind(p.refund_transaction_hash.clone())
    .bind(p.refund_reason.clone())
    .bind(updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// The order whose payment `key` backs, if any.
pub async fn key_owner(store: &Store, key: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT order_id FROM market_payments WHERE transaction_key = $1")
        .bind(key.to_string())
        .fetch_optional(store)
        .await
}
