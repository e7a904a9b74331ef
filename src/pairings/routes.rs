use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};

use super::model::{CreateChallenge, CreatePairing, RotateSession, UpdatePairing};
use super::service;
use crate::App;
use crate::error::ApiResult;
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::origin::RequestOrigin;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/machines/{machine_id}/agent-pairings",
            get(list).post(create),
        )
        .route(
            "/machines/{machine_id}/agent-pairings/challenges",
            post(create_challenge),
        )
        .route(
            "/machines/{machine_id}/agent-pairings/{pairing_id}/sessions",
            post(rotate_session),
        )
        .route(
            "/machines/{machine_id}/agent-pairings/{pairing_id}",
            patch(update).delete(revoke),
        )
}

#[utoipa::path(
    get,
    path = "/api/v1/machines/{machineId}/agent-pairings",
    tag = "agent-pairings",
    params(("machineId" = String, Path, description = "mach_…"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "1..500, default 100"), ("cursor" = Option<String>, Query, description = "nextCursor of the previous page")),
    responses(
        (status = 200, description = "Pairings, oldest first; never with pairingToken", body = crate::http::paging::ListPage<crate::pairings::model::AgentPairing>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["agent-pairings", &machine_id])?;
    let page = service::list(&app, &machine_id, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}

#[utoipa::path(
    post,
    path = "/api/v1/machines/{machineId}/agent-pairings/challenges",
    tag = "agent-pairings",
    params(("machineId" = String, Path, description = "mach_…")),
    request_body = crate::pairings::model::CreateChallenge,
    responses(
        (status = 201, description = "A single-use challenge for the agent to sign", body = crate::http::Item<crate::pairings::model::ChallengeView>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "MACHINE_NOT_ACTIVATED, AGENT_PAIRING_INACTIVE or AGENT_POLICY_DENIED", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn create_challenge(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    idempotency: Idempotency,
    RequestOrigin(origin): RequestOrigin,
    ApiJson(body): ApiJson<CreateChallenge>,
) -> ApiResult<Response> {
    let staged = service::create_challenge(&app, &machine_id, body, origin).await?;
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
    post,
    path = "/api/v1/machines/{machineId}/agent-pairings",
    tag = "agent-pairings",
    params(("machineId" = String, Path, description = "mach_…")),
    request_body = crate::pairings::model::CreatePairing,
    responses(
        (status = 201, description = "The pairing with its pairingToken, shown only here", body = crate::http::Item<crate::pairings::model::AgentPairing>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "MACHINE_NOT_ACTIVATED, AGENT_PAIRING_INACTIVE or AGENT_POLICY_DENIED", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<CreatePairing>,
) -> ApiResult<Response> {
    let staged = service::create(&app, &machine_id, body).await?;
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
    post,
    path = "/api/v1/machines/{machineId}/agent-pairings/{pairingId}/sessions",
    tag = "agent-pairings",
    params(("machineId" = String, Path, description = "mach_…"), ("pairingId" = String, Path, description = "apr_…")),
    request_body = crate::pairings::model::RotateSession,
    responses(
        (status = 201, description = "The pairing with a new pairingToken", body = crate::http::Item<crate::pairings::model::AgentPairing>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "MACHINE_NOT_ACTIVATED, AGENT_PAIRING_INACTIVE or AGENT_POLICY_DENIED", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope),
        (status = 503, description = "SERVICE_UNAVAILABLE or PEAQOS_IDENTITY_UNAVAILABLE", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn rotate_session(
    State(app): State<Arc<App>>,
    Path((machine_id, pairing_id)): Path<(String, String)>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<RotateSession>,
) -> ApiResult<Response> {
    let staged = service::rotate_session(&app, &machine_id, &pairing_id, body).await?;
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
    patch,
    path = "/api/v1/machines/{machineId}/agent-pairings/{pairingId}",
    tag = "agent-pairings",
    params(("machineId" = String, Path, description = "mach_…"), ("pairingId" = String, Path, description = "apr_…")),
    request_body = crate::pairings::model::UpdatePairing,
    responses(
        (status = 200, description = "The updated pairing", body = crate::http::Item<crate::pairings::model::AgentPairing>),
        (status = 400, description = "VALIDATION_ERROR (or a proof-required code)", body = crate::openapi::ErrorEnvelope),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 403, description = "MACHINE_NOT_ACTIVATED, AGENT_PAIRING_INACTIVE or AGENT_POLICY_DENIED", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn update(
    State(app): State<Arc<App>>,
    Path((machine_id, pairing_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<UpdatePairing>,
) -> ApiResult<Response> {
    let (tx, pairing) = service::update(&app, &machine_id, &pairing_id, body).await?;
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    Ok(crate::http::json(StatusCode::OK, &Item { item: pairing }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/machines/{machineId}/agent-pairings/{pairingId}",
    tag = "agent-pairings",
    params(("machineId" = String, Path, description = "mach_…"), ("pairingId" = String, Path, description = "apr_…")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "AUTH_REQUIRED, AUTH_INVALID, or a proof/token error", body = crate::openapi::ErrorEnvelope),
        (status = 404, description = "NOT_FOUND", body = crate::openapi::ErrorEnvelope),
        (status = 409, description = "A state conflict (MACHINE_NOT_ACTIVE, MACHINE_IDENTITY_EXISTS, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT, …)", body = crate::openapi::ErrorEnvelope)
    )
)]
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    Path((machine_id, pairing_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    if let Some(tx) = service::revoke(&app, &machine_id, &pairing_id).await? {
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
