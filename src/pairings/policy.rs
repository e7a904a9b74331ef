//! Delegation policies (spec pairings-and-auth.md §3.2, §4.2, §10; orders-and-payments.md §3):
//! normalisation, the hash carried in pairing tokens, and the checks market features call.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::validate::{MAX_NAME, name_list, optional_text};

/// A normalised policy, as stored and returned: all seven keys always present.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegationPolicy {
    pub allowed_skill_keys: Vec<String>,
    pub denied_skill_keys: Vec<String>,
    pub allowed_service_ids: Vec<String>,
    pub denied_service_ids: Vec<String>,
    pub per_transaction_limit: Option<f64>,
    pub daily_spend_limit: Option<f64>,
    pub currency: Option<String>,
}

/// A policy as sent: every key optional, unknown keys ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegationPolicyInput {
    pub allowed_skill_keys: Option<Vec<String>>,
    pub denied_skill_keys: Option<Vec<String>>,
    pub allowed_service_ids: Option<Vec<String>>,
    pub denied_service_ids: Option<Vec<String>>,
    pub per_transaction_limit: Option<f64>,
    pub daily_spend_limit: Option<f64>,
    pub currency: Option<String>,
}

fn limit(field: &str, value: Option<f64>) -> ApiResult<Option<f64>> {
    match value {
        Some(v) if !v.is_finite() || v < 0.0 => Err(ApiError::validation(
            field,
            ">= 0",
            format!("{field} must be a number >= 0"),
        )),
        other => Ok(other),
    }
}

impl DelegationPolicyInput {
    /// Validates and normalises; keys left out take their defaults.
    pub fn normalise(self) -> ApiResult<DelegationPolicy> {
        let list = |name: &str, value: Option<Vec<String>>| -> ApiResult<Vec<String>> {
            Ok(name_list(&format!("delegationPolicy.{name}"), value)?.unwrap_or_default())
        };
        Ok(DelegationPolicy {
            allowed_skill_keys: list("allowedSkillKeys", self.allowed_skill_keys)?,
            denied_skill_keys: list("deniedSkillKeys", self.denied_skill_keys)?,
            allowed_service_ids: list("allowedServiceIds", self.allowed_service_ids)?,
            denied_service_ids: list("deniedServiceIds", self.denied_service_ids)?,
            per_transaction_limit: limit(
                "delegationPolicy.perTransactionLimit",
                self.per_transaction_limit,
            )?,
            daily_spend_limit: limit("delegationPolicy.dailySpendLimit", self.daily_spend_limit)?,
            currency: optional_text("delegationPolicy.currency", self.currency, MAX_NAME)?
                .map(|c| c.to_uppercase()),
        })
    }
}

impl DelegationPolicy {
    /// Lower-case hex SHA-256 of the RFC 8785 canonical JSON of the policy.
    pub fn hash(&self) -> String {
        let canonical = serde_jcs::to_string(self).expect("a policy serialises to canonical JSON");
        crate::crypto::sha256_hex(canonical.as_bytes())
    }

