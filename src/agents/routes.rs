use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::{Map, Value};

use super::model::Enroll;
use super::service::{self, PresentedTokens};
use crate::App;
use crate::error::ApiResult;
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;

/// Platform routes.
pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/machines/{machine_id}/agents", get(list))
        .route("/machines/{machine_id}/agents/enrollment", post(enroll))
        .route("/machines/{machine_id}/agents/{agent_id}", delete(revoke))
}

/// The heartbeat, authenticated by the agent token instead of the API key.
pub fn heartbeat_routes() -> Router<Arc<App>> {
    Router::new().route("/machine-agents/heartbeat", post(heartbeat))
}

#[utoipa::path(
    get,
    path = "/api/v1/machines/{machineId}/agents",
    tag = "machine-agents",
    params(("machineId" = String, Path, description = "mach_…"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1..500, default 100"), ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "Agents, oldest first; never with tokens", body = crate::http::paging::ListPage<crate::agents::model::MachineAgent>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "MACHINE_NOT_ACTIVATED, AGENT_PAIRING_INACTIVE or AGENT_POLICY_DENIED", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["machine-agents", &machine_id])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::list(&app, &machine_id, &page).await?,
    ))
}

#[utoipa::path(
    post,
    path = "/api/v1/machines/{machineId}/agents/enrollment",
    tag = "machine-agents",
    params(("machineId" = String, Path, description = "mach_…")),
    request_body = crate::agents::model::Enroll,
    responses(
        (status = 201, description = "The agent with its one-time agentToken (also as provisioningToken)", body = crate::http::Item<crate::agents::model::MachineAgent>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "MACHINE_NOT_ACTIVATED, AGENT_PAIRING_INACTIVE or AGENT_POLICY_DENIED", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn enroll(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<Enroll>,
) -> ApiResult<Response> {
    let staged = service::enroll(&app, &machine_id, body).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &Item { item: staged.value },
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/api/v1/machines/{machineId}/agents/{agentId}",
    tag = "machine-agents",
    params(("machineId" = String, Path, description = "mach_…"), ("agentId" = String, Path, description = "mag_…")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    Path((machine_id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    if let Some(tx) = service::revoke(&app, &machine_id, &agent_id).await? {
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post,
    path = "/api/v1/machine-agents/heartbeat",
    tag = "machine-agents",
    request_body = crate::openapi::HeartbeatRequest,
    security(()),
    responses(
        (status = 200, description = "The agent, the lease applied and the endpoints it owns", body = crate::agents::model::HeartbeatResponse),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "MACHINE_NOT_ACTIVATED, AGENT_PAIRING_INACTIVE or AGENT_POLICY_DENIED", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn heartbeat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let presented = PresentedTokens {
        authorization_bearer: header_text(header::AUTHORIZATION.as_str())
            .and_then(|v| v.strip_prefix("Bearer ").map(str::trim).map(str::to_owned)),
        pairing_header: header_text(crate::pairings::auth::HEADER),
    };
    let outcome = match service::heartbeat(&app, body, presented).await {
        Ok(staged) => {
            commit(
                &app,
                staged.tx,
                &Idempotency::default(),
                StatusCode::OK,
                &staged.value,
            )
            .await
        }
        Err(err) => Err(err),
    };
    crate::metrics::record_heartbeat(outcome.as_ref().map(|_| ()).map_err(|e| e.code.as_str()));
    outcome
}
