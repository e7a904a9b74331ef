//! Market search (spec catalogue-and-search.md §8): validate, gate, rank, quote, store.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::model::{
    Budget, MarketQuote, MarketSearch, NormalizedTask, SearchRequest, SearchStatus,
};
use super::ranking::{self, Context, Criteria, credential_key};
use super::store;
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::catalog::model::ServiceType;
use crate::catalog::service::{self as catalog, MachineScope};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult};
use crate::http::validate::{MAX_ITEMS, MAX_NAME, MAX_TEXT, name_list, optional_text};
use crate::machines::service as machines;
use crate::pairings::auth::PairingAuth;
use crate::pairings::service as pairings;
use crate::store::{Staged, new_id};

/// `maxResults`: default and ceiling.
pub const DEFAULT_RESULTS: i64 = 10;
pub const MAX_RESULTS: i64 = 25;

/// What every stored copy of a request carries in place of a credential or payment value.
pub const REDACTED: &str = "[REDACTED]";

/// A service type in a request: canonical, or an alias (§7).
pub fn service_type(field: &str, value: &str) -> ApiResult<ServiceType> {
    ServiceType::parse_with_alias(value).ok_or_else(|| {
        ApiError::validation(
            field,
            "ServiceType or alias",
            format!(
                "{field} must be one of {} or an alias (storage, compute, identity, location, rtk, gnss, defi, commerce)",
                ServiceType::allowed()
            ),
        )
    })
}

fn amount(field: &str, value: Option<f64>) -> ApiResult<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(ApiError::validation(
            field,
            ">= 0",
            format!("{field} must be a number >= 0"),
        )),
        other => Ok(other),
    }
}

/// `budget`: every amount a number ≥ 0, the currency non-blank.
pub fn budget(field: &str, value: Option<Budget>) -> ApiResult<Option<Budget>> {
    let Some(b) = value else { return Ok(None) };
    Ok(Some(Budget {
        max: amount(&format!("{field}.max"), b.max)?,
        amount: amount(&format!("{field}.amount"), b.amount)?,
        preferred: amount(&format!("{field}.preferred"), b.preferred)?,
        currency: optional_text(&format!("{field}.currency"), b.currency, MAX_NAME)?,
    }))
}

