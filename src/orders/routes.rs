use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};

use super::model::{CancelOrder, CreateOrder, DirectRead, DisputeOrder, ExecuteOrder};
use super::payment::{self, Paid};
use super::service;
use crate::App;
use crate::error::ErrorCode::*;
use crate::error::sets::{GATE_B, GATE_C, TOKEN};
use crate::error::{ApiError, ApiResult, RouteErrors};
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;
use crate::pairings::auth::PairingAuth;
use crate::payments::model::{
    CreatePaymentIntent, LockEscrow, RefundPayment, ReleasePayment, SubmitPaymentProof,
};
use crate::store::Staged;

/// Platform routes.
pub fn platform_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/market/orders", get(list))
        .route("/market/orders/{order_id}/payment", get(read_payment))
}

/// Agent routes (a pairing token).
pub fn agent_routes() -> Router<Arc<App>> {
    Router::new()
        .route("/market/orders", post(create))
        .route("/market/orders/{order_id}/execute", post(execute))
        .route("/market/orders/{order_id}/confirm", post(confirm))
        .route("/market/orders/{order_id}/dispute", post(dispute))
        .route("/market/orders/{order_id}/cancel", post(cancel))
        .route("/market/orders/{order_id}/retry", post(retry))
        .route("/market/services/{service_id}/execute", post(direct_read))
        .route(
            "/market/orders/{order_id}/payment-intent",
            post(payment_intent),
        )
        .route(
            "/market/orders/{order_id}/payment-proof",
            post(payment_proof),
        )
        .route(
            "/market/orders/{order_id}/payment/escrow-lock",
            post(escrow_lock),
        )
        .route("/market/orders/{order_id}/payment/release", post(release))
        .route("/market/orders/{order_id}/payment/refund", post(refund))
}

/// The API key, or a pairing token of the order's machine.
pub fn agent_optional_routes() -> Router<Arc<App>> {
    Router::new().route("/market/orders/{order_id}", get(read))
}

