//! The machine registry's rules (spec identity-and-machines.md §5–§7).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::{StreamExt, stream};
use serde_json::json;

use super::model::{CreateMachine, Machine, MachineStatus, UpdateMachine};
use super::store;
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clients::mcr::{McrError, Resolution};
use crate::clock::format_ms;
use crate::config::VerificationMode;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::paging::{ListPage, PageRequest, Position};
use crate::http::validate::{MAX_ITEMS, MAX_NAME, name_list, optional_text, required_text};
use crate::identity::model::IdentityProof;
use crate::identity::refs::IdentityRef;
use crate::identity::service as identity;
use crate::store::{Conn, Staged, Tx, is_unique_violation, new_id};

/// Concurrent MCR look-ups while filtering a machine list.
const LIST_LOOKUPS: usize = 8;
/// Attempts at a compare-and-set update that lost a race.
const UPDATE_ATTEMPTS: usize = 3;

fn identity_exists() -> ApiError {
    ApiError::new(
        ErrorCode::MACHINE_IDENTITY_EXISTS,
        "Another machine is already registered with this identity",
    )
}

fn proof_required() -> ApiError {
    ApiError::new(
        ErrorCode::MACHINE_IDENTITY_PROOF_REQUIRED,
        "An identityProof is required: create a challenge and sign it with a controller of the identity",
    )
}

fn labels(value: Option<BTreeMap<String, String>>) -> ApiResult<Option<BTreeMap<String, String>>> {
    let Some(labels) = value else { return Ok(None) };
    if labels.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            "labels",
            &format!("at most {MAX_ITEMS} entries"),
            format!("labels may have at most {MAX_ITEMS} entries"),
        ));
    }
    for (key, value) in &labels {
        if key.is_empty() || key.chars().count() > MAX_NAME || value.chars().count() > MAX_NAME {
            return Err(ApiError::validation(
                &format!("labels.{key}"),
                "1..255 characters",
                "label keys must be 1 to 255 characters and values at most 255",
            ));
        }
    }
    Ok(Some(labels))
}

/// `policyIds`: each must name an existing policy.
async fn policy_ids(app: &App, value: Option<Vec<String>>) -> ApiResult<Option<Vec<String>>> {
    let ids = name_list("policyIds", value)?;
    if let Some(ids) = &ids {
        crate::policies::service::ensure_exist(app, "policyIds", ids).await?;
    }
    Ok(ids)
}

fn audit_event(
    machine: &Machine,
    event_type: &'static str,
    payload: serde_json::Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type: "machine",
        resource_id: machine.id.clone(),
        machine_id: Some(machine.id.clone()),
        payload,
    }
}

pub async fn create(app: &App, body: CreateMachine) -> ApiResult<Staged<Machine>> {
    let display_name = required_text("displayName", body.display_name, MAX_NAME)?;
    let owner_id = required_text("ownerId", body.owner_id, MAX_NAME)?;
    let machine_type = required_text("machineType", body.machine_type, MAX_NAME)?;
    let runtime_profile = required_text("runtimeProfile", body.runtime_profile, MAX_NAME)?;
    let raw_identity = body.identity_ref.ok_or_else(|| {
        ApiError::validation("identityRef", "required", "identityRef is required")
    })?;
    let identity = IdentityRef::parse_field("identityRef", &raw_identity)?;
    let capabilities = name_list("capabilities", body.capabilities)?.unwrap_or_default();
    let labels = labels(body.labels)?.unwrap_or_default();
    let policy_ids = policy_ids(app, body.policy_ids).await?.unwrap_or_default();
    let skill_keys = name_list("skillKeys", body.skill_keys)?.unwrap_or_default();

    if store::live_identity_exists(&app.store, &identity.to_string()).await? {
        return Err(identity_exists());
    }
    let proof = match (
        app.config.machine_identity_verification,
        body.identity_proof,
    ) {
        (VerificationMode::Disabled, _) | (VerificationMode::Optional, None) => None,
        (VerificationMode::Required, None) => return Err(proof_required()),
        (_, Some(input)) => Some(identity::verify_proof(app, &identity, input).await?),
    };

    let now = app.clock.now_ms();
    let machine = Machine {
        id: new_id("mach_"),
        display_name,
        status: MachineStatus::Draft,
        owner_id,
        identity_ref: identity.to_string(),
        identity_proof: proof,
        machine_type,
        runtime_profile,
        capabilities,
        labels,
        policy_ids,
        skill_keys,
        created_at: format_ms(now),
        updated_at: format_ms(now),
        created_at_ms: now,
        revision: 0,
    };
    let mut tx = app.store.begin().await?;
    if let Some(proof) = &machine.identity_proof {
        identity::consume_challenge(app, &mut tx, proof).await?;
    }
    match store::insert(&mut tx, &machine, now).await {
        Err(err) if is_unique_violation(&err) => return Err(identity_exists()),
        other => other?,
    }
    let payload = json!({
        "identityRef": machine.identity_ref,
        "status": machine.status.as_str(),
        "verified": machine.identity_proof.is_some(),
    });
    audit::record(
        &mut tx,
        now,
        audit_event(&machine, "machine.created", payload),
    )
    .await?;
    Ok(Staged { tx, value: machine })
}

