//! The background-runner lease: one replica at a time holds the `background_leader` row.

use super::Store;

pub const NAME: &str = "machine-markets";

/// Takes or renews the lease for `holder` until `now + lease_ms`; `false` while another holder's
/// lease is unexpired.
pub async fn try_acquire(
    store: &Store,
    holder: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE background_leader SET holder = $2, expires_at = $3
         WHERE name = $1 AND (expires_at < $4 OR holder = $2)",
    )
    .bind(NAME)
    .bind(holder.to_string())
    .bind(now_ms + lease_ms)
    .bind(now_ms)
    .execute(store)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

/// Gives the lease up (shutdown), so another replica takes over at once.
pub async fn release(store: &Store, holder: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE background_leader SET expires_at = 0 WHERE name = $1 AND holder = $2")
        .bind(NAME)
        .bind(holder.to_string())
        .execute(store)
        .await?;
    Ok(())
}

/// Whether some replica holds an unexpired lease.
pub async fn is_held(store: &Store, now_ms: i64) -> Result<bool, sqlx::Error> {
    let expires: Option<i64> =
        sqlx::query_scalar("SELECT expires_at FROM background_leader WHERE name = $1")
            .bind(NAME)
            .fetch_optional(store)
            .await?;
    Ok(expires.is_some_and(|e| e >= now_ms))
}
