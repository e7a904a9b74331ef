use sqlx::Row;
use sqlx::any::AnyRow;

use super::challenge::PairingChallenge;
use super::model::{AgentPairing, PairingStatus};
use crate::clock::format_ms;
use crate::store::Position;
use crate::store::{Store, Tx, json};

pub async fn insert_challenge(tx: &mut Tx, c: &PairingChallenge) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agent_pairing_challenges
             (id, machine_id, machine_identity_ref, agent_address, agent_did, agent_provider, agent_role,
              origin, nonce, issued_at, expires_at, message_hmac)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(c.id.clone())
    .bind(c.machine_id.clone())
    .bind(c.machine_identity_ref.clone())
    .bind(c.agent_address.clone())
    .bind(c.agent_did.clone())
    .bind(c.agent_provider.clone())
    .bind(c.agent_role.clone())
    .bind(c.origin.clone())
    .bind(c.nonce.clone())
    .bind(c.issued_at)
    .bind(c.expires_at)
    .bind(c.message_hmac.clone())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn get_challenge(
    store: &Store,
    id: &str,
) -> Result<Option<PairingChallenge>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT id, machine_id, machine_identity_ref, agent_address, agent_did, agent_provider, agent_role,
                origin, nonce, issued_at, expires_at, message_hmac, consumed_at
         FROM agent_pairing_challenges WHERE id = $1",
    )
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(PairingChallenge {
        id: row.try_get("id")?,
        machine_id: row.try_get("machine_id")?,
        machine_identity_ref: row.try_get("machine_identity_ref")?,
        agent_address: row.try_get("agent_address")?,
        agent_did: row.try_get("agent_did")?,
        agent_provider: row.try_get("agent_provider")?,
        agent_role: row.try_get("agent_role")?,
        origin: row.try_get("origin")?,
        nonce: row.try_get("nonce")?,
        issued_at: row.try_get("issued_at")?,
        expires_at: row.try_get("expires_at")?,
        message_hmac: row.try_get("message_hmac")?,
        consumed_at: row.try_get("consumed_at")?,
    }))
}

/// Consumes the challenge if nobody has; `false` means it was already used.
pub async fn consume_challenge(tx: &mut Tx, id: &str, now_ms: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE agent_pairing_challenges SET consumed_at = $2 WHERE id = $1 AND consumed_at IS NULL",
    )
    .bind(id.to_string())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

const COLUMNS: &str =
    "id, machine_id, agent_address, agent_did, agent_provider, agent_role, description,
     status, verification, delegation_policy, policy_hash, session_id, session_token_id,
     session_issued_at, session_expires_at, token_last_four, created_at, updated_at, revision";

fn decode_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// A pairing row; `has_auth_token` is left `false` for the service to derive.
fn pairing_from(row: &AnyRow) -> Result<AgentPairing, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let verification: Option<String> = row.try_get("verification")?;
    let policy: String = row.try_get("delegation_policy")?;
    let created_at: i64 = row.try_get("created_at")?;
    let updated_at: i64 = row.try_get("updated_at")?;
    let issued: Option<i64> = row.try_get("session_issued_at")?;
    let expires: Option<i64> = row.try_get("session_expires_at")?;
    Ok(AgentPairing {
        id: row.try_get("id")?,
        machine_id: row.try_get("machine_id")?,
        agent_address: row.try_get("agent_address")?,
        agent_did: row.try_get("agent_did")?,
        agent_provider: row.try_get("agent_provider")?,
        agent_role: row.try_get("agent_role")?,
        description: row.try_get("description")?,
        status: PairingStatus::parse(&status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown pairing status {status:?}").into())
        })?,
        verification: verification.as_deref().map(decode_json).transpose()?,
        delegation_policy: decode_json(&policy)?,
        has_auth_token: false,
        token_last_four: row.try_get("token_last_four")?,
        session_id: row.try_get("session_id")?,
        session_token_id: row.try_get("session_token_id")?,
        session_issued_at: issued.map(format_ms),
        session_expires_at: expires.map(format_ms),
        pairing_token: None,
        created_at: format_ms(created_at),
        updated_at: format_ms(updated_at),
        created_at_ms: created_at,
        session_issued_at_ms: issued,
        session_expires_at_ms: expires,
        policy_hash: row.try_get("policy_hash")?,
        revision: row.try_get("revision")?,
    })
}

pub async fn insert(tx: &mut Tx, p: &AgentPairing) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO agent_pairings ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17, 0)"
    )))
    .bind(p.id.clone())
    .bind(p.machine_id.clone())
    .bind(p.agent_address.clone())
    .bind(p.agent_did.clone())
    .bind(p.agent_provider.clone())
    .bind(p.agent_role.clone())
    .bind(p.description.clone())
    .bind(p.status.as_str())
    .bind(p.verification.as_ref().map(json))
    .bind(json(&p.delegation_policy))
    .bind(p.policy_hash.clone())
    .bind(p.session_id.clone())
    .bind(p.session_token_id.clone())
    .bind(p.session_issued_at_ms)
    .bind(p.session_expires_at_ms)
    .bind(p.token_last_four.clone())
    .bind(p.created_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes every mutable field if the row is still at `p.revision`; `false` if someone else
/// changed it first.
pub async fn update(tx: &mut Tx, p: &AgentPairing, updated_at: i64) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE agent_pairings SET agent_provider = $3, agent_role = $4, description = $5, status = $6,
             verification = $7, delegation_policy = $8, policy_hash = $9, session_id = $10,
             session_token_id = $11, session_issued_at = $12, session_expires_at = $13,
             token_last_four = $14, updated_at = $15, revision = revision + 1
         WHERE id = $1 AND revision = $2",
    )
    .bind(p.id.clone())
    .bind(p.revision)
    .bind(p.agent_provider.clone())
    .bind(p.agent_role.clone())
    .bind(p.description.clone())
    .bind(p.status.as_str())
    .bind(p.verification.as_ref().map(json))
    .bind(json(&p.delegation_policy))
    .bind(p.policy_hash.clone())
    .bind(p.session_id.clone())
    .bind(p.session_token_id.clone())
    .bind(p.session_issued_at_ms)
    .bind(p.session_expires_at_ms)
    .bind(p.token_last_four.clone())
    .bind(updated_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(updated == 1)
}

pub async fn get(store: &Store, id: &str) -> Result<Option<AgentPairing>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM agent_pairings WHERE id = $1"
    )))
    .bind(id.to_string())
    .fetch_optional(store)
    .await?;
    row.as_ref().map(pairing_from).transpose()
}

/// The machine's pairings after `after`, oldest first, revoked ones included.
pub async fn list_for_machine(
    store: &Store,
    machine_id: &str,
    after: Option<&Position>,
    limit: i64,
) -> Result<Vec<AgentPairing>, sqlx::Error> {
    crate::store::machine_page(
        store,
        "agent_pairings",
        COLUMNS,
        machine_id,
        after,
        limit,
        pairing_from,
    )
    .await
}
