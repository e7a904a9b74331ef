//! Skills, skill config, services and adapters (spec catalogue-and-search.md §3–§6), and the
//! machine-scoped view of a service that search, discovery and orders share.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::model::{
    AdapterSetup, AuthState, AuthType, Consumption, Direction, ExecutionMode, IntegrationStatus,
    Kind, MarketService, Service, ServiceType, SkillConfig, SkillManifest, SkillScope, SkillSource,
    SkillSummary, UpdateSkillConfig,
};
use super::store::{self, ConfigRow};
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::paging::{ListPage, PageRequest};
use crate::http::validate::{MAX_ITEMS, MAX_NAME, MAX_TEXT};
use crate::machines::model::Machine;
use crate::pairings::auth::PairingAuth;
use crate::policies::model::Policy;
use crate::policies::service::Spend;
use crate::runtime::model::{EndpointRow, EndpointStatus};

fn skill_not_found(key: &str) -> ApiError {
    ApiError::not_found("skill", key)
}

/// Every stored skill config, by skill key. Skills without a row are enabled and have no
/// credentials.
#[derive(Debug, Default)]
pub struct SkillStates {
    configs: HashMap<String, ConfigRow>,
}

impl SkillStates {
    pub fn enabled(&self, skill_key: &str) -> bool {
        self.configs.get(skill_key).is_none_or(|c| c.enabled)
    }

    /// States with the given skills disabled (tests).
    #[cfg(test)]
    pub fn with_disabled(skill_keys: &[&str]) -> SkillStates {
        SkillStates {
            configs: skill_keys
                .iter()
                .map(|key| {
                    let row = ConfigRow {
                        skill_key: key.to_string(),
                        enabled: false,
                        settings: Map::new(),
                        sealed_credentials: None,
                        updated_at: 0,
                    };
                    (key.to_string(), row)
                })
                .collect(),
        }
    }

    pub fn has_credentials(&self, skill_key: &str) -> bool {
        self.configs
            .get(skill_key)
            .is_some_and(|c| c.sealed_credentials.is_some())
    }
}

pub async fn skill_states(app: &App) -> ApiResult<SkillStates> {
    let configs = store::all(&app.store).await?;
    Ok(SkillStates {
        configs: configs
            .into_iter()
            .map(|c| (c.skill_key.clone(), c))
            .collect(),
    })
}

/// The stored credentials of a skill, decrypted, for a call the server makes to its provider.
pub async fn stored_credentials(
    app: &App,
    skill_key: &str,
) -> ApiResult<Option<Map<String, Value>>> {
    let Some(sealed) = store::get(&app.store, skill_key)
        .await?
        .and_then(|c| c.sealed_credentials)
    else {
        return Ok(None);
    };
    open_credentials(app, &sealed).map(Some)
}

fn open_credentials(app: &App, sealed: &str) -> ApiResult<Map<String, Value>> {
    let bytes = app
        .secrets
        .open(sealed)
        .map_err(|e| ApiError::internal("opening stored skill credentials", e))?;
    serde_json::from_slice(&bytes).map_err(|e| ApiError::internal("stored skill credentials", e))
}

fn summary(skill: &super::model::Skill, states: &SkillStates) -> SkillSummary {
    let auth_state = if matches!(skill.auth_type, AuthType::None | AuthType::Local)
        || states.has_credentials(&skill.key)
    {
        AuthState::Configured
    } else {
        AuthState::Unconfigured
    };
    SkillSummary {
        key: skill.key.clone(),
        provider_key: skill.provider_key.clone(),
        label: skill.label.clone(),
        description: skill.description.clone(),
        direction: skill.direction,
        scope: skill.scope,
        source: skill.source,
        listed_by: skill.listed_by.clone(),
        last_verified_at: skill.last_verified_at.clone(),
        kind: skill.kind,
        service_types: skill.service_types.clone(),
        operations: skill.operations.clone(),
        auth_type: skill.auth_type,
        auth_state,
        access_mode: skill.access_mode,
        distribution: skill.distribution,
        maturity: skill.maturity,
        execution_mode: skill.execution_mode,
        integration_status: skill.integration_status,
        required_env: skill.required_env.clone(),
        requires_human_enablement: skill.requires_human_enablement,
        reference_url: skill.reference_url.clone(),
        artifact_url: skill.artifact_url.clone(),
        handoff: skill.handoff.clone(),
        enabled: states.enabled(&skill.key),
        updated_at: format_ms(skill.updated_at_ms),
    }
}

