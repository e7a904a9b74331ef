//! Challenges, proof verification and re-verification against MCR (spec
//! identity-and-machines.md §3–§4). Machines and pairings build on these.

use std::sync::Arc;

use serde_json::json;

use super::challenge::{Challenge, ZERO_ADDRESS};
use super::model::{ChallengeView, IdentityProof, ProofInput};
use super::refs::IdentityRef;
use super::store;
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clients::mcr::Resolution;
use crate::clock::format_ms;
use crate::config::VerificationMode;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::validate::{MAX_NAME, required_text};
use crate::store::{Staged, Tx, new_id, random_bytes};

fn proof_invalid(reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::MACHINE_IDENTITY_PROOF_INVALID,
        "The machine identity proof is not valid",
    )
    .with_reason(reason)
}

pub async fn create_challenge(
    app: &App,
    identity: IdentityRef,
    origin: String,
) -> ApiResult<Staged<ChallengeView>> {
    let controller_addresses = match app.config.machine_identity_verification {
        VerificationMode::Disabled => vec![
            identity
                .address()
                .unwrap_or_else(|| ZERO_ADDRESS.to_string()),
        ],
        VerificationMode::Required | VerificationMode::Optional => {
            let resolution = app.mcr.resolve(&identity).await?;
            if resolution.controller_addresses.is_empty() {
                return Err(ApiError::validation(
                    "identityRef",
                    "EVM controller",
                    "The identity has no EVM controller address in MCR that could sign a proof",
                )
                .with_reason("no-evm-controller"));
            }
            resolution.controller_addresses.clone()
        }
    };

    let issued_at = app.clock.now_ms();
    let mut challenge = Challenge {
        id: new_id("mic_"),
        identity_ref: identity.to_string(),
        origin,
        nonce: hex::encode(random_bytes::<32>()),
        issued_at,
        expires_at: issued_at + app.config.machine_identity_challenge_ttl_ms as i64,
        controller_addresses,
        message_hmac: String::new(),
        consumed_at: None,
    };
    let message = challenge.message();
    challenge.message_hmac =
        crate::crypto::challenge_mac(app.session_secret.expose().as_bytes(), &message);

    let mut tx = app.store.begin().await?;
    store::insert_challenge(&mut tx, &challenge).await?;
    audit::record(
        &mut tx,
        issued_at,
        NewAuditEvent {
            actor: Actor::Api,
            event_type: "machine-identity.challenge-created",
            resource_type: "machine-identity-challenge",
            resource_id: challenge.id.clone(),
            machine_id: None,
            payload: json!({
                "identityRef": challenge.identity_ref,
                "expiresAt": format_ms(challenge.expires_at),
            }),
        },
    )
    .await?;
    Ok(Staged {
        tx,
        value: ChallengeView {
            challenge_id: challenge.id,
            identity_ref: challenge.identity_ref,
            message,
            expires_at: format_ms(challenge.expires_at),
            verification_method: "eip191",
            controller_addresses: challenge.controller_addresses,
        },
    })
}

/// Checks 1–8 of §4.3, in order. The challenge is not consumed here: the caller consumes it in
/// the transaction of the write the proof authorises ([`consume_challenge`]).
pub async fn verify_proof(
    app: &App,
    identity: &IdentityRef,
    proof: ProofInput,
) -> ApiResult<IdentityProof> {
    let challenge_id = required_text("identityProof.challengeId", proof.challenge_id, MAX_NAME)?;
    let signature = required_text("identityProof.signature", proof.signature, 1024)?;

    let challenge = store::get_challenge(&app.store, &challenge_id)
        .await?
        .ok_or_else(|| proof_invalid("challenge-not-found"))?;
    if challenge.identity_ref != identity.to_string() {
        return Err(proof_invalid("identity-mismatch"));
    }
    if challenge.consumed_at.is_some() {
        return Err(proof_invalid("challenge-consumed"));
    }
    let now = app.clock.now_ms();
    if now > challenge.expires_at {
        return Err(ApiError::new(
            ErrorCode::MACHINE_IDENTITY_PROOF_EXPIRED,
            "The identity challenge has expired; request a new one",
        ));
    }
    let message = challenge.message();
    if !crate::crypto::challenge_mac_matches(
        app.session_secret.expose().as_bytes(),
        &message,
        &challenge.message_hmac,
    ) {
        return Err(proof_invalid("challenge-tampered"));
    }
    let signer = crate::crypto::eip191::recover_signer(message.as_bytes(), &signature)
        .map_err(|_| proof_invalid("signature-malformed"))?;
    let resolution = app.mcr.resolve(identity).await?;
    if !resolution.controller_addresses.contains(&signer) {
        return Err(proof_invalid("signer-not-controller"));
    }
    Ok(IdentityProof {
        method: "eip191".into(),
        identity_ref: identity.to_string(),
        signer_address: signer,
        challenge_id: challenge.id,
        verified_at: format_ms(now),
        challenge_expires_at: format_ms(challenge.expires_at),
        controller_addresses: resolution.controller_addresses.clone(),
        resolution_source: "peaqos-mcr".into(),
    })
}

/// Marks the proof's challenge used, inside the write it authorises.
pub async fn consume_challenge(app: &App, tx: &mut Tx, proof: &IdentityProof) -> ApiResult<()> {
    if store::consume_challenge(tx, &proof.challenge_id, app.clock.now_ms()).await? {
        Ok(())
    } else {
        Err(proof_invalid("challenge-consumed"))
    }
}

/// Re-resolves `identity` (the cache may answer) and, when a proof is stored, checks that its
/// signer still controls the identity.
pub async fn reverify(
    app: &App,
    identity: &IdentityRef,
    stored: Option<&IdentityProof>,
) -> ApiResult<Arc<Resolution>> {
    still_controls(app.mcr.resolve(identity).await?, stored)
}

/// [`reverify`] answered from the MCR cache alone; `None` when that needs a look-up.
pub fn reverify_cached(
    app: &App,
    identity: &IdentityRef,
    stored: Option<&IdentityProof>,
) -> Option<ApiResult<Arc<Resolution>>> {
    app.mcr
        .cached(identity)
        .map(|resolution| still_controls(resolution, stored))
}

fn still_controls(
    resolution: Arc<Resolution>,
    stored: Option<&IdentityProof>,
) -> ApiResult<Arc<Resolution>> {
    if let Some(proof) = stored
        && !resolution
            .controller_addresses
            .contains(&proof.signer_address)
    {
        return Err(ApiError::new(
            ErrorCode::MACHINE_NOT_ACTIVATED,
            "The signer of the stored identity proof no longer controls this identity",
        )
        .with_reason("controller-changed"));
    }
    Ok(resolution)
}
