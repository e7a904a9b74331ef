//! Policy CRUD and enforcement (spec orchestration.md §4).

use serde_json::json;

use super::model::{BudgetCap, BudgetCapInput, Policy, PolicyInput};
use super::store;
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::catalog::model::{ExecutionMode, Service};
use crate::clock::format_ms;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::paging::{ListPage, PageRequest, Position};
use crate::http::validate::{MAX_NAME, name_list, optional_text, required_text};
use crate::store::{Staged, Tx, new_id};

/// Attempts at a compare-and-set update that lost a race.
const UPDATE_ATTEMPTS: usize = 3;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found("policy", id)
}

/// What a service would cost, for the budget cap.
#[derive(Debug, Clone, Copy)]
pub enum Spend<'a> {
    /// Search and discovery: the service's fixed price, if it has one.
    FixedPrice,
    /// Orders and direct reads: the spend amount and currency.
    Amount {
        amount: f64,
        currency: Option<&'a str>,
    },
}

impl Policy {
    /// The rule of §4.3 that refuses `service`, if any.
    pub fn refuses(&self, service: &Service, spend: Spend<'_>) -> Option<&'static str> {
        if self.denied_skill_keys.contains(&service.skill_key) {
            return Some("denied-skill-key");
        }
        if !self.allowed_skill_keys.is_empty()
            && !self.allowed_skill_keys.contains(&service.skill_key)
        {
            return Some("skill-key-not-allowed");
        }
        if self.native_only && service.execution_mode != ExecutionMode::Native {
            return Some("native-only");
        }
        if !self.handoff_allowed && service.execution_mode == ExecutionMode::ExternalHandoff {
            return Some("handoff-not-allowed");
        }
        if !self.region_rules.is_empty()
            && !service.region.eq_ignore_ascii_case("global")
            && !self
                .region_rules
                .iter()
                .any(|r| r.eq_ignore_ascii_case(&service.region))
        {
            return Some("region-not-allowed");
        }
        if !self
            .required_capabilities
            .iter()
            .all(|c| service.capabilities.contains(c))
        {
            return Some("required-capabilities");
        }
        if let Some(cap) = &self.budget_cap {
            let (amount, currency) = match spend {
                Spend::FixedPrice => match service.pricing.fixed_amount() {
                    Some(price) => (price, service.pricing.currency.as_deref()),
                    None => return None,
                },
                Spend::Amount { amount, currency } => (amount, currency),
            };
            let same = currency.is_none_or(|c| c.eq_ignore_ascii_case(&cap.currency));
            if (same && amount > cap.amount) || (!same && amount > 0.0) {
                return Some("budget-cap");
            }
        }
        None
    }
}

/// Every policy passes `service` (search and discovery filter on this).
pub fn all_allow(policies: &[Policy], service: &Service, spend: Spend<'_>) -> bool {
    policies.iter().all(|p| p.refuses(service, spend).is_none())
}

/// Order creation and direct reads: `403 AGENT_POLICY_DENIED` naming the policy and the rule.
pub fn require_allowed(policies: &[Policy], service: &Service, spend: Spend<'_>) -> ApiResult<()> {
    for policy in policies {
        if let Some(rule) = policy.refuses(service, spend) {
            return Err(ApiError::new(
                ErrorCode::AGENT_POLICY_DENIED,
                format!(
                    "The machine's policy {} does not allow this service",
                    policy.name
                ),
            )
            .with("policyId", policy.id.clone())
            .with("rule", rule)
            .with("serviceId", service.id.clone()));
        }
    }
    Ok(())
}

/// The policies a machine references, in its order. Ids that no longer resolve are skipped
/// (they were checked when the machine was written, and policies are never deleted).
pub async fn of_machine(app: &App, policy_ids: &[String]) -> ApiResult<Vec<Policy>> {
    let mut found = store::get_many(&app.store, policy_ids).await?;
    found.sort_by_key(|p| policy_ids.iter().position(|id| *id == p.id));
    Ok(found)
}

/// `policyIds` of a machine write: each must name an existing policy.
pub async fn ensure_exist(app: &App, field: &str, ids: &[String]) -> ApiResult<()> {
    let found = store::get_many(&app.store, ids).await?;
    if let Some((i, missing)) = ids
        .iter()
        .enumerate()
        .find(|(_, id)| !found.iter().any(|p| &p.id == *id))
    {
        return Err(ApiError::validation(
            &format!("{field}[{i}]"),
            "existing policy",
            format!("Unknown policy {missing}"),
        )
        .with_reason("policy-not-found"));
    }
    Ok(())
}

fn budget_cap(value: BudgetCapInput) -> ApiResult<Option<BudgetCap>> {
    match (value.currency, value.amount) {
        (None, None) => Ok(None),
        (Some(currency), Some(amount)) => {
            if !amount.is_finite() || amount < 0.0 {
                return Err(ApiError::validation(
                    "budgetCap.amount",
                    ">= 0",
                    "budgetCap.amount must be a number >= 0",
                ));
            }
            let currency = required_text("budgetCap.currency", Some(currency), MAX_NAME)?;
            Ok(Some(BudgetCap { currency, amount }))
        }
        (None, Some(_)) => Err(ApiError::validation(
            "budgetCap.currency",
            "required",
            "budgetCap needs both currency and amount",
        )),
        (Some(_), None) => Err(ApiError::validation(
            "budgetCap.amount",
            "required",
            "budgetCap needs both currency and amount",
        )),
    }
}

/// The validated fields of a create or patch.
struct Fields {
    name: Option<String>,
    allowed_skill_keys: Option<Vec<String>>,
    denied_skill_keys: Option<Vec<String>>,
    /// `Some(None)`: clear the cap.
    budget_cap: Option<Option<BudgetCap>>,
    region_rules: Option<Vec<String>>,
    native_only: Option<bool>,
    handoff_allowed: Option<bool>,
    required_capabilities: Option<Vec<String>>,
}

fn validate(body: PolicyInput) -> ApiResult<Fields> {
    Ok(Fields {
        name: optional_text("name", body.name, MAX_NAME)?,
        allowed_skill_keys: name_list("allowedSkillKeys", body.allowed_skill_keys)?,
        denied_skill_keys: name_list("deniedSkillKeys", body.denied_skill_keys)?,
        budget_cap: body.budget_cap.map(budget_cap).transpose()?,
        region_rules: name_list("regionRules", body.region_rules)?,
        native_only: body.native_only,
        handoff_allowed: body.handoff_allowed,
        required_capabilities: name_list("requiredCapabilities", body.required_capabilities)?,
    })
}

fn event(policy: &Policy, event_type: &'static str, payload: serde_json::Value) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type: "policy",
        resource_id: policy.id.clone(),
        machine_id: None,
        payload,
    }
}