/// Gate A: the machine exists.
pub async fn find(app: &App, id: &str) -> ApiResult<Machine> {
    store::get(&app.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found("machine", id))
}

/// Gate B (spec §6): an active machine whose identity still verifies. Guards machine-scoped
/// work (pairings, agents, runtime endpoints, orchestration).
pub async fn gate_b(app: &App, id: &str) -> ApiResult<Machine> {
    Ok(gate_b_resolved(app, id).await?.0)
}

/// Gate B, with the MCR resolution it re-verified against (`None` when verification is off).
async fn gate_b_resolved(app: &App, id: &str) -> ApiResult<(Machine, Option<Arc<Resolution>>)> {
    let machine = find(app, id).await?;
    let resolution = match admit(app, &machine)? {
        Some(identity) => {
            Some(identity::reverify(app, &identity, machine.identity_proof.as_ref()).await?)
        }
        None => None,
    };
    Ok((machine, resolution))
}

/// Gate C's machine steps (spec §6): Gate B, and the identity is bonded (every machine counts as
/// bonded when verification is disabled). The pairing checks follow in the caller
/// (`pairings::service::market_pairing`).
pub async fn gate_c(app: &App, id: &str) -> ApiResult<Machine> {
    let (machine, resolution) = gate_b_resolved(app, id).await?;
    if resolution.is_some_and(|r| !r.bonded) {
        return Err(ApiError::new(
            ErrorCode::MACHINE_NOT_ACTIVATED,
            "The machine's identity is not bonded in peaqOS MCR",
        )
        .with_reason("not-bonded"));
    }
    Ok(machine)
}

/// Gate B on a machine read on `conn`, for a request that goes on to write with it. The
/// connection goes back to the pool while the MCR is asked (a cache miss), so a slow MCR cannot
/// hold database connections; the connection to go on with is returned.
pub async fn gate_b_holding(app: &App, machine: &Machine, conn: Conn) -> ApiResult<Conn> {
    let Some(identity) = admit(app, machine)? else {
        return Ok(conn);
    };
    let proof = machine.identity_proof.as_ref();
    if let Some(verified) = identity::reverify_cached(app, &identity, proof) {
        verified?;
        return Ok(conn);
    }
    drop(conn);
    identity::reverify(app, &identity, proof).await?;
    Ok(app.store.acquire().await?)
}

/// Gate B's checks on the stored machine; the identity to re-verify, unless verification is off.
fn admit(app: &App, machine: &Machine) -> ApiResult<Option<IdentityRef>> {
    if machine.status != MachineStatus::Active {
        return Err(
            ApiError::new(ErrorCode::MACHINE_NOT_ACTIVE, "The machine is not active")
                .with("status", machine.status.as_str()),
        );
    }
    match (
        app.config.machine_identity_verification,
        &machine.identity_proof,
    ) {
        (VerificationMode::Disabled, _) => Ok(None),
        (VerificationMode::Required, None) => Err(proof_required()),
        _ => identity_of(machine).map(Some),
    }
}

fn identity_of(machine: &Machine) -> ApiResult<IdentityRef> {
    IdentityRef::parse(&machine.identity_ref).ok_or_else(|| {
        ApiError::internal(
            "stored identity ref",
            format!("{:?} does not parse", machine.identity_ref),
        )
    })
}

pub async fn get(app: &App, id: &str) -> ApiResult<Machine> {
    let machine = find(app, id).await?;
    if machine.status != MachineStatus::Archived
        && app.config.machine_identity_verification != VerificationMode::Disabled
    {
        identity::reverify(
            app,
            &identity_of(&machine)?,
            machine.identity_proof.as_ref(),
        )
        .await?;
    }
    Ok(machine)
}

