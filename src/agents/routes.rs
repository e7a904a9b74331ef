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
use crate::error::ErrorCode::*;
use crate::error::RouteErrors;
use crate::error::sets::GATE_B;
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

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/machines/{machineId}/agents", GATE_B),
    (
        "POST",
        "/api/v1/machines/{machineId}/agents/enrollment",
        GATE_B,
    ),
    (
        "DELETE",
        "/api/v1/machines/{machineId}/agents/{agentId}",
        &[NOT_FOUND],
    ),
    ("POST", "/api/v1/machine-agents/heartbeat", GATE_B),
    (
        "POST",
        "/api/v1/machine-agents/heartbeat",
        &[
            AGENT_AUTH_REQUIRED,
            AGENT_AUTH_INVALID,
            AGENT_PAIRING_INACTIVE,
            AGENT_POLICY_DENIED,
        ],
    ),
];

#[utoipa::path(
    get,
    path = "/api/v1/machines/{machineId}/agents",
    tag = "machine-agents",
    params(("machineId" = String, Path, description = "mach_…"), crate::http::paging::PageParams),
    responses(
        (status = 200, description = "Agents, oldest first; never with tokens", body = crate::http::paging::ListPage<crate::agents::model::MachineAgent>)
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
        (status = 201, description = "The agent with its one-time agentToken (also as provisioningToken)", body = crate::http::Item<crate::agents::model::MachineAgent>)
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
        (status = 204, description = "Revoked")
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
    request_body = crate::agents::model::HeartbeatRequest,
    security(()),
    responses(
        (status = 200, description = "The agent, the lease applied and the endpoints it owns", body = crate::agents::model::HeartbeatResponse)
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