const SETTLE: &[crate::error::ErrorCode] = &[
    NOT_FOUND,
    ORDER_NOT_DELIVERED,
    ORDER_CLOSED,
    IDEMPOTENCY_CONFLICT,
];

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/market/orders", GATE_B),
    ("POST", "/api/v1/market/orders", TOKEN),
    ("POST", "/api/v1/market/orders", GATE_B),
    ("POST", "/api/v1/market/orders", GATE_C),
    (
        "POST",
        "/api/v1/market/orders",
        &[
            QUOTE_EXPIRED,
            AGENT_POLICY_DENIED,
            AGENT_SPEND_LIMIT_EXCEEDED,
            AGENT_DAILY_LIMIT_EXCEEDED,
            EXECUTION_UNSUPPORTED,
        ],
    ),
    ("GET", "/api/v1/market/orders/{orderId}", TOKEN),
    ("GET", "/api/v1/market/orders/{orderId}", &[NOT_FOUND]),
    ("POST", "/api/v1/market/orders/{orderId}/execute", TOKEN),
    ("POST", "/api/v1/market/orders/{orderId}/execute", GATE_B),
    ("POST", "/api/v1/market/orders/{orderId}/execute", GATE_C),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/execute",
        &[
            ORDER_CLOSED,
            PAYMENT_REQUIRED,
            EXECUTION_UNSUPPORTED,
            ENDPOINT_UNREACHABLE,
        ],
    ),
    ("POST", "/api/v1/market/orders/{orderId}/confirm", TOKEN),
    ("POST", "/api/v1/market/orders/{orderId}/confirm", SETTLE),
    ("POST", "/api/v1/market/orders/{orderId}/dispute", TOKEN),
    ("POST", "/api/v1/market/orders/{orderId}/dispute", SETTLE),
    ("POST", "/api/v1/market/orders/{orderId}/cancel", TOKEN),
    ("POST", "/api/v1/market/orders/{orderId}/cancel", SETTLE),
    ("POST", "/api/v1/market/orders/{orderId}/retry", TOKEN),
    ("POST", "/api/v1/market/orders/{orderId}/retry", GATE_B),
    ("POST", "/api/v1/market/orders/{orderId}/retry", GATE_C),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/retry",
        &[ORDER_CLOSED, IDEMPOTENCY_CONFLICT],
    ),
    ("POST", "/api/v1/market/services/{serviceId}/execute", TOKEN),
    (
        "POST",
        "/api/v1/market/services/{serviceId}/execute",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/market/services/{serviceId}/execute",
        GATE_C,
    ),
    (
        "POST",
        "/api/v1/market/services/{serviceId}/execute",
        &[
            AGENT_POLICY_DENIED,
            EXECUTION_UNSUPPORTED,
            ENDPOINT_UNREACHABLE,
        ],
    ),
    (
        "GET",
        "/api/v1/market/orders/{orderId}/payment",
        &[NOT_FOUND],
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-intent",
        TOKEN,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-intent",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-intent",
        GATE_C,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-intent",
        &[
            NOT_FOUND,
            ORDER_CLOSED,
            PAYMENT_REQUIRED,
            EXECUTION_UNSUPPORTED,
            ENDPOINT_UNREACHABLE,
        ],
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-proof",
        TOKEN,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-proof",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-proof",
        GATE_C,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment-proof",
        &[
            NOT_FOUND,
            ORDER_CLOSED,
            IDEMPOTENCY_CONFLICT,
            PAYMENT_REQUIRED,
            PAYMENT_RPC_REQUIRED,
            PAYMENT_RPC_ERROR,
            PAYMENT_NOT_MINED,
            PAYMENT_TX_FAILED,
            PAYMENT_TRANSFER_NOT_FOUND,
        ],
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/escrow-lock",
        TOKEN,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/escrow-lock",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/escrow-lock",
        GATE_C,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/escrow-lock",
        &[
            NOT_FOUND,
            ORDER_CLOSED,
            IDEMPOTENCY_CONFLICT,
            PAYMENT_REQUIRED,
        ],
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/release",
        TOKEN,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/release",
        &[NOT_FOUND, ORDER_NOT_DELIVERED, ORDER_CLOSED],
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/refund",
        TOKEN,
    ),
    (
        "POST",
        "/api/v1/market/orders/{orderId}/payment/refund",
        &[NOT_FOUND, ORDER_CLOSED],
    ),
];

fn token(auth: &Option<Extension<PairingAuth>>) -> Option<&PairingAuth> {
    auth.as_ref().map(|Extension(a)| a)
}

/// A machine's orders, oldest first.
#[utoipa::path(get, path = "/api/v1/market/orders", tag = "orders",
    params(("machineId" = String, Query, description = "Required"), crate::http::paging::PageParams),
    responses((status = 200, description = "Orders, oldest first", body = crate::http::paging::ListPage<crate::orders::model::MarketOrder>)))]
pub(crate) async fn list(State(app): State<Arc<App>>, query: QueryParams) -> ApiResult<Response> {
    let machine_id = query
        .get("machineId")
        .ok_or_else(|| ApiError::validation("machineId", "required", "machineId is required"))?;
    let page = PageRequest::parse(&query, &["market-orders", machine_id])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::list(&app, machine_id, &page).await?,
    ))
}

/// Places an order for a service (checks the quote, the policies and the spend limits).
#[utoipa::path(post, path = "/api/v1/market/orders", tag = "orders", security(("pairingToken" = [])),
    request_body = crate::orders::model::CreateOrder,
    responses((status = 201, description = "The order", body = crate::http::Item<crate::orders::model::MarketOrder>)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<CreateOrder>,
) -> ApiResult<Response> {
    let staged = service::create(&app, token(&auth), body).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &Item { item: staged.value },
    )
    .await
}

