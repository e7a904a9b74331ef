//! Market search records (spec catalogue-and-search.md §2.6, §8).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::model::{
    ExecutionMode, ExternalHandoff, IntegrationStatus, MarketService, PaymentRecommendation,
    Pricing, ServiceType,
};
use crate::wire_enum;

wire_enum!(pub SearchStatus { Completed = "completed", NoMatch = "no_match" });

/// `budget` as requested.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    pub max: Option<f64>,
    pub amount: Option<f64>,
    pub preferred: Option<f64>,
    pub currency: Option<String>,
}

/// `POST /market/search`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchRequest {
    pub machine_id: Option<String>,
    pub agent_pairing_id: Option<String>,
    /// A ServiceType or an alias.
    pub service_type: Option<String>,
    pub operation: Option<String>,
    pub required_capabilities: Option<Vec<String>>,
    pub region: Option<String>,
    /// Default 10; values above 25 are clamped to 25 (any integer, however large).
    #[schema(value_type = Option<i64>)]
    pub max_results: Option<serde_json::Number>,
    pub allow_external_handoff: Option<bool>,
    pub require_native_execution: Option<bool>,
    pub budget: Option<Budget>,
    /// providerKey → {credential: value}; used for this request only, never stored.
    #[schema(value_type = Option<Object>)]
    pub provider_credentials: Option<Map<String, Value>>,
}

/// `NormalizedTask`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NormalizedTask {
    pub service_type: ServiceType,
    pub operation: Option<String>,
    pub required_capabilities: Vec<String>,
    pub region: Option<String>,
    pub allow_external_handoff: bool,
    pub require_native_execution: bool,
    pub max_results: i64,
    pub budget: Option<Budget>,
}

/// `MarketQuote`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketQuote {
    pub id: String,
    pub search_id: String,
    pub service_id: String,
    pub skill_key: String,
    pub provider_key: String,
    pub execution_mode: ExecutionMode,
    pub integration_status: IntegrationStatus,
    pub operation: String,
    pub score: f64,
    pub reasons: Vec<String>,
    pub pricing: Pricing,
    pub payment: PaymentRecommendation,
    pub expires_at: String,
    pub handoff: Option<ExternalHandoff>,
    pub created_at: String,
    #[serde(skip)]
    pub expires_at_ms: i64,
}

/// `MarketSearch`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketSearch {
    pub id: String,
    pub machine_id: String,
    pub agent_pairing_id: Option<String>,
    #[schema(value_type = Object)]
    pub request_payload: Value,
    pub normalized_task: NormalizedTask,
    pub status: SearchStatus,
    pub quotes: Vec<MarketQuote>,
    pub created_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// `Candidate` (§9.3), as task discovery answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CandidateView {
    pub service: MarketService,
    pub score: f64,
    pub reasons: Vec<String>,
}
