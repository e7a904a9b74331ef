//! Pairing challenges, pairings, sessions and status changes (spec pairings-and-auth.md §4–§9).

use serde_json::json;

use super::auth::PairingAuth;
use super::challenge::PairingChallenge;
use super::model::{
    AgentPairing, AgentProofInput, ChallengeView, CreateChallenge, CreatePairing, PairingStatus,
    PairingVerification, RotateSession, UpdatePairing,
};
use super::policy::DelegationPolicy;
use super::store;
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clock::format_ms;
use crate::config::VerificationMode;
use crate::crypto::{eip55, jwt};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::paging::{ListPage, PageRequest, Position};
use crate::http::validate::{MAX_NAME, MAX_TEXT, optional_text, required_text};
use crate::machines::model::Machine;
use crate::machines::service as machines;
use crate::orders::{self, OrdersOf};
use crate::store::{Staged, Tx, new_id, random_bytes};

const UPDATE_ATTEMPTS: usize = 3;

fn proof_invalid(reason: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AGENT_PAIRING_PROOF_INVALID,
        "The agent pairing proof is not valid",
    )
    .with_reason(reason)
}

fn binding_mismatch(field: &str) -> ApiError {
    proof_invalid("binding-mismatch").with("field", field)
}

fn inactive(status: PairingStatus) -> ApiError {
    ApiError::new(
        ErrorCode::AGENT_PAIRING_INACTIVE,
        format!("The pairing is {}", status.as_str()),
    )
    .with("status", status.as_str())
}

