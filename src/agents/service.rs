//! Machine-side runtime agents: enrolment, revocation and heartbeats (spec
//! agents-and-runtime.md §2, §4).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use super::model::{AgentStatus, Enroll, HeartbeatItem, HeartbeatResponse, MachineAgent};
use super::store;
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clients::runtime::provider_key;
use crate::clock::format_ms;
use crate::crypto::sha256_hex;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::paging::{ListPage, PageRequest, Position};
use crate::http::validate::{MAX_ITEMS, MAX_NAME, optional_text};
use crate::machines::service as machines;
use crate::runtime::model::{EndpointFields, EndpointSpec};
use crate::runtime::service as runtime;
use crate::runtime::store::{self as endpoints, Owner};
use crate::store::{Staged, Tx, new_id, random_bytes};

const DEFAULT_LABEL: &str = "Machine runtime agent";
const DEFAULT_LEASE_S: i64 = 120;
const LEASE_RANGE_S: std::ops::RangeInclusive<i64> = 30..=86_400;

fn audit_event(
    agent_id: &str,
    machine_id: &str,
    event_type: &'static str,
    payload: Value,
) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type: "machine-agent",
        resource_id: agent_id.to_string(),
        machine_id: Some(machine_id.to_string()),
        payload,
    }
}

fn provider_keys(field: &str, keys: Vec<String>) -> ApiResult<Vec<String>> {
    if keys.is_empty() || keys.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            field,
            "1..100 entries",
            format!("{field} must list 1 to 100 provider keys"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let key = provider_key(&format!("{field}[{i}]"), key)?;
        if !out.contains(&key) {
            out.push(key);
        }
    }
    Ok(out)
}

pub async fn enroll(app: &App, machine_id: &str, body: Enroll) -> ApiResult<Staged<MachineAgent>> {
    machines::gate_b(app, machine_id).await?;
    let label =
        optional_text("label", body.label, MAX_NAME)?.unwrap_or_else(|| DEFAULT_LABEL.to_string());
    let allowed = match (body.allowed_provider_keys, body.provider_keys) {
        (Some(keys), _) => provider_keys("allowedProviderKeys", keys)?,
        (None, Some(keys)) => provider_keys("providerKeys", keys)?,
        (None, None) => vec!["qvac".to_string()],
    };
    let token = format!("mat_{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()));
    let now = app.clock.now_ms();
    let mut agent = MachineAgent {
        id: new_id("mag_"),
        machine_id: machine_id.to_string(),
        label,
        allowed_provider_keys: allowed,
        status: AgentStatus::Provisioned,
        has_agent_token: true,
        last_seen_at: None,
        created_at: format_ms(now),
        updated_at: format_ms(now),
        agent_token: None,
        provisioning_token: None,
        created_at_ms: now,
        token_hash: sha256_hex(token.as_bytes()),
    };
    let mut tx = app.store.begin().await?;
    store::insert(&mut tx, &agent).await?;
    let payload =
        json!({ "label": agent.label, "allowedProviderKeys": agent.allowed_provider_keys });
    audit::record(
        &mut tx,
        now,
        audit_event(&agent.id, machine_id, "machine-agent.enrolled", payload),
    )
    .await?;
    agent.agent_token = Some(token.clone());
    agent.provisioning_token = Some(token);
    Ok(Staged { tx, value: agent })
}

pub async fn list(
    app: &App,
    machine_id: &str,
    page: &PageRequest,
) -> ApiResult<ListPage<MachineAgent>> {
    machines::gate_b(app, machine_id).await?;
    let rows = store::list_for_machine(
        &app.store,
        machine_id,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(page.finish(rows, |a| Position {
        t: a.created_at_ms,
        id: a.id.clone(),
    }))
}

/// `DELETE`: `None` when the agent already was revoked.
pub async fn revoke(app: &App, machine_id: &str, agent_id: &str) -> ApiResult<Option<Tx>> {
    machines::find(app, machine_id).await?;
    store::get(&app.store, agent_id)
        .await?
        .filter(|a| a.machine_id == machine_id)
        .ok_or_else(|| ApiError::not_found("machine-agent", agent_id))?;
    let now = app.clock.now_ms();
    let mut tx = app.store.begin().await?;
    if !store::revoke(&mut tx, agent_id, now).await? {
        return Ok(None);
    }
    let expired = endpoints::expire_agent_leases(&mut tx, agent_id, now).await?;
    let payload = json!({ "endpointsExpired": expired });
    audit::record(
        &mut tx,
        now,
        audit_event(agent_id, machine_id, "machine-agent.revoked", payload),
    )
    .await?;
    Ok(Some(tx))
}

/// The agent token, from whichever of the accepted places carry it.
pub struct PresentedTokens {
    pub authorization_bearer: Option<String>,
    pub pairing_header: Option<String>,
}

fn body_string(body: &Map<String, Value>, field: &str) -> ApiResult<Option<String>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::validation(
            field,
            "type",
            format!("{field} must be a string"),
        )),
    }
}