/// `providerCredentials`: provider key → {credential name → string}. Used for the current request
/// only; never stored.
pub fn provider_credentials(value: Option<Map<String, Value>>) -> ApiResult<Map<String, Value>> {
    let Some(value) = value else {
        return Ok(Map::new());
    };
    if value.len() > MAX_ITEMS {
        return Err(ApiError::validation(
            "providerCredentials",
            &format!("at most {MAX_ITEMS} entries"),
            format!("providerCredentials may name at most {MAX_ITEMS} providers"),
        ));
    }
    for (provider, set) in &value {
        let field = format!("providerCredentials.{provider}");
        let Some(set) = set.as_object() else {
            return Err(ApiError::validation(
                &field,
                "object",
                format!("{field} must be an object of credential names to strings"),
            ));
        };
        for (name, secret) in set {
            if secret.as_str().is_none_or(|s| s.chars().count() > MAX_TEXT) {
                let field = format!("{field}.{name}");
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

/// The request as stored: every `providerCredentials` value replaced by `"[REDACTED]"`, names
/// kept (README §3.13).
pub fn redacted(mut payload: Map<String, Value>) -> Value {
    if let Some(Value::Object(providers)) = payload.get_mut("providerCredentials") {
        for set in providers.values_mut() {
            match set {
                Value::Object(entries) => {
                    for value in entries.values_mut() {
                        *value = json!(REDACTED);
                    }
                }
                other => *other = json!(REDACTED),
            }
        }
    }
    Value::Object(payload)
}

/// The normalised keys of the providers the request carries credentials for.
pub fn credential_providers(credentials: &Map<String, Value>) -> HashSet<String> {
    credentials.keys().map(|k| credential_key(k)).collect()
}

/// `maxResults`: an integer ≥ 1, clamped to 25 however large it is (the clients pass any
/// integer through; one beyond 64 bits arrives as a float with no fraction).
fn max_results(n: &serde_json::Number) -> ApiResult<i64> {
    let too_small = || ApiError::validation("maxResults", ">= 1", "maxResults must be at least 1");
    if let Some(n) = n.as_i64() {
        return if n < 1 {
            Err(too_small())
        } else {
            Ok(n.min(MAX_RESULTS))
        };
    }
    if n.as_u64().is_some() {
        return Ok(MAX_RESULTS);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= 1.0 => Ok(MAX_RESULTS),
        Some(f) if f.fract() == 0.0 => Err(too_small()),
        _ => Err(ApiError::validation(
            "maxResults",
            "integer",
            "maxResults must be an integer",
        )),
    }
}

struct Validated {
    machine_id: Option<String>,
    agent_pairing_id: Option<String>,
    task: NormalizedTask,
    credentials: Map<String, Value>,
}

fn validate(body: SearchRequest) -> ApiResult<Validated> {
    let machine_id = optional_text("machineId", body.machine_id, MAX_NAME)?;
    let agent_pairing_id = optional_text("agentPairingId", body.agent_pairing_id, MAX_NAME)?;
    let raw_type = body.service_type.ok_or_else(|| {
        ApiError::validation("serviceType", "required", "serviceType is required")
    })?;
    let service_type = service_type("serviceType", &raw_type)?;
    let max_results = match body.max_results {
        None => DEFAULT_RESULTS,
        Some(n) => max_results(&n)?,
    };
    let task = NormalizedTask {
        service_type,
        operation: optional_text("operation", body.operation, MAX_NAME)?,
        required_capabilities: name_list("requiredCapabilities", body.required_capabilities)?
            .unwrap_or_default(),
        region: optional_text("region", body.region, MAX_NAME)?,
        allow_external_handoff: body.allow_external_handoff.unwrap_or(true),
        require_native_execution: body.require_native_execution.unwrap_or(false),
        max_results,
        budget: budget("budget", body.budget)?,
    };
    Ok(Validated {
        machine_id,
        agent_pairing_id,
        task,
        credentials: provider_credentials(body.provider_credentials)?,
    })
}

/// `POST /market/search`: authenticated by the middleware (`token` when a pairing token came).
pub async fn search(
    app: &App,
    token: Option<&PairingAuth>,
    raw: Map<String, Value>,
) -> ApiResult<Staged<MarketSearch>> {
    let body: SearchRequest = crate::http::json::decode(Value::Object(raw.clone()))?;
    let request = validate(body)?;
    let machine_id = match (token, request.machine_id) {
        (Some(token), None) => token.claims.machine_id.clone(),
        (_, Some(id)) => id,
        (None, None) => {
            return Err(ApiError::validation(
                "machineId",
                "required",
                "machineId is required without a pairing token",
            ));
        }
    };
    // Check 9 of the token before anything is looked up for the ids the body names.
    if let Some(token) = token {
        let named: Vec<&str> = request
            .agent_pairing_id
            .iter()
            .map(String::as_str)
            .collect();
        token.bind(&[&machine_id], &named)?;
    }
    let machine = machines::gate_c(app, &machine_id).await?;
    let pairing =
        pairings::market_pairing(app, token, &machine_id, request.agent_pairing_id.as_deref())
            .await?;
    let now = app.clock.now_ms();
    let scope = MachineScope::of(app, machine, now).await?;
    let skills = catalog::skill_states(app).await?;
    let request_credentials = credential_providers(&request.credentials);

    let task = &request.task;
    let criteria = Criteria {
        operation: task.operation.as_deref(),
        required_capabilities: &task.required_capabilities,
        region: task.region.as_deref(),
        allow_external_handoff: task.allow_external_handoff,
        require_native_execution: task.require_native_execution,
        budget_max: task.budget.as_ref().and_then(|b| b.max),
        budget_currency: task.budget.as_ref().and_then(|b| b.currency.as_deref()),
        preferred_skill_keys: &[],
        limit: task.max_results as usize,
    };
    let context = Context {
        scope: &scope,
        delegation: Some(&pairing.delegation_policy),
        skills: &skills,
        request_credentials: &request_credentials,
    };
    let candidates = ranking::rank(
        app.catalog.services_of_type(task.service_type),
        task.service_type,
        &criteria,
        &context,
    );

    let search_id = new_id("srch_");
    let expires_at = now + app.config.market_quote_ttl_ms as i64;
    let quotes: Vec<MarketQuote> = candidates
        .iter()
        .map(|c| MarketQuote {
            id: new_id("quo_"),
            search_id: search_id.clone(),
            service_id: c.service.id.clone(),
            skill_key: c.service.skill_key.clone(),
            provider_key: c.service.provider_key.clone(),
            execution_mode: c.service.execution_mode,
            integration_status: c.integration_status,
            operation: task
                .operation
                .clone()
                .unwrap_or_else(|| c.service.operations[0].clone()),
            score: c.score,
            reasons: c.reasons.clone(),
            pricing: c.service.pricing.clone(),
            payment: c.service.payment.clone(),
            expires_at: format_ms(expires_at),
            handoff: c.service.handoff.clone(),
            created_at: format_ms(now),
            expires_at_ms: expires_at,
        })
        .collect();
    let search = MarketSearch {
        id: search_id,
        machine_id: machine_id.clone(),
        agent_pairing_id: Some(pairing.id.clone()),
        request_payload: redacted(raw),
        normalized_task: request.task,
        status: if quotes.is_empty() {
            SearchStatus::NoMatch
        } else {
            SearchStatus::Completed
        },
        quotes,
        created_at: format_ms(now),
        created_at_ms: now,
    };

    let mut tx = app.store.begin().await?;
    store::insert(&mut tx, &search).await?;
    audit::record(
        &mut tx,
        now,
        NewAuditEvent {
            actor: Actor::Api,
            event_type: "market.search.created",
            resource_type: "market-search",
            resource_id: search.id.clone(),
            machine_id: Some(machine_id.clone()),
            payload: json!({
                "machineId": machine_id,
                "agentPairingId": search.agent_pairing_id,
                "serviceType": search.normalized_task.service_type,
                "status": search.status,
                "quoteCount": search.quotes.len(),
            }),
        },
    )
    .await?;
    Ok(Staged { tx, value: search })
}

pub async fn get_search(app: &App, id: &str) -> ApiResult<MarketSearch> {
    store::get(&app.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found("market-search", id))
}

pub use store::QuoteRecord;

/// A quote with its search's machine and pairing (orders cite quotes).
pub async fn find_quote(app: &App, id: &str) -> ApiResult<Option<QuoteRecord>> {
    Ok(store::get_quote(&app.store, id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_requests_keep_credential_names_only() {
        let payload = json!({
            "serviceType": "storage",
            "providerCredentials": {"walrus": {"aggregatorUrl": "https://secret.example", "publisherToken": "tok"},
                                    "odd": "not-an-object"},
        });
        let stored = redacted(payload.as_object().unwrap().clone());
        assert_eq!(
            stored,
            json!({"serviceType": "storage", "providerCredentials": {
                "walrus": {"aggregatorUrl": REDACTED, "publisherToken": REDACTED}, "odd": REDACTED}})
        );
        assert!(!stored.to_string().contains("secret.example"));
    }

    #[test]
    fn max_results_is_clamped_and_defaulted() {
        let body = |n: Option<i64>| SearchRequest {
            machine_id: None,
            agent_pairing_id: None,
            service_type: Some("compute".into()),
            operation: None,
            required_capabilities: None,
            region: None,
            max_results: n.map(serde_json::Number::from),
            allow_external_handoff: None,
            require_native_execution: None,
            budget: None,
            provider_credentials: None,
        };
        assert_eq!(validate(body(None)).ok().unwrap().task.max_results, 10);
        assert_eq!(
            validate(body(Some(1000))).ok().unwrap().task.max_results,
            25
        );
        assert_eq!(validate(body(Some(3))).ok().unwrap().task.max_results, 3);
        let err = validate(body(Some(0))).err().unwrap();
        assert_eq!(err.details["field"], "maxResults");
        let huge: serde_json::Number = serde_json::from_str("100000000000000000000").unwrap();
        assert_eq!(
            max_results(&huge).unwrap(),
            25,
            "beyond 64 bits is still clamped"
        );
        let fraction: serde_json::Number = serde_json::from_str("2.5").unwrap();
        assert!(max_results(&fraction).is_err());
        let task = validate(body(None)).ok().unwrap().task;
        assert_eq!(task.service_type, ServiceType::ComputeMarketplace);
        assert!(task.allow_external_handoff && !task.require_native_execution);
    }
}
