//! SQL of the `Idempotency-Key` records (spec README §3.11). The HTTP side is
//! `http/idempotency.rs`.

use sqlx::Row;

use super::{Store, Tx};

/// How long a completed response is replayed.
pub const RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// After this long an `in_progress` row is taken as abandoned by a crashed process. Its state
/// change cannot have committed (completion commits with it), so a retry may run afresh.
pub const ABANDONED_AFTER_MS: i64 = 5 * 60 * 1000;

pub enum Reservation {
    /// This request owns the key and must run.
    Owned,
    /// The first request finished: replay its response.
    Replay { status: u16, sealed_body: String },
    /// The key was used with another body.
    BodyMismatch,
    /// The first request is still running.
    InProgress,
}

pub async fn reserve(
    store: &Store,
    scope: &str,
    request_hash: &str,
    claim: &str,
    now_ms: i64,
) -> Result<Reservation, sqlx::Error> {
    for _ in 0..3 {
        let taken = sqlx::query(
            "INSERT INTO idempotency_records (scope, request_hash, claim, state, created_at)
             VALUES ($1, $2, $3, 'in_progress', $4)
             ON CONFLICT (scope) DO UPDATE SET
                 request_hash = excluded.request_hash, claim = excluded.claim,
                 state = 'in_progress', response_status = NULL, response_body = NULL,
                 created_at = excluded.created_at
             WHERE (idempotency_records.state = 'completed' AND idempotency_records.created_at < $5)
                OR (idempotency_records.state = 'in_progress' AND idempotency_records.created_at < $6)",
        )
        .bind(scope.to_string())
        .bind(request_hash.to_string())
        .bind(claim.to_string())
        .bind(now_ms)
        .bind(now_ms - RETENTION_MS)
        .bind(now_ms - ABANDONED_AFTER_MS)
        .execute(store)
        .await?
        .rows_affected();
        if taken == 1 {
            return Ok(Reservation::Owned);
        }
        let row = sqlx::query(
            "SELECT request_hash, state, response_status, response_body
             FROM idempotency_records WHERE scope = $1",
        )
        .bind(scope.to_string())
        .fetch_optional(store)
        .await?;
        // Released between our insert and read: try again.
        let Some(row) = row else { continue };
        let stored_hash: String = row.try_get("request_hash")?;
        if stored_hash != request_hash {
            return Ok(Reservation::BodyMismatch);
        }
        let state: String = row.try_get("state")?;
        if state != "completed" {
            return Ok(Reservation::InProgress);
        }
        let status: i64 = row.try_get("response_status")?;
        return Ok(Reservation::Replay {
            status: u16::try_from(status).unwrap_or(200),
            sealed_body: row.try_get("response_body")?,
        });
    }
    Ok(Reservation::InProgress)
}

const COMPLETE: &str = "UPDATE idempotency_records
     SET state = 'completed', response_status = $3, response_body = $4
     WHERE scope = $1 AND claim = $2 AND state = 'in_progress'";

/// Records the response inside the transaction of the state change it belongs to.
pub async fn complete_in(
    tx: &mut Tx,
    scope: &str,
    claim: &str,
    status: u16,
    sealed_body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(COMPLETE)
        .bind(scope.to_string())
        .bind(claim.to_string())
        .bind(i64::from(status))
        .bind(sealed_body.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Records the response of a request that changed no state.
pub async fn complete(
    store: &Store,
    scope: &str,
    claim: &str,
    status: u16,
    sealed_body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(COMPLETE)
        .bind(scope.to_string())
        .bind(claim.to_string())
        .bind(i64::from(status))
        .bind(sealed_body.to_string())
        .execute(store)
        .await?;
    Ok(())
}

/// Frees the key after a failed attempt (only 2xx responses are kept).
pub async fn release(store: &Store, scope: &str, claim: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM idempotency_records WHERE scope = $1 AND claim = $2 AND state = 'in_progress'",
    )
    .bind(scope.to_string())
    .bind(claim.to_string())
    .execute(store)
    .await?;
    Ok(())
}

/// Drops records past their retention; run by the background worker.
pub async fn purge_expired(store: &Store, now_ms: i64) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM idempotency_records WHERE created_at < $1")
            .bind(now_ms - RETENTION_MS)
            .execute(store)
            .await?
            .rows_affected(),
    )
}