/// The exact-match filters of `GET /skills`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SkillFilters {
    pub scope: Option<SkillScope>,
    pub direction: Option<Direction>,
    pub source: Option<SkillSource>,
}

pub async fn list_skills(
    app: &App,
    filters: SkillFilters,
    page: &PageRequest,
) -> ApiResult<ListPage<SkillSummary>> {
    let states = skill_states(app).await?;
    Ok(page.keyed(
        app.catalog
            .skills()
            .filter(|s| filters.scope.is_none_or(|v| s.scope == v))
            .filter(|s| filters.direction.is_none_or(|v| s.direction == v))
            .filter(|s| filters.source.is_none_or(|v| s.source == v))
            .map(|s| (s.key.as_str(), summary(s, &states))),
    ))
}

pub async fn get_skill(app: &App, key: &str) -> ApiResult<SkillSummary> {
    let skill = app.catalog.skill(key).ok_or_else(|| skill_not_found(key))?;
    Ok(summary(skill, &skill_states(app).await?))
}

pub fn get_manifest(app: &App, key: &str) -> ApiResult<SkillManifest> {
    app.catalog
        .manifest(key)
        .cloned()
        .ok_or_else(|| skill_not_found(key))
}

fn config_view(skill: &super::model::Skill, row: Option<&ConfigRow>) -> SkillConfig {
    SkillConfig {
        skill_key: skill.key.clone(),
        provider_key: skill.provider_key.clone(),
        enabled: row.is_none_or(|r| r.enabled),
        settings: row.map(|r| r.settings.clone()).unwrap_or_default(),
        has_credentials: row.is_some_and(|r| r.sealed_credentials.is_some()),
        updated_at: format_ms(row.map_or(skill.updated_at_ms, |r| r.updated_at)),
    }
}

/// `credentials`: string → non-blank string.
fn credentials(value: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    if value.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            "credentials",
            &format!("at most {MAX_ITEMS} entries"),
            format!("credentials may have at most {MAX_ITEMS} entries"),
        ));
    }
    for (key, item) in &value {
        let field = format!("credentials.{key}");
        if key.trim().is_empty() || key.chars().count() > MAX_NAME {
            return Err(ApiError::validation(
                &field,
                "1..255 characters",
                "credential names must be 1 to 255 characters",
            ));
        }
        match item {
            Value::String(s) if !s.trim().is_empty() && s.chars().count() <= MAX_TEXT => {}
            Value::String(_) => {
                return Err(ApiError::validation(
                    &field,
                    "non-blank string",
                    format!("{field} must be a non-blank string of at most {MAX_TEXT} characters"),
                ));
            }
            _ => {
                return Err(ApiError::validation(
                    &field,
                    "string",
                    format!("{field} must be a string"),
                ));
            }
        }
    }
    Ok(value)
}

