//! Secrets the server generates once and all replicas share.

use super::Store;

/// Returns the stored value of `name`, inserting `candidate` first if no value exists yet.
/// Concurrent first starts agree: only one insert wins and everyone reads it back.
pub async fn get_or_insert(
    store: &Store,
    name: &str,
    candidate: &str,
    now_ms: i64,
) -> Result<(String, bool), sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name.to_string())
    .bind(candidate.to_string())
    .bind(now_ms)
    .execute(store)
    .await?
    .rows_affected()
        == 1;
    let value: String = sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1")
        .bind(name.to_string())
        .fetch_one(store)
        .await?;
    Ok((value, inserted))
}