/// Whether `machine` may appear in the list under the verification mode (spec §7.1). MCR
/// failures fail the whole request rather than hiding machines.
async fn listable(app: &App, machine: &Machine) -> ApiResult<bool> {
    let mode = app.config.machine_identity_verification;
    let proof = match (&machine.identity_proof, mode) {
        (_, VerificationMode::Disabled) => return Ok(true),
        (None, VerificationMode::Optional) => return Ok(true),
        (None, VerificationMode::Required) => return Ok(false),
        (Some(proof), _) => proof,
    };
    match app.mcr.resolve(&identity_of(machine)?).await {
        Ok(resolution) => Ok(resolution
            .controller_addresses
            .contains(&proof.signer_address)),
        Err(McrError::NotActivated) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

pub async fn list(app: &App, page: &PageRequest) -> ApiResult<ListPage<Machine>> {
    let mut items = Vec::with_capacity(page.limit);
    let mut after = page.after.clone();
    loop {
        let rows = store::list_live(&app.store, after.as_ref(), page.fetch_limit()).await?;
        let exhausted = rows.len() < page.fetch_limit() as usize;
        let checked: Vec<(Machine, ApiResult<bool>)> = stream::iter(rows)
            .map(|machine| async move {
                let verdict = listable(app, &machine).await;
                (machine, verdict)
            })
            .buffered(LIST_LOOKUPS)
            .collect()
            .await;
        for (machine, verdict) in checked {
            if items.len() == page.limit {
                // A row exists after the last one scanned: continue from there.
                let next = after.expect("a full page has scanned a row");
                return Ok(ListPage {
                    items,
                    next_cursor: Some(page.cursor_at(next)),
                });
            }
            after = Some(Position {
                t: machine.created_at_ms,
                id: machine.id.clone(),
            });
            if verdict? {
                items.push(machine);
            }
        }
        if exhausted {
            return Ok(ListPage {
                items,
                next_cursor: None,
            });
        }
    }
}

/// The fields a PATCH changes, validated.
struct Patch {
    display_name: Option<String>,
    owner_id: Option<String>,
    machine_type: Option<String>,
    runtime_profile: Option<String>,
    status: Option<MachineStatus>,
    capabilities: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    policy_ids: Option<Vec<String>>,
    skill_keys: Option<Vec<String>>,
}

impl Patch {
    /// Applies the patch; returns the names of the fields whose value changed.
    fn apply(&self, m: &mut Machine) -> Vec<&'static str> {
        let mut changed = Vec::new();
        macro_rules! set {
            ($field:ident, $name:literal) => {
                if let Some(value) = &self.$field {
                    if &m.$field != value {
                        m.$field = value.clone();
                        changed.push($name);
                    }
                }
            };
        }
        set!(display_name, "displayName");
        set!(owner_id, "ownerId");
        set!(machine_type, "machineType");
        set!(runtime_profile, "runtimeProfile");
        set!(status, "status");
        set!(capabilities, "capabilities");
        set!(labels, "labels");
        set!(policy_ids, "policyIds");
        set!(skill_keys, "skillKeys");
        changed
    }

    /// Only stops the machine: such a patch skips identity re-verification (spec §7.4 step 5).
    fn only_stops(&self) -> bool {
        matches!(
            self.status,
            Some(MachineStatus::Blocked | MachineStatus::Archived)
        ) && self.display_name.is_none()
            && self.owner_id.is_none()
            && self.machine_type.is_none()
            && self.runtime_profile.is_none()
            && self.capabilities.is_none()
            && self.labels.is_none()
            && self.policy_ids.is_none()
            && self.skill_keys.is_none()
    }
}

fn archived() -> ApiError {
    ApiError::new(
        ErrorCode::MACHINE_NOT_ACTIVE,
        "The machine is archived and cannot be changed",
    )
    .with("status", MachineStatus::Archived.as_str())
}

/// `PATCH`. `tx` is `None` when nothing changed: no write, no event.
pub async fn update(app: &App, id: &str, body: UpdateMachine) -> ApiResult<(Option<Tx>, Machine)> {
    let mut machine = find(app, id).await?;
    if machine.status == MachineStatus::Archived {
        return Err(archived());
    }
    let patch = Patch {
        display_name: optional_text("displayName", body.display_name, MAX_NAME)?,
        owner_id: optional_text("ownerId", body.owner_id, MAX_NAME)?,
        machine_type: optional_text("machineType", body.machine_type, MAX_NAME)?,
        runtime_profile: optional_text("runtimeProfile", body.runtime_profile, MAX_NAME)?,
        status: body.status,
        capabilities: name_list("capabilities", body.capabilities)?,
        labels: labels(body.labels)?,
        policy_ids: policy_ids(app, body.policy_ids).await?,
        skill_keys: name_list("skillKeys", body.skill_keys)?,
    };
    let identity = identity_of(&machine)?;
    if let Some(raw) = &body.identity_ref
        && IdentityRef::parse_field("identityRef", raw)? != identity
    {
        return Err(ApiError::new(
            ErrorCode::MACHINE_IDENTITY_IMMUTABLE,
            "identityRef cannot be changed; register a new machine instead",
        ));
    }

    let mode = app.config.machine_identity_verification;
    let mut new_proof: Option<IdentityProof> = None;
    if mode != VerificationMode::Disabled && !patch.only_stops() {
        match (body.identity_proof, &machine.identity_proof) {
            (Some(input), _) => {
                new_proof = Some(identity::verify_proof(app, &identity, input).await?)
            }
            (None, Some(stored)) => {
                identity::reverify(app, &identity, Some(stored)).await?;
            }
            (None, None) if patch.status == Some(MachineStatus::Active) => {
                if mode == VerificationMode::Required {
                    return Err(ApiError::new(
                        ErrorCode::MACHINE_NOT_ACTIVATED,
                        "The machine has no verified identity proof; send identityProof to activate it",
                    )
                    .with_reason("unverified"));
                }
                identity::reverify(app, &identity, None).await?;
            }
            (None, None) if mode == VerificationMode::Required => return Err(proof_required()),
            (None, None) => {}
        }
    }

    if patch.status == Some(MachineStatus::Archived) {
        crate::orders::ensure_none_open(app, crate::orders::OrdersOf::Machine(id)).await?;
    }
    for _ in 0..UPDATE_ATTEMPTS {
        let status_from = machine.status;
        let changed = patch.apply(&mut machine);
        if changed.is_empty() && new_proof.is_none() {
            return Ok((None, machine));
        }
        if let Some(proof) = &new_proof {
            machine.identity_proof = Some(proof.clone());
        }
        let now = app.clock.now_ms();
        machine.updated_at = format_ms(now);
        let mut tx = app.store.begin().await?;
        if let Some(proof) = &new_proof {
            identity::consume_challenge(app, &mut tx, proof).await?;
        }
        if !store::update(&mut tx, &machine, now).await? {
            drop(tx);
            machine = find(app, id).await?;
            if machine.status == MachineStatus::Archived {
                return Err(archived());
            }
            continue;
        }
        machine.revision += 1;
        let (event_type, payload) = if machine.status == MachineStatus::Archived {
            (
                "machine.archived",
                json!({ "statusFrom": status_from.as_str() }),
            )
        } else {
            let mut payload = json!({
                "changedFields": changed,
                "proofRenewed": new_proof.is_some(),
            });
            if status_from != machine.status {
                payload["statusFrom"] = json!(status_from.as_str());
                payload["statusTo"] = json!(machine.status.as_str());
            }
            ("machine.updated", payload)
        };
        audit::record(&mut tx, now, audit_event(&machine, event_type, payload)).await?;
        return Ok((Some(tx), machine));
    }
    Err(ApiError::new(
        ErrorCode::IDEMPOTENCY_CONFLICT,
        "The machine was changed concurrently; retry the request",
    )
    .with_reason("concurrent-update"))
}

/// Archives the machine (`DELETE`). `None` when it already was archived: no change, no event.
pub async fn archive(app: &App, id: &str) -> ApiResult<Option<Tx>> {
    for _ in 0..UPDATE_ATTEMPTS {
        let mut machine = find(app, id).await?;
        let status_from = machine.status;
        if status_from == MachineStatus::Archived {
            return Ok(None);
        }
        crate::orders::ensure_none_open(app, crate::orders::OrdersOf::Machine(id)).await?;
        machine.status = MachineStatus::Archived;
        let now = app.clock.now_ms();
        let mut tx = app.store.begin().await?;
        if !store::update(&mut tx, &machine, now).await? {
            continue;
        }
        let payload = json!({ "statusFrom": status_from.as_str() });
        audit::record(
            &mut tx,
            now,
            audit_event(&machine, "machine.archived", payload),
        )
        .await?;
        return Ok(Some(tx));
    }
    Err(ApiError::new(
        ErrorCode::IDEMPOTENCY_CONFLICT,
        "The machine was changed concurrently; retry the request",
    )
    .with_reason("concurrent-update"))
}