/// `settings`: string → string, number or boolean.
fn settings(value: Map<String, Value>) -> ApiResult<Map<String, Value>> {
    if value.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            "settings",
            &format!("at most {MAX_ITEMS} entries"),
            format!("settings may have at most {MAX_ITEMS} entries"),
        ));
    }
    for (key, item) in &value {
        let field = format!("settings.{key}");
        if key.trim().is_empty() || key.chars().count() > MAX_NAME {
            return Err(ApiError::validation(
                &field,
                "1..255 characters",
                "setting names must be 1 to 255 characters",
            ));
        }
        match item {
            Value::String(s) if s.chars().count() <= MAX_TEXT => {}
            Value::Number(_) | Value::Bool(_) => {}
            _ => {
                return Err(ApiError::validation(
                    &field,
                    "string, number or boolean",
                    format!(
                        "{field} must be a string, a number or a boolean (not null, an object or an array)"
                    ),
                ));
            }
        }
    }
    Ok(value)
}

fn keys(map: &Map<String, Value>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

/// `PATCH /skills/{key}/config`. `None` when nothing changed: no write, no event.
pub async fn update_config(
    app: &App,
    key: &str,
    body: UpdateSkillConfig,
) -> ApiResult<(Option<crate::store::Tx>, SkillConfig)> {
    let skill = app.catalog.skill(key).ok_or_else(|| skill_not_found(key))?;
    let new_credentials: Option<Map<String, Value>> =
        body.credentials.map(credentials).transpose()?;
    let new_settings = body.settings.map(settings).transpose()?;

    // Two attempts: a first write that finds the row inserted meanwhile decides again on it.
    for _ in 0..2 {
        let mut tx = app.store.begin().await?;
        app.store
            .lock_row_by(&mut tx, "skill_configs", "skill_key", key)
            .await?;
        let existing = store::get_for_update(&mut tx, key).await?;
        let sealed = existing.as_ref().and_then(|r| r.sealed_credentials.clone());
        let enabled = body
            .enabled
            .unwrap_or(existing.as_ref().is_none_or(|r| r.enabled));
        let settings = new_settings.clone().unwrap_or_else(|| {
            existing
                .as_ref()
                .map(|r| r.settings.clone())
                .unwrap_or_default()
        });
        // Credentials are opened only to compare them with new ones or to name their keys; a
        // set that no longer opens (the secrets key changed) can still be replaced or cleared.
        let stored = sealed.as_deref().map(|s| open_credentials(app, s));
        let (sealed_credentials, credential_keys, credentials_unchanged) = match &new_credentials {
            // `{}` clears the credential set.
            Some(set) if set.is_empty() => (None, Vec::new(), sealed.is_none()),
            Some(set) => (
                Some(
                    app.secrets
                        .seal(Value::Object(set.clone()).to_string().as_bytes()),
                ),
                keys(set),
                matches!(&stored, Some(Ok(old)) if old == set),
            ),
            None => (
                sealed.clone(),
                match &stored {
                    Some(Ok(old)) => keys(old),
                    _ => Vec::new(),
                },
                true,
            ),
        };

        let unchanged = existing.as_ref().is_none_or(|r| r.enabled) == enabled
            && existing
                .as_ref()
                .map(|r| &r.settings)
                .unwrap_or(&Map::new())
                == &settings
            && credentials_unchanged;
        if unchanged {
            drop(tx);
            return Ok((None, config_view(skill, existing.as_ref())));
        }

        let now = app.clock.now_ms();
        let row = ConfigRow {
            skill_key: key.to_string(),
            enabled,
            settings,
            sealed_credentials: if credentials_unchanged {
                sealed
            } else {
                sealed_credentials
            },
            updated_at: now,
        };
        if existing.is_some() {
            store::update(&mut tx, &row).await?;
        } else if !store::insert_new(&mut tx, &row).await? {
            continue;
        }
        audit::record(
            &mut tx,
            now,
            NewAuditEvent {
                actor: Actor::Api,
                event_type: "skill.config-updated",
                resource_type: "skill",
                resource_id: key.to_string(),
                machine_id: None,
                payload: json!({
                    "enabled": row.enabled,
                    "settingsKeys": keys(&row.settings),
                    "credentialKeys": credential_keys,
                    "hasCredentials": row.sealed_credentials.is_some(),
                }),
            },
        )
        .await?;
        return Ok((Some(tx), config_view(skill, Some(&row))));
    }
    Err(ApiError::new(
        ErrorCode::IDEMPOTENCY_CONFLICT,
        "The skill's config was changed concurrently; retry the request",
    )
    .with_reason("concurrent-update"))
}

/// What a machine changes in the view of a service (§3).
pub struct MachineScope {
    pub machine: Machine,
    /// Provider keys with an effectively `active` runtime endpoint on the machine.
    active_runtimes: HashSet<String>,
    /// The machine's runtime endpoints, by provider key.
    pub endpoints: HashMap<String, EndpointRow>,
    /// The machine's policies (orchestration §4).
    pub policies: Vec<Policy>,
}

impl MachineScope {
    /// The machine's view, read at `now_ms` (effective endpoint statuses), with the policies
    /// its `policyIds` name.
    pub async fn of(app: &App, machine: Machine, now_ms: i64) -> ApiResult<MachineScope> {
        let endpoints = crate::runtime::service::machine_endpoints(app, &machine.id).await?;
        let policies = crate::policies::service::of_machine(app, &machine.policy_ids).await?;
        let mut scope = MachineScope::from_endpoints(machine, endpoints, now_ms);
        scope.policies = policies;
        Ok(scope)
    }

    pub fn from_endpoints(
        machine: Machine,
        endpoints: Vec<EndpointRow>,
        now_ms: i64,
    ) -> MachineScope {
        let active_runtimes = endpoints
            .iter()
            .filter(|e| e.effective_status(now_ms) == EndpointStatus::Active)
            .map(|e| e.provider_key.clone())
            .collect();
        MachineScope {
            machine,
            active_runtimes,
            endpoints: endpoints
                .into_iter()
                .map(|e| (e.provider_key.clone(), e))
                .collect(),
            policies: Vec::new(),
        }
    }

    /// Whether the machine has an effectively active runtime endpoint for `provider_key`.
    pub fn runtime_active(&self, provider_key: &str) -> bool {
        self.active_runtimes.contains(provider_key)
    }

    /// The service's integration status on this machine: a `runtime` service is `native` only
    /// while the machine's runtime endpoint for its provider is effectively active.
    pub fn integration_status(&self, service: &Service) -> IntegrationStatus {
        if service.kind == Kind::Runtime {
            if self.runtime_active(&service.provider_key) {
                IntegrationStatus::Native
            } else {
                IntegrationStatus::LocalConfigRequired
            }
        } else {
            service.integration_status
        }
    }

    /// Whether every policy of the machine lets the service appear in lists, search and
    /// discovery (a fixed price counts against a budget cap).
    pub fn policies_allow(&self, service: &Service) -> bool {
        crate::policies::service::all_allow(&self.policies, service, Spend::FixedPrice)
    }
}

/// `MarketService` for `service`, machine-scoped when `scope` is given.
pub fn view(service: &Service, scope: Option<&MachineScope>, now_ms: i64) -> MarketService {
    let integration_status = scope.map_or(service.integration_status, |s| {
        s.integration_status(service)
    });
    MarketService {
        id: service.id.clone(),
        skill_key: service.skill_key.clone(),
        provider_key: service.provider_key.clone(),
        provider_id: service.provider_id.clone(),
        provider_label: service.provider_label.clone(),
        company_name: service.company_name.clone(),
        service_type: service.service_type,
        name: service.name.clone(),
        description: service.description.clone(),
        operations: service.operations.clone(),
        capabilities: service.capabilities.clone(),
        auth_type: service.auth_type,
        access_mode: service.access_mode,
        execution_mode: service.execution_mode,
        integration_status,
        distribution: service.distribution,
        maturity: service.maturity,
        kind: service.kind,
        region: service.region.clone(),
        freshness_seconds: (now_ms - service.updated_at_ms).max(0) / 1000,
        requires_human_enablement: service.requires_human_enablement,
        metadata: service.metadata.clone(),
        pricing: service.pricing.clone(),
        payment: service.payment.clone(),
        endpoints: service.endpoints.clone(),
        endpoint: service.endpoints.first().cloned(),
        consumption: Consumption {
            adapter_setup_path: format!("/api/v1/market/adapters/{}", service.provider_key),
            service_detail_path: format!("/api/v1/market/services/{}", service.id),
            market_search_path: "/api/v1/market/search".into(),
        },
        operation_contracts: service.operation_contracts.clone(),
        reference_url: service.reference_url.clone(),
        artifact_url: service.artifact_url.clone(),
        handoff: service.handoff.clone(),
        updated_at: format_ms(service.updated_at_ms),
    }
}

/// The filters of `GET /market/services`.
#[derive(Debug, Default)]
pub struct ServiceFilters {
    pub machine_id: Option<String>,
    pub service_type: Option<ServiceType>,
    pub execution_mode: Option<ExecutionMode>,
    /// Lower-cased.
    pub provider_key: Option<String>,
}

/// The machine a services request is scoped to: the query's, else the token's claim (a query
/// naming another machine than the token's is refused). Gate A.
async fn scope_for(
    app: &App,
    auth: Option<&PairingAuth>,
    machine_id: Option<&str>,
) -> ApiResult<Option<MachineScope>> {
    let machine_id = match (auth, machine_id) {
        (Some(auth), Some(id)) => {
            auth.bind(&[id], &[])?;
            Some(id.to_string())
        }
        (Some(auth), None) => Some(auth.claims.machine_id.clone()),
        (None, id) => id.map(str::to_string),
    };
    let Some(machine_id) = machine_id else {
        return Ok(None);
    };
    let machine = crate::machines::service::find(app, &machine_id).await?;
    Ok(Some(
        MachineScope::of(app, machine, app.clock.now_ms()).await?,
    ))
}

pub async fn list_services(
    app: &App,
    auth: Option<&PairingAuth>,
    filters: &ServiceFilters,
    page: &PageRequest,
) -> ApiResult<ListPage<MarketService>> {
    let scope = scope_for(app, auth, filters.machine_id.as_deref()).await?;
    let now = app.clock.now_ms();
    let services: Box<dyn Iterator<Item = &Service>> = match filters.service_type {
        Some(service_type) => Box::new(app.catalog.services_of_type(service_type)),
        None => Box::new(app.catalog.services()),
    };
    Ok(page.keyed(
        services
            .filter(|s| filters.execution_mode.is_none_or(|m| s.execution_mode == m))
            .filter(|s| {
                filters
                    .provider_key
                    .as_deref()
                    .is_none_or(|k| s.provider_key == k)
            })
            .filter(|s| scope.as_ref().is_none_or(|scope| scope.policies_allow(s)))
            .map(|s| (s.id.as_str(), view(s, scope.as_ref(), now))),
    ))
}

pub async fn get_service(
    app: &App,
    auth: Option<&PairingAuth>,
    id: &str,
    machine_id: Option<&str>,
) -> ApiResult<MarketService> {
    let scope = scope_for(app, auth, machine_id).await?;
    let service = app
        .catalog
        .service(id)
        .ok_or_else(|| ApiError::not_found("service", id))?;
    Ok(view(service, scope.as_ref(), app.clock.now_ms()))
}

pub fn list_adapters(app: &App, page: &PageRequest) -> ListPage<AdapterSetup> {
    page.keyed(
        app.catalog
            .adapters()
            .map(|a| (a.provider_key.as_str(), a.clone())),
    )
}

pub fn get_adapter(app: &App, provider_key: &str) -> ApiResult<AdapterSetup> {
    let key = provider_key.to_lowercase();
    app.catalog
        .adapter(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found("adapter", provider_key))
}