pub async fn create(app: &App, body: PolicyInput) -> ApiResult<Staged<Policy>> {
    if body.name.is_none() {
        return Err(ApiError::validation("name", "required", "name is required"));
    }
    let fields = validate(body)?;
    // `{}` clears a cap on PATCH; a new policy has none to clear (§4.2).
    if matches!(fields.budget_cap, Some(None)) {
        return Err(ApiError::validation(
            "budgetCap",
            "{amount, currency}",
            "budgetCap needs both currency and amount (omit it for no cap)",
        ));
    }
    let now = app.clock.now_ms();
    let policy = Policy {
        id: new_id("pol_"),
        name: fields.name.expect("checked above"),
        allowed_skill_keys: fields.allowed_skill_keys.unwrap_or_default(),
        denied_skill_keys: fields.denied_skill_keys.unwrap_or_default(),
        budget_cap: fields.budget_cap.flatten(),
        region_rules: fields.region_rules.unwrap_or_default(),
        native_only: fields.native_only.unwrap_or(false),
        handoff_allowed: fields.handoff_allowed.unwrap_or(true),
        required_capabilities: fields.required_capabilities.unwrap_or_default(),
        created_at: format_ms(now),
        updated_at: format_ms(now),
        created_at_ms: now,
        revision: 0,
    };
    let mut tx = app.store.begin().await?;
    store::insert(&mut tx, &policy).await?;
    audit::record(
        &mut tx,
        now,
        event(&policy, "policy.created", json!({"name": policy.name})),
    )
    .await?;
    Ok(Staged { tx, value: policy })
}

