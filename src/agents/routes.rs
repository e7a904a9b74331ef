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

async fn list(
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

async fn enroll(
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

async fn revoke(
    State(app): State<Arc<App>>,
    Path((machine_id, agent_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    if let Some(tx) = service::revoke(&app, &machine_id, &agent_id).await? {
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn heartbeat(
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
