use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::model::{
    ExecutionMode, ExternalHandoff, IntegrationStatus, MarketService, PaymentRecommendation,
    ServiceType,
};
use crate::engine::PaymentHeaders;
use crate::market::model::Budget;
use crate::payments::model::MarketPayment;
use crate::tasks::model::{OutcomeRecord, RouteRecord, RunRecord, TaskRecord};
use crate::wire_enum;

wire_enum!(pub OrderStatus {
    Created = "created",
    PaymentPending = "payment_pending",
    Ready = "ready",
    Executing = "executing",
    Delivered = "delivered",
    Confirmed = "confirmed",
    Disputed = "disputed",
    Cancelled = "cancelled",
    Failed = "failed",
    Handoff = "handoff",
});

wire_enum!(pub DisputeStatus { Open = "open", Resolved = "resolved" });

crate::impl_wire_enum!(OrderStatus, DisputeStatus);

impl OrderStatus {
    /// Created, payment pending or ready: the order may still execute, pay or be cancelled.
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            OrderStatus::Created | OrderStatus::PaymentPending | OrderStatus::Ready
        )
    }

    /// The statuses that block machine archiving and pairing revocation (§1.1). A `handoff`
    /// order counts too while its payment is held or release pending.
    pub const OPEN: &'static [OrderStatus] = &[
        OrderStatus::Created,
        OrderStatus::PaymentPending,
        OrderStatus::Ready,
        OrderStatus::Executing,
        OrderStatus::Delivered,
        OrderStatus::Disputed,
    ];
}

/// `budget` of an order as requested.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBudget {
    pub amount: Option<f64>,
    pub max: Option<f64>,
    pub currency: Option<String>,
}

/// `MarketOrder`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketOrder {
    pub id: String,
    pub machine_id: String,
    pub agent_pairing_id: String,
    pub search_id: Option<String>,
    pub quote_id: Option<String>,
    pub service_id: String,
    pub skill_key: String,
    pub provider_key: String,
    pub service_type: ServiceType,
    pub operation: String,
    pub execution_mode: ExecutionMode,
    pub integration_status: IntegrationStatus,
    pub status: OrderStatus,
    #[schema(value_type = Object)]
    pub input: Map<String, Value>,
    pub budget: Option<OrderBudget>,
    /// The spend amount (§3).
    pub amount: f64,
    pub currency: Option<String>,
    /// The service's recommendation, copied at creation (not the `MarketPayment`).
    pub payment: PaymentRecommendation,
    pub service_snapshot: MarketService,
    pub task_id: Option<String>,
    pub route_id: Option<String>,
    pub run_id: Option<String>,
    pub outcome_id: Option<String>,
    pub handoff: Option<ExternalHandoff>,
    pub error_message: Option<String>,
    pub cancel_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub exact_amount: rust_decimal::Decimal,
    #[serde(skip)]
    pub created_at_ms: i64,
    #[serde(skip)]
    pub updated_at_ms: i64,
}

/// `OrderDispute`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDispute {
    pub id: String,
    pub order_id: String,
    pub machine_id: String,
    pub status: DisputeStatus,
    pub reason: String,
    #[schema(value_type = Object)]
    pub evidence: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// `POST /market/orders`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateOrder {
    pub machine_id: Option<String>,
    pub agent_pairing_id: Option<String>,
    pub service_id: Option<String>,
    pub search_id: Option<String>,
    pub quote_id: Option<String>,
    pub operation: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    pub budget: Option<Budget>,
    /// Request-only: never stored.
    #[schema(value_type = Option<Object>)]
    pub provider_credentials: Option<Map<String, Value>>,
}

/// `POST /market/orders/{orderId}/execute`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteOrder {
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    /// Request-scoped payment headers: never stored.
    pub payment: Option<PaymentHeaders>,
}

/// `POST /market/orders/{orderId}/dispute`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisputeOrder {
    pub reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub evidence: Option<Map<String, Value>>,
}

/// `POST /market/orders/{orderId}/cancel`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelOrder {
    pub reason: Option<String>,
}

/// `POST /market/services/{serviceId}/execute` (the direct read).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectRead {
    pub machine_id: Option<String>,
    pub agent_pairing_id: Option<String>,
    pub operation: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    pub budget: Option<Budget>,
    #[schema(value_type = Option<Object>)]
    pub provider_credentials: Option<Map<String, Value>>,
}

/// `execution` of an execute answer (§2.5).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionView {
    /// 200 for native execution (completed or failed), 202 for a handoff.
    pub status_code: u16,
    pub run: RunRecord,
    pub outcome: OutcomeRecord,
    pub task: TaskRecord,
    pub route: RouteRecord,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff: Option<ExternalHandoff>,
}

/// Order execute's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrderExecuted {
    pub order: MarketOrder,
    pub execution: ExecutionView,
}

/// The direct read's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DirectReadResult {
    pub service: MarketService,
    pub execution: ExecutionView,
}

/// Confirm's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Confirmed {
    pub order: MarketOrder,
    pub payment: Option<MarketPayment>,
}

/// Dispute's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Disputed {
    pub order: MarketOrder,
    pub payment: Option<MarketPayment>,
    pub dispute: OrderDispute,
}