pub async fn get(app: &App, id: &str) -> ApiResult<Policy> {
    store::get(&app.store, id)
        .await?
        .ok_or_else(|| not_found(id))
}

pub async fn list(app: &App, page: &PageRequest) -> ApiResult<ListPage<Policy>> {
    let rows = store::list(&app.store, page.after.as_ref(), page.fetch_limit()).await?;
    Ok(page.finish(rows, |p| Position {
        t: p.created_at_ms,
        id: p.id.clone(),
    }))
}

/// `PATCH`. `None` when nothing changed: no write, no event. Lists replace the stored value.
pub async fn update(app: &App, id: &str, body: PolicyInput) -> ApiResult<(Option<Tx>, Policy)> {
    let fields = validate(body)?;
    for _ in 0..UPDATE_ATTEMPTS {
        let mut policy = get(app, id).await?;
        let mut changed: Vec<&'static str> = Vec::new();
        macro_rules! set {
            ($field:ident, $name:literal) => {
                if let Some(value) = &fields.$field
                    && &policy.$field != value
                {
                    policy.$field = value.clone();
                    changed.push($name);
                }
            };
        }
        set!(name, "name");
        set!(allowed_skill_keys, "allowedSkillKeys");
        set!(denied_skill_keys, "deniedSkillKeys");
        set!(budget_cap, "budgetCap");
        set!(region_rules, "regionRules");
        set!(native_only, "nativeOnly");
        set!(handoff_allowed, "handoffAllowed");
        set!(required_capabilities, "requiredCapabilities");
        if changed.is_empty() {
            return Ok((None, policy));
        }
        let now = app.clock.now_ms();
        policy.updated_at = format_ms(now);
        let mut tx = app.store.begin().await?;
        if !store::update(&mut tx, &policy, now).await? {
            continue;
        }
        policy.revision += 1;
        audit::record(
            &mut tx,
            now,
            event(&policy, "policy.updated", json!({"changedFields": changed})),
        )
        .await?;
        return Ok((Some(tx), policy));
    }
    Err(ApiError::new(
        ErrorCode::IDEMPOTENCY_CONFLICT,
        "The policy was changed concurrently; retry the request",
    )
    .with_reason("concurrent-update"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(value: serde_json::Value) -> Policy {
        let fields = validate(serde_json::from_value(value).unwrap()).unwrap();
        Policy {
            id: "pol_1".into(),
            name: "p".into(),
            allowed_skill_keys: fields.allowed_skill_keys.unwrap_or_default(),
            denied_skill_keys: fields.denied_skill_keys.unwrap_or_default(),
            budget_cap: fields.budget_cap.flatten(),
            region_rules: fields.region_rules.unwrap_or_default(),
            native_only: fields.native_only.unwrap_or(false),
            handoff_allowed: fields.handoff_allowed.unwrap_or(true),
            required_capabilities: fields.required_capabilities.unwrap_or_default(),
            created_at: String::new(),
            updated_at: String::new(),
            created_at_ms: 0,
            revision: 0,
        }
    }

    fn service(value: serde_json::Value) -> Service {
        let mut base = serde_json::json!({
            "id": "svc", "skillKey": "skill", "providerKey": "p", "providerId": "p",
            "providerLabel": "P", "serviceType": "compute.marketplace", "name": "n",
            "description": "d", "operations": ["run"], "authType": "none", "accessMode": "public",
            "executionMode": "native", "integrationStatus": "native", "distribution": "openapi",
            "maturity": "beta", "kind": "reference", "region": "eu", "requiresHumanEnablement": false,
            "capabilities": ["gpu"],
        });
        base.as_object_mut()
            .unwrap()
            .extend(value.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn each_rule_refuses_what_it_names() {
        use serde_json::json;
        let plain = service(json!({}));
        let handoff = service(json!({"executionMode": "external-handoff",
            "handoff": {"label": "l", "url": "https://x.example"}}));
        let priced =
            service(json!({"pricing": {"mode": "fixed", "amount": 7, "currency": "USDC"}}));
        for (rules, svc, refused) in [
            (
                json!({"deniedSkillKeys": ["skill"]}),
                &plain,
                Some("denied-skill-key"),
            ),
            (
                json!({"allowedSkillKeys": ["other"]}),
                &plain,
                Some("skill-key-not-allowed"),
            ),
            (json!({"allowedSkillKeys": ["skill"]}), &plain, None),
            (json!({"nativeOnly": true}), &handoff, Some("native-only")),
            (
                json!({"handoffAllowed": false}),
                &handoff,
                Some("handoff-not-allowed"),
            ),
            (json!({"handoffAllowed": false}), &plain, None),
            (
                json!({"regionRules": ["us"]}),
                &plain,
                Some("region-not-allowed"),
            ),
            (json!({"regionRules": ["EU"]}), &plain, None),
            (
                json!({"requiredCapabilities": ["gpu", "tpu"]}),
                &plain,
                Some("required-capabilities"),
            ),
            (
                json!({"budgetCap": {"currency": "usdc", "amount": 5}}),
                &priced,
                Some("budget-cap"),
            ),
            (
                json!({"budgetCap": {"currency": "USDC", "amount": 7}}),
                &priced,
                None,
            ),
            (
                json!({"budgetCap": {"currency": "EUR", "amount": 100}}),
                &priced,
                Some("budget-cap"),
            ),
            (
                json!({"budgetCap": {"currency": "EUR", "amount": 1}}),
                &plain,
                None,
            ),
        ] {
            assert_eq!(
                policy(rules.clone()).refuses(svc, Spend::FixedPrice),
                refused,
                "{rules}"
            );
        }
        let global = service(json!({"region": "global"}));
        assert_eq!(
            policy(json!({"regionRules": ["us"]})).refuses(&global, Spend::FixedPrice),
            None
        );
        let cap = policy(json!({"budgetCap": {"currency": "USDC", "amount": 5}}));
        assert_eq!(
            cap.refuses(
                &plain,
                Spend::Amount {
                    amount: 6.0,
                    currency: Some("USDC")
                }
            ),
            Some("budget-cap")
        );
        assert_eq!(
            cap.refuses(
                &plain,
                Spend::Amount {
                    amount: 5.0,
                    currency: Some("USDC")
                }
            ),
            None
        );
        assert_eq!(
            cap.refuses(
                &plain,
                Spend::Amount {
                    amount: 0.0,
                    currency: Some("EUR")
                }
            ),
            None
        );
        assert_eq!(
            cap.refuses(
                &plain,
                Spend::Amount {
                    amount: 1.0,
                    currency: Some("EUR")
                }
            ),
            Some("budget-cap")
        );
        let err = require_allowed(
            &[cap],
            &plain,
            Spend::Amount {
                amount: 9.0,
                currency: None,
            },
        )
        .unwrap_err();
        assert_eq!(err.code, ErrorCode::AGENT_POLICY_DENIED);
        assert_eq!(err.details["policyId"], "pol_1");
        assert_eq!(err.details["rule"], "budget-cap");
    }

    #[test]
    fn a_budget_cap_needs_both_fields() {
        for (value, field) in [
            (
                serde_json::json!({"budgetCap": {"amount": 1}}),
                "budgetCap.currency",
            ),
            (
                serde_json::json!({"budgetCap": {"currency": "X"}}),
                "budgetCap.amount",
            ),
            (
                serde_json::json!({"budgetCap": {"currency": "X", "amount": -1}}),
                "budgetCap.amount",
            ),
        ] {
            let err = validate(serde_json::from_value(value).unwrap())
                .err()
                .unwrap();
            assert_eq!(err.details["field"], field);
        }
        let cleared =
            validate(serde_json::from_value(serde_json::json!({"budgetCap": {}})).unwrap())
                .ok()
                .unwrap();
        assert_eq!(cleared.budget_cap, Some(None));
    }
}