    /// §10: deny lists beat allow lists; an empty allow list allows all; both allow lists must
    /// match when both are set. `Err` names the rule that refused.
    pub fn allows(&self, skill_key: &str, service_id: &str) -> Result<(), &'static str> {
        let contains = |list: &[String], value: &str| list.iter().any(|v| v == value);
        if contains(&self.denied_skill_keys, skill_key) {
            return Err("denied-skill-key");
        }
        if contains(&self.denied_service_ids, service_id) {
            return Err("denied-service-id");
        }
        if !self.allowed_skill_keys.is_empty() && !contains(&self.allowed_skill_keys, skill_key) {
            return Err("skill-key-not-allowed");
        }
        if !self.allowed_service_ids.is_empty() && !contains(&self.allowed_service_ids, service_id)
        {
            return Err("service-id-not-allowed");
        }
        Ok(())
    }

    /// The list check at order creation and direct read: `AGENT_POLICY_DENIED`.
    pub fn require_allowed(&self, skill_key: &str, service_id: &str) -> ApiResult<()> {
        self.allows(skill_key, service_id).map_err(|rule| {
            ApiError::new(
                ErrorCode::AGENT_POLICY_DENIED,
                "The pairing's delegation policy does not allow this service",
            )
            .with("rule", rule)
            .with("skillKey", skill_key)
            .with("serviceId", service_id)
        })
    }

    /// Checks 4–6 of orders-and-payments.md §3 for a spend of `amount` in `currency`, given what
    /// the pairing already spent in the current UTC day (`spent_today`, cancelled and failed
    /// orders excluded). Amounts are exact decimals, so a hundred spends of 0.1 fit a limit of
    /// 10 exactly. The caller serialises per pairing so that concurrent orders cannot pass
    /// together.
    pub fn check_spend(
        &self,
        amount: Decimal,
        currency: Option<&str>,
        spent_today: Decimal,
        window: &SpendWindow,
    ) -> ApiResult<()> {
        let per_transaction = self.per_transaction_limit.and_then(crate::money::from_f64);
        let daily = self.daily_spend_limit.and_then(crate::money::from_f64);
        let has_limit = per_transaction.is_some() || daily.is_some();
        if let (Some(policy_currency), true) = (&self.currency, has_limit && amount > Decimal::ZERO)
            && !currency.is_some_and(|c| c.eq_ignore_ascii_case(policy_currency))
        {
            return Err(ApiError::new(
                ErrorCode::AGENT_POLICY_DENIED,
                "The spend currency differs from the delegation policy's currency",
            )
            .with_reason("currency-mismatch")
            .with("rule", "currency")
            .with("currency", currency.map(str::to_string))
            .with("policyCurrency", policy_currency.clone()));
        }
        let currency = currency
            .map(str::to_string)
            .or_else(|| self.currency.clone());
        let number = crate::money::to_f64;
        if let Some(limit) = per_transaction
            && amount > limit
        {
            return Err(ApiError::new(
                ErrorCode::AGENT_SPEND_LIMIT_EXCEEDED,
                "The amount is above the pairing's per-transaction limit",
            )
            .with("limit", number(limit))
            .with("amount", number(amount))
            .with("currency", currency));
        }
        let daily_total = spent_today + amount;
        if let Some(limit) = daily
            && daily_total > limit
        {
            return Err(ApiError::new(
                ErrorCode::AGENT_DAILY_LIMIT_EXCEEDED,
                "The pairing's daily spend limit would be exceeded",
            )
            .with("limit", number(limit))
            .with("dailyTotal", number(daily_total))
            .with("amount", number(amount))
            .with("currency", currency)
            .with("windowStartedAt", window.started_at.clone())
            .with("windowEndsAt", window.ends_at.clone()));
        }
        Ok(())
    }
}

/// The UTC day a daily limit counts over.
#[derive(Debug, Clone)]
pub struct SpendWindow {
    pub started_at_ms: i64,
    pub started_at: String,
    pub ends_at: String,
}