fn body_integer(body: &Map<String, Value>, field: &str) -> ApiResult<Option<i64>> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_i64().is_some() => Ok(n.as_i64()),
        Some(_) => Err(ApiError::validation(
            field,
            "integer",
            format!("{field} must be an integer"),
        )),
    }
}

/// A heartbeat entry with camelCase keys: camelCase wins over snake_case; `null` means absent.
fn camel_entry(entry: &Map<String, Value>) -> Map<String, Value> {
    const KEYS: [(&str, &str); 10] = [
        ("providerKey", "provider_key"),
        ("endpointBaseUrl", "endpoint_base_url"),
        ("label", "label"),
        ("authType", "auth_type"),
        ("authToken", "auth_token"),
        ("modelAlias", "model_alias"),
        ("networkScope", "network_scope"),
        ("probePath", "probe_path"),
        ("status", "status"),
        ("leaseExpiresAt", "lease_expires_at"),
    ];
    let mut out = Map::new();
    for (camel, snake) in KEYS {
        let value = [camel, snake]
            .iter()
            .filter_map(|k| entry.get(*k))
            .find(|v| !v.is_null());
        if let Some(value) = value {
            out.insert(camel.to_string(), value.clone());
        }
    }
    // A heartbeat cannot set its own lease end: the lease comes from leaseSeconds.
    out.remove("leaseExpiresAt");
    out
}