/// One order.
#[utoipa::path(get, path = "/api/v1/market/orders/{orderId}", tag = "orders",
    security(("apiKey" = []), ("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    responses((status = 200, description = "The order", body = crate::http::Item<crate::orders::model::MarketOrder>)))]
pub(crate) async fn read(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    Path(order_id): Path<String>,
) -> ApiResult<Response> {
    let order = service::get(&app, token(&auth), &order_id).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: order }))
}

/// Runs the order: 200 for a native call (delivered or failed), 202 for a handoff.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/execute", tag = "orders", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::orders::model::ExecuteOrder,
    responses(
        (status = 200, description = "Executed natively; execution.outcome says whether it completed", body = crate::orders::model::OrderExecuted),
        (status = 202, description = "Handed off", body = crate::orders::model::OrderExecuted)
    ))]
pub(crate) async fn execute(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<ExecuteOrder>,
) -> ApiResult<Response> {
    let staged = service::execute(&app, token(&auth), &order_id, body).await?;
    let status = StatusCode::from_u16(staged.value.execution.status_code).unwrap_or(StatusCode::OK);
    commit(&app, staged.tx, &idempotency, status, &staged.value).await
}

/// Confirms a delivered (or handed-off) order; a held payment becomes release pending.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/confirm", tag = "orders", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    responses((status = 200, description = "The order and its payment", body = crate::orders::model::Confirmed)))]
pub(crate) async fn confirm(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
) -> ApiResult<Response> {
    let staged = service::confirm(&app, token(&auth), &order_id).await?;
    commit(&app, staged.tx, &idempotency, StatusCode::OK, &staged.value).await
}

/// Disputes a delivered, handed-off or confirmed order; its payment is frozen.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/dispute", tag = "orders", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::orders::model::DisputeOrder,
    responses((status = 200, description = "The order, its payment and the dispute", body = crate::orders::model::Disputed)))]
pub(crate) async fn dispute(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<DisputeOrder>,
) -> ApiResult<Response> {
    let staged = service::dispute(&app, token(&auth), &order_id, body).await?;
    commit(&app, staged.tx, &idempotency, StatusCode::OK, &staged.value).await
}

/// Cancels an order that has not executed and holds no payment.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/cancel", tag = "orders", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::orders::model::CancelOrder,
    responses((status = 200, description = "The cancelled order", body = crate::http::Item<crate::orders::model::MarketOrder>)))]
pub(crate) async fn cancel(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<CancelOrder>,
) -> ApiResult<Response> {
    let staged = service::cancel(&app, token(&auth), &order_id, body).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::OK,
        &Item { item: staged.value },
    )
    .await
}

/// Makes a failed order ready again, with the same payment.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/retry", tag = "orders", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    responses((status = 200, description = "The order, ready", body = crate::http::Item<crate::orders::model::MarketOrder>)))]
pub(crate) async fn retry(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
) -> ApiResult<Response> {
    let staged = service::retry(&app, token(&auth), &order_id).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::OK,
        &Item { item: staged.value },
    )
    .await
}

/// Runs one operation of a free native service now, with no order.
#[utoipa::path(post, path = "/api/v1/market/services/{serviceId}/execute", tag = "orders", security(("pairingToken" = [])),
    params(("serviceId" = String, Path)),
    request_body = crate::orders::model::DirectRead,
    responses((status = 200, description = "The service and the execution (a failed call is still 200)", body = crate::orders::model::DirectReadResult)))]
pub(crate) async fn direct_read(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(service_id): Path<String>,
    ApiJson(body): ApiJson<DirectRead>,
) -> ApiResult<Response> {
    let staged = service::direct_read(&app, token(&auth), &service_id, body).await?;
    commit(&app, staged.tx, &idempotency, StatusCode::OK, &staged.value).await
}