impl SpendWindow {
    pub fn containing(now_ms: i64) -> SpendWindow {
        const DAY_MS: i64 = 86_400_000;
        let start = now_ms.div_euclid(DAY_MS) * DAY_MS;
        SpendWindow {
            started_at_ms: start,
            started_at: crate::clock::format_ms(start),
            ends_at: crate::clock::format_ms(start + DAY_MS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An empty policy's JSON, for tests and documentation.
    fn empty_policy_json() -> serde_json::Value {
        json!({
            "allowedSkillKeys": [], "deniedSkillKeys": [], "allowedServiceIds": [], "deniedServiceIds": [],
            "perTransactionLimit": null, "dailySpendLimit": null, "currency": null,
        })
    }

    fn policy(value: serde_json::Value) -> DelegationPolicy {
        serde_json::from_value::<DelegationPolicyInput>(value)
            .unwrap()
            .normalise()
            .unwrap()
    }

    #[test]
    fn normalisation_and_defaults() {
        let p = policy(
            json!({"allowedSkillKeys": ["a", "b", "a"], "perTransactionLimit": 5.0, "currency": "usdt", "extra": 1}),
        );
        assert_eq!(p.allowed_skill_keys, ["a", "b"]);
        assert_eq!(p.currency.as_deref(), Some("USDT"));
        assert_eq!(
            serde_json::to_value(DelegationPolicy::default()).unwrap(),
            empty_policy_json()
        );
        for bad in [
            json!({"perTransactionLimit": -1}),
            json!({"dailySpendLimit": -0.5}),
            json!({"currency": " "}),
            json!({"allowedServiceIds": ["ok", ""]}),
        ] {
            let err = serde_json::from_value::<DelegationPolicyInput>(bad.clone())
                .unwrap()
                .normalise()
                .unwrap_err();
            assert!(
                err.details["field"]
                    .as_str()
                    .unwrap()
                    .starts_with("delegationPolicy."),
                "{bad}"
            );
        }
        assert!(
            serde_json::from_value::<DelegationPolicyInput>(json!({"perTransactionLimit": "5"}))
                .is_err()
        );
        assert!(
            serde_json::from_value::<DelegationPolicyInput>(json!({"perTransactionLimit": true}))
                .is_err()
        );
    }

    #[test]
    fn hash_is_canonical() {
        let a = policy(json!({"perTransactionLimit": 5.0, "allowedSkillKeys": ["x"]}));
        let b = policy(json!({"allowedSkillKeys": ["x"], "perTransactionLimit": 5}));
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.hash().len(), 64);
        let c = policy(json!({"allowedSkillKeys": ["x"], "perTransactionLimit": 5.5}));
        assert_ne!(a.hash(), c.hash());
        // JCS: keys sorted, no whitespace, 5.0 written as 5.
        assert_eq!(
            serde_jcs::to_string(&a).unwrap(),
            r#"{"allowedServiceIds":[],"allowedSkillKeys":["x"],"currency":null,"dailySpendLimit":null,"deniedServiceIds":[],"deniedSkillKeys":[],"perTransactionLimit":5}"#
        );
    }

    #[test]
    fn allow_and_deny_lists() {
        assert!(DelegationPolicy::default().allows("any", "svc").is_ok());
        let p = policy(json!({"allowedSkillKeys": ["vision"], "deniedServiceIds": ["bad"]}));
        assert!(p.allows("vision", "good").is_ok());
        assert_eq!(p.allows("vision", "bad"), Err("denied-service-id"));
        assert_eq!(p.allows("audio", "good"), Err("skill-key-not-allowed"));
        let deny_beats_allow = policy(json!({"allowedSkillKeys": ["v"], "deniedSkillKeys": ["v"]}));
        assert_eq!(deny_beats_allow.allows("v", "s"), Err("denied-skill-key"));
        let both = policy(json!({"allowedSkillKeys": ["v"], "allowedServiceIds": ["s"]}));
        assert!(both.allows("v", "s").is_ok());
        assert_eq!(both.allows("v", "t"), Err("service-id-not-allowed"));
        let err = p.require_allowed("audio", "good").unwrap_err();
        assert_eq!(err.code, ErrorCode::AGENT_POLICY_DENIED);
        assert_eq!(err.details["rule"], "skill-key-not-allowed");
    }

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn spend_limits() {
        let window = SpendWindow::containing(1_767_225_600_123);
        assert_eq!(window.started_at, "2026-01-01T00:00:00.000Z");
        assert_eq!(window.ends_at, "2026-01-02T00:00:00.000Z");
        let p =
            policy(json!({"perTransactionLimit": 10, "dailySpendLimit": 25, "currency": "USDT"}));
        assert!(
            p.check_spend(d("10"), Some("usdt"), d("15"), &window)
                .is_ok()
        );
        let err = p
            .check_spend(d("10.5"), Some("USDT"), d("0"), &window)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::AGENT_SPEND_LIMIT_EXCEEDED);
        assert_eq!(err.details["limit"], 10.0);
        let err = p
            .check_spend(d("10"), Some("USDT"), d("15.01"), &window)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::AGENT_DAILY_LIMIT_EXCEEDED);
        assert_eq!(err.details["windowStartedAt"], "2026-01-01T00:00:00.000Z");
        let err = p
            .check_spend(d("1"), Some("EUR"), d("0"), &window)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::AGENT_POLICY_DENIED);
        assert_eq!(err.details["reason"], "currency-mismatch");
        assert!(
            p.check_spend(d("0"), Some("EUR"), d("0"), &window).is_ok(),
            "nothing spent, nothing to check"
        );
        let no_currency = policy(json!({"perTransactionLimit": 10}));
        assert!(
            no_currency
                .check_spend(d("9"), Some("EUR"), d("0"), &window)
                .is_ok()
        );
        assert!(
            DelegationPolicy::default()
                .check_spend(d("1000000000"), None, d("1000000000"), &window)
                .is_ok()
        );
        // Exactness: a hundred spends of 0.1 fill a daily limit of 10, the next one does not fit.
        let tenths = policy(json!({"dailySpendLimit": 10}));
        let spent: Decimal = (0..99).map(|_| d("0.1")).sum();
        assert!(tenths.check_spend(d("0.1"), None, spent, &window).is_ok());
        assert!(
            tenths
                .check_spend(d("0.1"), None, spent + d("0.1"), &window)
                .is_err()
        );
    }
}