fn no_control_chars(field: &str, value: &str) -> ApiResult<()> {
    if value
        .chars()
        .any(|c| c.is_control() && (c <= '\u{1f}' || c == '\u{7f}'))
    {
        return Err(ApiError::validation(
            field,
            "no control characters",
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Non-blank, at most 255 characters, no control characters (provider and role).
fn label(field: &str, value: Option<String>) -> ApiResult<String> {
    let value = required_text(field, value, MAX_NAME)?;
    no_control_chars(field, &value)?;
    Ok(value)
}

fn agent_address(value: Option<String>) -> ApiResult<String> {
    let raw = value.ok_or_else(|| {
        ApiError::validation("agentAddress", "required", "agentAddress is required")
    })?;
    eip55::parse_address(&raw).ok_or_else(|| {
        ApiError::validation(
            "agentAddress",
            "EVM address",
            "agentAddress must be 0x + 40 hex digits, all lower-case, all upper-case or EIP-55 checksummed",
        )
    })
}

/// The supplied `did:pkh:eip155:<chainId>:<address>` with the EIP-55 address.
fn agent_did(value: &str, address: &str) -> ApiResult<String> {
    let invalid = || {
        ApiError::validation(
            "agentDid",
            "did:pkh:eip155:<chainId>:<agentAddress>",
            "agentDid must be did:pkh:eip155:<chainId>:<agentAddress>",
        )
    };
    let rest = value.strip_prefix("did:pkh:eip155:").ok_or_else(invalid)?;
    let (chain, did_address) = rest.split_once(':').ok_or_else(invalid)?;
    let chain_ok =
        !chain.is_empty() && chain.bytes().all(|b| b.is_ascii_digit()) && !chain.starts_with('0');
    if !chain_ok || !did_address.eq_ignore_ascii_case(address) {
        return Err(invalid());
    }
    Ok(format!("did:pkh:eip155:{chain}:{address}"))
}

fn derived_did(address: &str) -> String {
    format!("did:pkh:eip155:1:{address}")
}

/// Derives `hasAuthToken` for an answer.
fn present(app: &App, mut pairing: AgentPairing) -> AgentPairing {
    pairing.has_auth_token = pairing.status == PairingStatus::Active
        && pairing
            .session_expires_at_ms
            .is_some_and(|exp| app.clock.now_ms() < exp);
    pairing
}

pub async fn create_challenge(
    app: &App,
    machine_id: &str,
    body: CreateChallenge,
    origin: String,
) -> ApiResult<Staged<ChallengeView>> {
    let machine = machines::gate_b(app, machine_id).await?;
    let address = agent_address(body.agent_address)?;
    let provider = label("agentProvider", body.agent_provider)?;
    let role = label("agentRole", body.agent_role)?;
    let did = match body.agent_did {
        Some(did) => agent_did(&did, &address)?,
        None => derived_did(&address),
    };
    let issued_at = app.clock.now_ms();
    let mut challenge = PairingChallenge {
        id: new_id("apc_"),
        machine_id: machine.id.clone(),
        machine_identity_ref: machine.identity_ref.clone(),
        agent_address: address,
        agent_did: did,
        agent_provider: provider,
        agent_role: role,
        origin,
        nonce: hex::encode(random_bytes::<32>()),
        issued_at,
        expires_at: issued_at + app.config.agent_pairing_challenge_ttl_ms as i64,
        message_hmac: String::new(),
        consumed_at: None,
    };
    let message = challenge.message();
    challenge.message_hmac =
        crate::crypto::challenge_mac(app.session_secret.expose().as_bytes(), &message);
    let mut tx = app.store.begin().await?;
    store::insert_challenge(&mut tx, &challenge).await?;
    Ok(Staged {
        tx,
        value: ChallengeView {
            challenge_id: challenge.id,
            machine_id: challenge.machine_id,
            machine_identity_ref: challenge.machine_identity_ref,
            agent_address: challenge.agent_address,
            agent_did: challenge.agent_did,
            agent_provider: challenge.agent_provider,
            agent_role: challenge.agent_role,
            message,
            expires_at: format_ms(challenge.expires_at),
            verification_method: "eip191",
        },
    })
}

/// What a proof must be bound to.
struct Bindings<'a> {
    machine: &'a Machine,
    agent_address: &'a str,
    /// `None` at creation when the request omitted `agentDid`: the challenge's value is used.
    agent_did: Option<&'a str>,
    agent_provider: &'a str,
    agent_role: &'a str,
}

/// Checks 1–8 of §7, in order. Returns the verification record and the challenge.
async fn verify_proof(
    app: &App,
    input: AgentProofInput,
    expected: &Bindings<'_>,
) -> ApiResult<(PairingVerification, PairingChallenge)> {
    let challenge_id = required_text("agentProof.challengeId", input.challenge_id, MAX_NAME)?;
    let signature = required_text("agentProof.signature", input.signature, 1024)?;
    let challenge = store::get_challenge(&app.store, &challenge_id)
        .await?
        .ok_or_else(|| proof_invalid("challenge-not-found"))?;
    if challenge.machine_id != expected.machine.id {
        return Err(binding_mismatch("machineId"));
    }
    if challenge.consumed_at.is_some() {
        return Err(proof_invalid("challenge-consumed"));
    }
    let now = app.clock.now_ms();
    if now > challenge.expires_at {
        return Err(ApiError::new(
            ErrorCode::AGENT_PAIRING_PROOF_EXPIRED,
            "The pairing challenge has expired; request a new one",
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
    if challenge.machine_identity_ref != expected.machine.identity_ref {
        return Err(binding_mismatch("machineIdentityRef"));
    }
    if !challenge
        .agent_address
        .eq_ignore_ascii_case(expected.agent_address)
    {
        return Err(binding_mismatch("agentAddress"));
    }
    if expected
        .agent_did
        .is_some_and(|did| did != challenge.agent_did)
    {
        return Err(binding_mismatch("agentDid"));
    }
    if challenge.agent_provider != expected.agent_provider {
        return Err(binding_mismatch("agentProvider"));
    }
    if challenge.agent_role != expected.agent_role {
        return Err(binding_mismatch("agentRole"));
    }
    let signer = crate::crypto::eip191::recover_signer(message.as_bytes(), &signature)
        .map_err(|_| proof_invalid("signature-malformed"))?;
    if !signer.eq_ignore_ascii_case(expected.agent_address) {
        return Err(proof_invalid("signer-mismatch"));
    }
    let verification = PairingVerification {
        method: "eip191".into(),
        signer_address: eip55::to_checksum(&signer),
        verified_at: format_ms(now),
        challenge_expires_at: format_ms(challenge.expires_at),
        challenge_id: challenge.id.clone(),
    };
    Ok((verification, challenge))
}

/// Applies `PEAQOS_AGENT_PAIRING_VERIFICATION` to an optional proof.
async fn handle_proof(
    app: &App,
    input: Option<AgentProofInput>,
    expected: &Bindings<'_>,
) -> ApiResult<Option<(PairingVerification, PairingChallenge)>> {
    match (app.config.agent_pairing_verification, input) {
        (VerificationMode::Disabled, _) | (VerificationMode::Optional, None) => Ok(None),
        (VerificationMode::Required, None) => Err(ApiError::new(
            ErrorCode::AGENT_PAIRING_PROOF_REQUIRED,
            "An agentProof is required: create a pairing challenge and sign it with the agent's key",
        )),
        (_, Some(input)) => verify_proof(app, input, expected).await.map(Some),
    }
}

async fn consume(
    app: &App,
    tx: &mut Tx,
    proof: &Option<(PairingVerification, PairingChallenge)>,
) -> ApiResult<()> {
    if let Some((_, challenge)) = proof
        && !store::consume_challenge(tx, &challenge.id, app.clock.now_ms()).await?
    {
        return Err(proof_invalid("challenge-consumed"));
    }
    Ok(())
}

/// Opens a new session on `pairing` and returns its token (spec §3, §8.3 step 4).
fn open_session(app: &App, pairing: &mut AgentPairing) -> String {
    let iat = app.clock.now_ms().div_euclid(1000);
    let exp = iat + (app.config.agent_pairing_session_ttl_ms / 1000) as i64;
    let session_id = new_id("aps_");
    let token_id = new_id("apt_");
    let claims = jwt::PairingClaims {
        machine_id: pairing.machine_id.clone(),
        pairing_id: pairing.id.clone(),
        session_id: session_id.clone(),
        agent_address: pairing.agent_address.clone(),
        agent_did: pairing.agent_did.clone(),
        delegation_policy_hash: pairing.policy_hash.clone(),
        iat,
        exp,
        jti: token_id.clone(),
        iss: jwt::ISSUER.into(),
    };
    let token = jwt::sign(app.session_secret.expose().as_bytes(), &claims);
    pairing.session_id = Some(session_id);
    pairing.session_token_id = Some(token_id);
    pairing.session_issued_at_ms = Some(iat * 1000);
    pairing.session_expires_at_ms = Some(exp * 1000);
    pairing.session_issued_at = Some(format_ms(iat * 1000));
    pairing.session_expires_at = Some(format_ms(exp * 1000));
    pairing.token_last_four = Some(token[token.len() - 4..].to_string());
    token
}

fn audit_event(
    pairing: &AgentPairing,
    event_type: &'static str,
    payload: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type: "agent-pairing",
        resource_id: pairing.id.clone(),
        machine_id: Some(pairing.machine_id.clone()),
        payload,
    }
}

pub async fn create(
    app: &App,
    machine_id: &str,
    body: CreatePairing,
) -> ApiResult<Staged<AgentPairing>> {
    let machine = machines::gate_b(app, machine_id).await?;
    let address = agent_address(body.agent_address)?;
    let provider = label("agentProvider", body.agent_provider)?;
    let role = label("agentRole", body.agent_role)?;
    let supplied_did = body
        .agent_did
        .as_deref()
        .map(|did| agent_did(did, &address))
        .transpose()?;
    let description = optional_text("description", body.description, MAX_TEXT)?
        .map(|d| no_control_chars("description", &d).map(|()| d))
        .transpose()?;
    let policy = match body.delegation_policy {
        Some(input) => input.normalise()?,
        None => DelegationPolicy::default(),
    };
    let bindings = Bindings {
        machine: &machine,
        agent_address: &address,
        agent_did: supplied_did.as_deref(),
        agent_provider: &provider,
        agent_role: &role,
    };
    let proof = handle_proof(app, body.agent_proof, &bindings).await?;
    let did = supplied_did
        .or_else(|| proof.as_ref().map(|(_, c)| c.agent_did.clone()))
        .unwrap_or_else(|| derived_did(&address));

    let now = app.clock.now_ms();
    let mut pairing = AgentPairing {
        id: new_id("apr_"),
        machine_id: machine.id.clone(),
        agent_address: address,
        agent_did: did,
        agent_provider: provider,
        agent_role: role,
        description,
        status: PairingStatus::Active,
        verification: proof.as_ref().map(|(v, _)| v.clone()),
        policy_hash: policy.hash(),
        delegation_policy: policy,
        has_auth_token: false,
        token_last_four: None,
        session_id: None,
        session_token_id: None,
        session_issued_at: None,
        session_expires_at: None,
        pairing_token: None,
        created_at: format_ms(now),
        updated_at: format_ms(now),
        created_at_ms: now,
        session_issued_at_ms: None,
        session_expires_at_ms: None,
        revision: 0,
    };
    let token = open_session(app, &mut pairing);

    let mut tx = app.store.begin().await?;
    consume(app, &mut tx, &proof).await?;
    store::insert(&mut tx, &pairing).await?;
    let payload = json!({
        "agentAddress": pairing.agent_address,
        "agentDid": pairing.agent_did,
        "agentProvider": pairing.agent_provider,
        "agentRole": pairing.agent_role,
        "sessionId": pairing.session_id,
        "delegationPolicyHash": pairing.policy_hash,
        "verified": pairing.verification.is_some(),
    });
    audit::record(
        &mut tx,
        now,
        audit_event(&pairing, "agent-pairing.created", payload),
    )
    .await?;
    pairing.pairing_token = Some(token);
    Ok(Staged {
        tx,
        value: present(app, pairing),
    })
}

/// Gate A plus: the pairing exists and belongs to the machine.
async fn find(app: &App, machine_id: &str, pairing_id: &str) -> ApiResult<AgentPairing> {
    machines::find(app, machine_id).await?;
    store::get(&app.store, pairing_id)
        .await?
        .filter(|p| p.machine_id == machine_id)
        .ok_or_else(|| ApiError::not_found("agent-pairing", pairing_id))
}

pub async fn list(
    app: &App,
    machine_id: &str,
    page: &PageRequest,
) -> ApiResult<ListPage<AgentPairing>> {
    machines::find(app, machine_id).await?;
    let rows = store::list_for_machine(
        &app.store,
        machine_id,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    let rows = rows.into_iter().map(|p| present(app, p)).collect();
    Ok(page.finish(rows, |p| Position {
        t: p.created_at_ms,
        id: p.id.clone(),
    }))
}

fn concurrent_update() -> ApiError {
    ApiError::new(
        ErrorCode::IDEMPOTENCY_CONFLICT,
        "The pairing was changed concurrently; retry the request",
    )
    .with_reason("concurrent-update")
}

pub async fn rotate_session(
    app: &App,
    machine_id: &str,
    pairing_id: &str,
    body: RotateSession,
) -> ApiResult<Staged<AgentPairing>> {
    let machine = machines::gate_b(app, machine_id).await?;
    let mut pairing = find(app, machine_id, pairing_id).await?;
    if pairing.status != PairingStatus::Active {
        return Err(inactive(pairing.status));
    }
    let bindings = Bindings {
        machine: &machine,
        agent_address: &pairing.agent_address,
        agent_did: Some(&pairing.agent_did),
        agent_provider: &pairing.agent_provider,
        agent_role: &pairing.agent_role,
    };
    let proof = handle_proof(app, body.agent_proof, &bindings).await?;

    let previous_session = pairing.session_id.clone();
    if let Some((verification, _)) = &proof {
        pairing.verification = Some(verification.clone());
    }
    let token = open_session(app, &mut pairing);
    let now = app.clock.now_ms();
    pairing.updated_at = format_ms(now);
    let mut tx = app.store.begin().await?;
    consume(app, &mut tx, &proof).await?;
    if !store::update(&mut tx, &pairing, now).await? {
        // Revoked, paused or rotated meanwhile: answer from the state we find.
        drop(tx);
        let current = find(app, machine_id, pairing_id).await?;
        if current.status != PairingStatus::Active {
            return Err(inactive(current.status));
        }
        return Err(concurrent_update());
    }
    pairing.revision += 1;
    let payload = json!({
        "sessionId": pairing.session_id,
        "previousSessionId": previous_session,
        "delegationPolicyHash": pairing.policy_hash,
    });
    audit::record(
        &mut tx,
        now,
        audit_event(&pairing, "agent-pairing.session-rotated", payload),
    )
    .await?;
    pairing.pairing_token = Some(token);
    Ok(Staged {
        tx,
        value: present(app, pairing),
    })
}

/// The validated fields of a PATCH.
struct Patch {
    agent_provider: Option<String>,
    agent_role: Option<String>,
    /// `Some(None)` clears the description (sent as `""`).
    description: Option<Option<String>>,
    status: Option<PairingStatus>,
    delegation_policy: Option<DelegationPolicy>,
}

impl Patch {
    fn parse(body: UpdatePairing) -> ApiResult<Patch> {
        let description = match body.description {
            None => None,
            Some(d) if d.is_empty() => Some(None),
            Some(d) => {
                if d.chars().count() > MAX_TEXT {
                    return Err(ApiError::validation(
                        "description",
                        "at most 4096 characters",
                        "description is too long",
                    ));
                }
                no_control_chars("description", &d)?;
                Some(Some(d))
            }
        };
        Ok(Patch {
            agent_provider: body
                .agent_provider
                .map(|p| label("agentProvider", Some(p)))
                .transpose()?,
            agent_role: body
                .agent_role
                .map(|r| label("agentRole", Some(r)))
                .transpose()?,
            description,
            status: body.status,
            delegation_policy: body.delegation_policy.map(|p| p.normalise()).transpose()?,
        })
    }

    /// Applies the patch; returns the names of the fields whose value changed.
    fn apply(&self, p: &mut AgentPairing) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if let Some(v) = &self.agent_provider
            && *v != p.agent_provider
        {
            p.agent_provider = v.clone();
            changed.push("agentProvider");
        }
        if let Some(v) = &self.agent_role
            && *v != p.agent_role
        {
            p.agent_role = v.clone();
            changed.push("agentRole");
        }
        if let Some(v) = &self.description
            && *v != p.description
        {
            p.description = v.clone();
            changed.push("description");
        }
        if let Some(v) = self.status
            && v != p.status
        {
            p.status = v;
            changed.push("status");
        }
        if let Some(v) = &self.delegation_policy
            && *v != p.delegation_policy
        {
            p.policy_hash = v.hash();
            p.delegation_policy = v.clone();
            changed.push("delegationPolicy");
        }
        changed
    }

    fn only_revokes(&self) -> bool {
        self.status == Some(PairingStatus::Revoked)
            && self.agent_provider.is_none()
            && self.agent_role.is_none()
            && self.description.is_none()
            && self.delegation_policy.is_none()
    }
}

/// `PATCH`. `tx` is `None` when nothing changed (a revoked pairing asked to be revoked).
pub async fn update(
    app: &App,
    machine_id: &str,
    pairing_id: &str,
    body: UpdatePairing,
) -> ApiResult<(Option<Tx>, AgentPairing)> {
    let patch = Patch::parse(body)?;
    for _ in 0..UPDATE_ATTEMPTS {
        let mut pairing = find(app, machine_id, pairing_id).await?;
        let status_from = pairing.status;
        if status_from == PairingStatus::Revoked {
            if patch.only_revokes() {
                return Ok((None, present(app, pairing)));
            }
            return Err(inactive(status_from));
        }
        if patch.status == Some(PairingStatus::Revoked) {
            orders::ensure_none_open(app, OrdersOf::Pairing(pairing_id)).await?;
        }
        let changed = patch.apply(&mut pairing);
        if changed.is_empty() {
            return Ok((None, present(app, pairing)));
        }
        let now = app.clock.now_ms();
        pairing.updated_at = format_ms(now);
        let mut tx = app.store.begin().await?;
        if !store::update(&mut tx, &pairing, now).await? {
            continue;
        }
        pairing.revision += 1;
        let (event_type, payload) = if pairing.status == PairingStatus::Revoked {
            (
                "agent-pairing.revoked",
                json!({ "statusFrom": status_from.as_str() }),
            )
        } else {
            let mut payload =
                json!({ "changedFields": changed, "delegationPolicyHash": pairing.policy_hash });
            if status_from != pairing.status {
                payload["statusFrom"] = json!(status_from.as_str());
                payload["statusTo"] = json!(pairing.status.as_str());
            }
            ("agent-pairing.updated", payload)
        };
        audit::record(&mut tx, now, audit_event(&pairing, event_type, payload)).await?;
        return Ok((Some(tx), present(app, pairing)));
    }
    Err(concurrent_update())
}

/// `DELETE`: revokes. `None` when it already was revoked.
pub async fn revoke(app: &App, machine_id: &str, pairing_id: &str) -> ApiResult<Option<Tx>> {
    for _ in 0..UPDATE_ATTEMPTS {
        let mut pairing = find(app, machine_id, pairing_id).await?;
        let status_from = pairing.status;
        if status_from == PairingStatus::Revoked {
            return Ok(None);
        }
        orders::ensure_none_open(app, OrdersOf::Pairing(pairing_id)).await?;
        pairing.status = PairingStatus::Revoked;
        let now = app.clock.now_ms();
        let mut tx = app.store.begin().await?;
        if !store::update(&mut tx, &pairing, now).await? {
            continue;
        }
        let payload = json!({ "statusFrom": status_from.as_str() });
        audit::record(
            &mut tx,
            now,
            audit_event(&pairing, "agent-pairing.revoked", payload),
        )
        .await?;
        return Ok(Some(tx));
    }
    Err(concurrent_update())
}

fn pairing_required(reason: Option<&str>) -> ApiError {
    let error = ApiError::new(
        ErrorCode::AGENT_PAIRING_REQUIRED,
        "A usable agent pairing is required for market calls",
    );
    match reason {
        Some(reason) => error.with_reason(reason),
        None => error,
    }
}

/// The pairing checks of market calls (spec §1.3), after Gate C's machine steps: the token's
/// pairing, or (pairing auth not required) the one the body names, active and of `machine_id`.
pub async fn market_pairing(
    app: &App,
    token: Option<&PairingAuth>,
    machine_id: &str,
    named: Option<&str>,
) -> ApiResult<AgentPairing> {
    if let Some(token) = token {
        token.bind(&[machine_id], named.as_slice())?;
        return Ok(token.pairing.clone());
    }
    let id = named.ok_or_else(|| pairing_required(None))?;
    let pairing = store::get(&app.store, id)
        .await?
        .filter(|p| p.machine_id == machine_id)
        .ok_or_else(|| pairing_required(Some("pairing-not-found")))?;
    if pairing.status != PairingStatus::Active {
        return Err(ApiError::new(
            ErrorCode::AGENT_PAIRING_INACTIVE,
            format!("The pairing is {}", pairing.status.as_str()),
        )
        .with("status", pairing.status.as_str()));
    }
    Ok(pairing)
}