/// A payment action's answer: `{item: MarketPayment}`, `201` when it created the payment.
async fn answer_payment(
    app: &App,
    idempotency: &Idempotency,
    staged: Staged<Paid>,
) -> ApiResult<Response> {
    let status = if staged.value.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    commit(
        app,
        staged.tx,
        idempotency,
        status,
        &Item {
            item: staged.value.payment,
        },
    )
    .await
}

/// The order's payment, or `{"item": null}`.
#[utoipa::path(get, path = "/api/v1/market/orders/{orderId}/payment", tag = "payments",
    params(("orderId" = String, Path, description = "ord_…")),
    responses((status = 200, description = "The payment, or null when the order has none", body = crate::http::Item<Option<crate::payments::model::MarketPayment>>)))]
pub(crate) async fn read_payment(
    State(app): State<Arc<App>>,
    Path(order_id): Path<String>,
) -> ApiResult<Response> {
    let payment = payment::get(&app, &order_id).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: payment }))
}

/// Sets up the order's payment (idempotent): the rail, filled in from the service; for x402
/// and MPP, the provider's challenge.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/payment-intent", tag = "payments", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::payments::model::CreatePaymentIntent,
    responses(
        (status = 201, description = "The payment, created", body = crate::http::Item<crate::payments::model::MarketPayment>),
        (status = 200, description = "The order's existing payment, unchanged", body = crate::http::Item<crate::payments::model::MarketPayment>)
    ))]
pub(crate) async fn payment_intent(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<CreatePaymentIntent>,
) -> ApiResult<Response> {
    let staged = payment::intent(&app, token(&auth), &order_id, body).await?;
    answer_payment(&app, &idempotency, staged).await
}

/// Proves the payment: an on-chain transfer (recorded, or verified over RPC) or x402/MPP
/// payment headers; the payment is then held.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/payment-proof", tag = "payments", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::payments::model::SubmitPaymentProof,
    responses((status = 200, description = "The held payment", body = crate::http::Item<crate::payments::model::MarketPayment>)))]
pub(crate) async fn payment_proof(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<SubmitPaymentProof>,
) -> ApiResult<Response> {
    let staged = payment::proof(&app, token(&auth), &order_id, body).await?;
    answer_payment(&app, &idempotency, staged).await
}

/// Records the escrow lock that holds the payment.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/payment/escrow-lock", tag = "payments", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::payments::model::LockEscrow,
    responses((status = 200, description = "The held payment", body = crate::http::Item<crate::payments::model::MarketPayment>)))]
pub(crate) async fn escrow_lock(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<LockEscrow>,
) -> ApiResult<Response> {
    let staged = payment::escrow_lock(&app, token(&auth), &order_id, body).await?;
    answer_payment(&app, &idempotency, staged).await
}

/// Releases a confirmed order's payment to the provider.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/payment/release", tag = "payments", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::payments::model::ReleasePayment,
    responses((status = 200, description = "The released payment", body = crate::http::Item<crate::payments::model::MarketPayment>)))]
pub(crate) async fn release(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<ReleasePayment>,
) -> ApiResult<Response> {
    let staged = payment::release(&app, token(&auth), &order_id, body).await?;
    answer_payment(&app, &idempotency, staged).await
}

/// Records the payment's refund; a disputed order's dispute is resolved.
#[utoipa::path(post, path = "/api/v1/market/orders/{orderId}/payment/refund", tag = "payments", security(("pairingToken" = [])),
    params(("orderId" = String, Path, description = "ord_…")),
    request_body = crate::payments::model::RefundPayment,
    responses((status = 200, description = "The refunded payment", body = crate::http::Item<crate::payments::model::MarketPayment>)))]
pub(crate) async fn refund(
    State(app): State<Arc<App>>,
    auth: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    Path(order_id): Path<String>,
    ApiJson(body): ApiJson<RefundPayment>,
) -> ApiResult<Response> {
    let staged = payment::refund(&app, token(&auth), &order_id, body).await?;
    answer_payment(&app, &idempotency, staged).await
}
