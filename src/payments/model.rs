use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::model::RailType;
use crate::wire_enum;

wire_enum!(pub PaymentStatus {
    NotRequired = "not_required",
    IntentCreated = "intent_created",
    Held = "held",
    ReleasePending = "release_pending",
    Released = "released",
    Frozen = "frozen",
    Refunded = "refunded",
});

crate::impl_wire_enum!(PaymentStatus);

/// `PaymentRail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRail {
    #[serde(rename = "type")]
    pub rail_type: RailType,
    pub chain: Option<String>,
    pub token: Option<String>,
    pub token_address: Option<String>,
    pub token_mint: Option<String>,
    pub escrow_address: Option<String>,
    pub external_url: Option<String>,
    pub provider: Option<String>,
    pub account_id: Option<String>,
    pub wallet_address: Option<String>,
    pub payer_address: Option<String>,
    pub payee_address: Option<String>,
    pub payment_intent_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// `PaymentProof`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentProof {
    pub verification_mode: String,
    pub chain: Option<String>,
    pub token: Option<String>,
    pub transaction_hash: Option<String>,
    pub transaction_signature: Option<String>,
    pub payer_address: Option<String>,
    pub payee_address: Option<String>,
    pub amount: Option<String>,
    pub raw_amount: Option<String>,
    pub token_address: Option<String>,
    pub token_mint: Option<String>,
    pub block_number: Option<u64>,
    pub payment_reference: Option<String>,
    pub verified_at: String,
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// `MarketPayment`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketPayment {
    pub id: String,
    pub order_id: String,
    pub machine_id: String,
    pub status: PaymentStatus,
    pub rail: PaymentRail,
    pub amount: Option<f64>,
    pub currency: Option<String>,
    pub notes: Vec<String>,
    pub proof: Option<PaymentProof>,
    pub release_transaction_hash: Option<String>,
    pub refund_transaction_hash: Option<String>,
    pub refund_reason: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The exact amount behind `amount`.
    #[serde(skip)]
    pub exact_amount: Option<rust_decimal::Decimal>,
    /// What backs the payment (a transaction or authorization), unique in the deployment.
    #[serde(skip)]
    pub transaction_key: Option<String>,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// `rail` of a payment-intent body: what the agent asks for; unset fields come from the
/// order's recommendation.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RailOptions {
    /// A `MarketPaymentRailType`.
    #[serde(rename = "type")]
    pub rail_type: Option<String>,
    pub chain: Option<String>,
    pub token: Option<String>,
    pub token_address: Option<String>,
    pub token_mint: Option<String>,
    pub escrow_address: Option<String>,
    pub external_url: Option<String>,
    pub provider: Option<String>,
    pub account_id: Option<String>,
    pub wallet_address: Option<String>,
    pub payer_address: Option<String>,
    pub payee_address: Option<String>,
    pub payment_intent_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// `POST /market/orders/{orderId}/payment-intent`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatePaymentIntent {
    pub rail: Option<RailOptions>,
    /// ≥ 0; default the order's amount.
    pub amount: Option<f64>,
    /// Default the order's currency.
    pub currency: Option<String>,
}

/// `POST /market/orders/{orderId}/payment-proof`: an on-chain transfer (`verificationMode`,
/// `chain`, `token`, addresses, `amount`, `transactionHash` or `transactionSignature`) or a
/// request-scoped payment (`payment` headers, `paymentReference`).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitPaymentProof {
    /// `recorded` | `rpc`.
    pub verification_mode: Option<String>,
    pub chain: Option<String>,
    pub token: Option<String>,
    pub payer_address: Option<String>,
    pub payee_address: Option<String>,
    /// A decimal string > 0 (`"0.02"`, `"1e-05"`).
    pub amount: Option<String>,
    pub transaction_hash: Option<String>,
    pub transaction_signature: Option<String>,
    pub token_address: Option<String>,
    pub token_mint: Option<String>,
    /// 0..36.
    pub token_decimals: Option<i64>,
    /// A decimal integer string.
    pub raw_amount: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    pub payment: Option<crate::engine::PaymentHeaders>,
    pub payment_reference: Option<String>,
}

/// `POST /market/orders/{orderId}/payment/escrow-lock`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockEscrow {
    pub transaction_hash: Option<String>,
    pub chain: Option<String>,
    pub escrow_address: Option<String>,
}

/// `POST /market/orders/{orderId}/payment/release` (the body may be empty).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasePayment {
    pub transaction_hash: Option<String>,
    /// Appended to the payment's notes.
    pub notes: Option<String>,
}

/// `POST /market/orders/{orderId}/payment/refund` (the body may be empty).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundPayment {
    pub transaction_hash: Option<String>,
    /// Stored as `refundReason`.
    pub reason: Option<String>,
}
