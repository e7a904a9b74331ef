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
use crate::error::ErrorCode::*;
use crate::error::RouteErrors;
use crate::error::sets::GATE_B;
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

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/machines/{machineId}/agent-pairings", GATE_B),
    (
        "POST",
        "/api/v1/machines/{machineId}/agent-pairings/challenges",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/agent-pairings",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/agent-pairings",
        PROOF_CHECKED,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/agent-pairings/{pairingId}/sessions",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/agent-pairings/{pairingId}/sessions",
        PROOF_CHECKED,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/agent-pairings/{pairingId}/sessions",
        &[AGENT_PAIRING_INACTIVE],
    ),
    (
        "PATCH",
        "/api/v1/machines/{machineId}/agent-pairings/{pairingId}",
        &[
            NOT_FOUND,
            AGENT_PAIRING_INACTIVE,
            OPEN_MARKET_ORDERS,
            IDEMPOTENCY_CONFLICT,
        ],
    ),
    (
        "DELETE",
        "/api/v1/machines/{machineId}/agent-pairings/{pairingId}",
        &[NOT_FOUND, OPEN_MARKET_ORDERS],
    ),
];

const PROOF_CHECKED: &[crate::error::ErrorCode] = &[
    AGENT_PAIRING_PROOF_REQUIRED,
    AGENT_PAIRING_PROOF_INVALID,
    AGENT_PAIRING_PROOF_EXPIRED,
];

#[utoipa::path(
    get,
    path = "/api/v1/machines/{machineId}/agent-pairings",
    tag = "agent-pairings",
    params(("machineId" = String, Path, description = "mach_…"), crate::http::paging::PageParams),
    responses(
        (status = 200, description = "Pairings, oldest first; never with pairingToken", body = crate::http::paging::ListPage<crate::pairings::model::AgentPairing>)
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
        (status = 201, description = "A single-use challenge for the agent to sign", body = crate::http::Item<crate::pairings::model::ChallengeView>)
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
        (status = 201, description = "The pairing with its pairingToken, shown only here", body = crate::http::Item<crate::pairings::model::AgentPairing>)
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
        (status = 201, description = "The pairing with a new pairingToken", body = crate::http::Item<crate::pairings::model::AgentPairing>)
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
        (status = 200, description = "The updated pairing", body = crate::http::Item<crate::pairings::model::AgentPairing>)
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
        (status = 204, description = "Revoked")
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
