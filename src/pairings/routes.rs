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

async fn list(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["agent-pairings", &machine_id])?;
    let page = service::list(&app, &machine_id, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}

async fn create_challenge(
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

async fn create(
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

async fn rotate_session(
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

async fn update(
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

async fn revoke(
    State(app): State<Arc<App>>,
    Path((machine_id, pairing_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    if let Some(tx) = service::revoke(&app, &machine_id, &pairing_id).await? {
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
