use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Map, Value};

use super::service;
use crate::App;
use crate::error::ErrorCode::*;
use crate::error::sets::{GATE_B, GATE_C, TOKEN};
use crate::error::{ApiResult, RouteErrors};
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::pairings::auth::PairingAuth;

/// Platform routes.
pub fn platform_routes() -> Router<Arc<App>> {
    Router::new().route("/market/searches/{search_id}", get(read_search))
}

/// Agent routes (a pairing token).
pub fn agent_routes() -> Router<Arc<App>> {
    Router::new().route("/market/search", post(search))
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("POST", "/api/v1/market/search", TOKEN),
    ("POST", "/api/v1/market/search", GATE_B),
    ("POST", "/api/v1/market/search", GATE_C),
    ("GET", "/api/v1/market/searches/{searchId}", &[NOT_FOUND]),
];

/// Ranks the catalogue for the machine and its agent, and quotes the best services.
#[utoipa::path(
    post,
    path = "/api/v1/market/search",
    tag = "market",
    security(("pairingToken" = [])),
    request_body = crate::market::model::SearchRequest,
    responses((status = 201, description = "The search and its quotes (`no_match` with none)", body = crate::http::Item<crate::market::model::MarketSearch>))
)]
pub(crate) async fn search(
    State(app): State<Arc<App>>,
    token: Option<Extension<PairingAuth>>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Response> {
    let token = token.as_ref().map(|Extension(t)| t);
    let staged = service::search(&app, token, body).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &Item { item: staged.value },
    )
    .await
}

/// One search, exactly as stored (its quotes may have expired since).
#[utoipa::path(
    get,
    path = "/api/v1/market/searches/{searchId}",
    tag = "market",
    params(("searchId" = String, Path, description = "srch_…")),
    responses((status = 200, description = "The search", body = crate::http::Item<crate::market::model::MarketSearch>))
)]
pub(crate) async fn read_search(
    State(app): State<Arc<App>>,
    Path(search_id): Path<String>,
) -> ApiResult<Response> {
    let search = service::get_search(&app, &search_id).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: search }))
}