pub async fn heartbeat(
    app: &App,
    body: Map<String, Value>,
    presented: PresentedTokens,
) -> ApiResult<Staged<HeartbeatResponse>> {
    // 1. Shape.
    let machine_id = body_string(&body, "machineId")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::validation("machineId", "non-blank", "machineId is required"))?;
    let agent_id = body_string(&body, "agentId")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ApiError::validation("agentId", "non-blank", "agentId is required"))?;
    let body_token = body_string(&body, "agentToken")?;
    let lease = match body_integer(&body, "leaseSeconds")? {
        Some(lease) => Some(lease),
        None => body_integer(&body, "leaseTtlSeconds")?,
    };
    let entries: Vec<Map<String, Value>> = match body.get("endpoints") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(map) => Ok(map.clone()),
                _ => Err(ApiError::validation(
                    &format!("endpoints[{i}]"),
                    "object",
                    format!("endpoints[{i}] must be an object"),
                )),
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => {
            return Err(ApiError::validation(
                "endpoints",
                "array",
                "endpoints must be an array",
            ));
        }
    };

    // 2. A token, from one place or several places that agree.
    let mut tokens: Vec<String> = [
        body_token,
        presented.authorization_bearer,
        presented.pairing_header,
    ]
    .into_iter()
    .flatten()
    .collect();
    tokens.dedup();
    tokens.sort();
    tokens.dedup();
    let token = match tokens.as_slice() {
        [] => {
            return Err(ApiError::new(
                ErrorCode::AGENT_AUTH_REQUIRED,
                "The machine-agent token is required",
            ));
        }
        [token] => token.clone(),
        _ => {
            return Err(ApiError::new(
                ErrorCode::AGENT_AUTH_INVALID,
                "Different agent tokens were presented",
            )
            .with_reason("conflicting-tokens"));
        }
    };

    // 3–5. The agent, its token, its status. The agent and its machine are read together, and
    // the connection is kept for the transaction: the hot path takes one connection, once.
    let mut conn = app.store.acquire().await?;
    let (agent, machine) = store::get_with_machine(&mut conn, &agent_id)
        .await?
        .filter(|(a, _)| a.machine_id == machine_id)
        .ok_or_else(|| ApiError::not_found("machine-agent", &agent_id))?;
    let presented_hash = sha256_hex(token.as_bytes());
    if !bool::from(presented_hash.as_bytes().ct_eq(agent.token_hash.as_bytes())) {
        return Err(ApiError::new(
            ErrorCode::AGENT_AUTH_INVALID,
            "The machine-agent token is not valid",
        )
        .with_reason("bad-token"));
    }
    if agent.status == AgentStatus::Revoked {
        return Err(ApiError::new(
            ErrorCode::AGENT_PAIRING_INACTIVE,
            "The machine agent is revoked",
        )
        .with("status", "revoked"));
    }

    // 6. Gate B.
    let conn = machines::gate_b_holding(app, &machine, conn).await?;

    // 7. Lease and entries.
    let lease_s = lease.unwrap_or(DEFAULT_LEASE_S);
    if !LEASE_RANGE_S.contains(&lease_s) {
        let field = if body.get("leaseSeconds").is_some_and(|v| !v.is_null()) {
            "leaseSeconds"
        } else {
            "leaseTtlSeconds"
        };
        return Err(ApiError::validation(
            field,
            "30..86400",
            format!("{field} must be from 30 to 86400"),
        ));
    }
    let mut specs: Vec<EndpointSpec> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let at = format!("endpoints[{i}].");
        let fields: EndpointFields =
            serde_path_to_error::deserialize(Value::Object(camel_entry(entry))).map_err(|err| {
                let field = format!("{at}{}", err.path());
                ApiError::validation(&field, "type", format!("{field}: {}", err.inner()))
            })?;
        let spec = runtime::validate(&at, None, fields)?;
        if specs.iter().any(|s| s.provider_key == spec.provider_key) {
            return Err(ApiError::validation(
                &format!("{at}providerKey"),
                "unique",
                "each providerKey may appear once per heartbeat",
            ));
        }
        specs.push(spec);
    }

    // 8. The agent's provider-key allow-list; nothing is applied when one entry is refused.
    if let Some(spec) = specs
        .iter()
        .find(|s| !agent.allowed_provider_keys.contains(&s.provider_key))
    {
        return Err(ApiError::new(
            ErrorCode::AGENT_POLICY_DENIED,
            "This agent may not register that provider key",
        )
        .with("providerKey", spec.provider_key.clone()));
    }

    // 9. One transaction.
    let now = app.clock.now_ms();
    let lease_expires_at = now + lease_s * 1000;
    let mut tx = app.store.begin_on(conn).await?;
    if !store::touch(&mut tx, &agent.id, now).await? {
        return Err(ApiError::new(
            ErrorCode::AGENT_PAIRING_INACTIVE,
            "The machine agent is revoked",
        )
        .with("status", "revoked"));
    }
    for spec in &mut specs {
        spec.lease_expires_at = Some(lease_expires_at);
        let sealed = spec
            .auth_token
            .as_deref()
            .map(|t| app.secrets.seal(t.as_bytes()));
        endpoints::upsert(
            &mut tx,
            &machine_id,
            Owner::Agent(&agent.id),
            spec,
            sealed,
            &new_id("rep_"),
            now,
        )
        .await?;
    }
    let mut payload = json!({
        "leaseSeconds": lease_s,
        "endpoints": specs.iter().map(|s| s.provider_key.as_str()).collect::<Vec<_>>(),
    });
    if agent.status != AgentStatus::Active {
        payload["statusFrom"] = json!(agent.status.as_str());
    }
    audit::record(
        &mut tx,
        now,
        audit_event(&agent.id, &machine_id, "machine-agent.heartbeat", payload),
    )
    .await?;
    let owned: Vec<_> = endpoints::list_for_agent(&mut tx, &agent.id)
        .await?
        .iter()
        .map(|e| e.view(now))
        .collect();

    let mut agent = agent;
    agent.status = AgentStatus::Active;
    agent.last_seen_at = Some(format_ms(now));
    agent.updated_at = format_ms(now);
    let response = HeartbeatResponse {
        item: HeartbeatItem {
            agent_id: agent.id.clone(),
            agent,
            lease_ttl_seconds: lease_s,
            observed_at: format_ms(now),
            endpoints: owned.clone(),
        },
        endpoints: owned,
    };
    Ok(Staged {
        tx,
        value: response,
    })
}
