use serde::{Deserialize, Serialize};

/// `budgetCap`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetCap {
    pub currency: String,
    pub amount: f64,
}

/// `PolicyRecord`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub id: String,
    pub name: String,
    pub allowed_skill_keys: Vec<String>,
    pub denied_skill_keys: Vec<String>,
    pub budget_cap: Option<BudgetCap>,
    pub region_rules: Vec<String>,
    pub native_only: bool,
    pub handoff_allowed: bool,
    pub required_capabilities: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
    #[serde(skip)]
    pub revision: i64,
}

/// `budgetCap` as sent: both fields, or `{}` on PATCH to clear the cap.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetCapInput {
    pub currency: Option<String>,
    pub amount: Option<f64>,
}

/// `POST /policies` and `PATCH /policies/{policyId}` (every field optional on PATCH).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyInput {
    pub name: Option<String>,
    pub allowed_skill_keys: Option<Vec<String>>,
    pub denied_skill_keys: Option<Vec<String>>,
    pub budget_cap: Option<BudgetCapInput>,
    pub region_rules: Option<Vec<String>>,
    pub native_only: Option<bool>,
    pub handoff_allowed: Option<bool>,
    pub required_capabilities: Option<Vec<String>>,
}
