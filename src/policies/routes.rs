use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;

use super::model::PolicyInput;
use super::service;
use crate::App;
use crate::error::ErrorCode::*;
use crate::error::{ApiResult, RouteErrors};
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/policies", get(list).post(create))
        .route("/policies/{policy_id}", get(read).patch(update))
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/policies/{policyId}", &[NOT_FOUND]),
    (
        "PATCH",
        "/api/v1/policies/{policyId}",
        &[NOT_FOUND, IDEMPOTENCY_CONFLICT],
    ),
];

/// Lists the policies, oldest first.
#[utoipa::path(get, path = "/api/v1/policies", tag = "policies",
    params(crate::http::paging::PageParams),
    responses((status = 200, description = "Policies, oldest first", body = crate::http::paging::ListPage<crate::policies::model::Policy>)))]
pub(crate) async fn list(State(app): State<Arc<App>>, query: QueryParams) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["policies"])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::list(&app, &page).await?,
    ))
}

/// Creates a policy.
#[utoipa::path(post, path = "/api/v1/policies", tag = "policies",
    request_body = crate::policies::model::PolicyInput,
    responses((status = 201, description = "The policy", body = crate::http::Item<crate::policies::model::Policy>)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<PolicyInput>,
) -> ApiResult<Response> {
    let staged = service::create(&app, body).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &Item { item: staged.value },
    )
    .await
}

/// One policy.
#[utoipa::path(get, path = "/api/v1/policies/{policyId}", tag = "policies",
    params(("policyId" = String, Path, description = "pol_…")),
    responses((status = 200, description = "The policy", body = crate::http::Item<crate::policies::model::Policy>)))]
pub(crate) async fn read(
    State(app): State<Arc<App>>,
    Path(policy_id): Path<String>,
) -> ApiResult<Response> {
    let policy = service::get(&app, &policy_id).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: policy }))
}

/// Changes a policy; lists replace the stored value, `budgetCap: {}` clears the cap.
#[utoipa::path(patch, path = "/api/v1/policies/{policyId}", tag = "policies",
    params(("policyId" = String, Path, description = "pol_…")),
    request_body = crate::policies::model::PolicyInput,
    responses((status = 200, description = "The policy", body = crate::http::Item<crate::policies::model::Policy>)))]
pub(crate) async fn update(
    State(app): State<Arc<App>>,
    Path(policy_id): Path<String>,
    ApiJson(body): ApiJson<PolicyInput>,
) -> ApiResult<Response> {
    let (tx, policy) = service::update(&app, &policy_id, body).await?;
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    Ok(crate::http::json(StatusCode::OK, &Item { item: policy }))
}
