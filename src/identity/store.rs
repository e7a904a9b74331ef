use sqlx::Row;
use sqlx::any::AnyRow;

use super::challenge::Challenge;
use crate::store::{Store, Tx};

pub async fn insert_challenge(tx: &mut Tx, c: &Challenge) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO machine_identity_challenges
             (id, identity_ref, origin, nonce, issued_at, expires_at, controller_addresses, message_hmac)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(c.id.clone())
    .bind(c.identity_ref.clone())
    .bind(c.origin.clone())
    .bind(c.nonce.clone())
    .bind(c.issued_at)
    .bind(c.expires_at)
    .bind(serde_json::to_string(&c.controller_addresses).expect("strings serialise"))
    .bind(c.message_hmac.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn challenge_from(row: &AnyRow) -> Result<Challenge, sqlx::Error> {
    let controllers: String = row.try_get("controller_addresses")?;
    Ok(Challenge {
        id: row.try_get("id")?,
        identity_ref: row.try_get("identity_ref")?,
        origin: row.try_get("origin")?,
        nonce: row.try_get("nonce")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        controller_addresses: serde_json::from_str(&controllers).unwrap_or_default(),
        message_hmac: row.try_get("message_hmac")?,
        consumed_at: row.try_get("consumed_at")?,
    })
}

pub async fn get_challenge(store: &Store, id: &str) -> Result<Option<Challenge>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, identity_ref, origin, nonce, issued_at, expires_at, controller_addresses,
                message_hmac, consumed_at
         FROM machine_identity_challenges WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(challenge_from).transpose()
}

/// Consumes the challenge if nobody has; `false` means it was already used.
pub async fn consume_challenge(tx: &mut Tx, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE machine_identity_challenges SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL",
    )
    .bind(id.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}
