use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::model::EndpointFields;
use super::service;
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

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/machines/{machine_id}/runtime-endpoints", get(list))
        .route(
            "/machines/{machine_id}/runtime-endpoints/{provider_key}",
            get(read).put(put).delete(delete),
        )
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    (
        "GET",
        "/api/v1/machines/{machineId}/runtime-endpoints",
        GATE_B,
    ),
    (
        "GET",
        "/api/v1/machines/{machineId}/runtime-endpoints/{providerKey}",
        GATE_B,
    ),
    (
        "PUT",
        "/api/v1/machines/{machineId}/runtime-endpoints/{providerKey}",
        GATE_B,
    ),
    (
        "DELETE",
        "/api/v1/machines/{machineId}/runtime-endpoints/{providerKey}",
        &[NOT_FOUND],
    ),
];

#[utoipa::path(
    get,
    path = "/api/v1/machines/{machineId}/runtime-endpoints",
    tag = "runtime-endpoints",
    params(("machineId" = String, Path, description = "mach_…"), crate::http::paging::PageParams),
    responses(
        (status = 200, description = "Endpoints, oldest first", body = crate::http::paging::ListPage<crate::runtime::model::RuntimeEndpoint>)
    )
)]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["runtime-endpoints", &machine_id])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::list(&app, &machine_id, &page).await?,
    ))
}

#[utoipa::path(
    get,
    path = "/api/v1/machines/{machineId}/runtime-endpoints/{providerKey}",
    tag = "runtime-endpoints",
    params(("machineId" = String, Path, description = "mach_…"), ("providerKey" = String, Path)),
    responses(
        (status = 200, description = "The endpoint", body = crate::http::Item<crate::runtime::model::RuntimeEndpoint>)
    )
)]
pub(crate) async fn read(
    State(app): State<Arc<App>>,
    Path((machine_id, provider_key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let endpoint = service::get(&app, &machine_id, &provider_key).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: endpoint }))
}

#[utoipa::path(
    put,
    path = "/api/v1/machines/{machineId}/runtime-endpoints/{providerKey}",
    tag = "runtime-endpoints",
    params(("machineId" = String, Path, description = "mach_…"), ("providerKey" = String, Path)),
    request_body = crate::runtime::model::EndpointFields,
    responses(
        (status = 200, description = "Updated", body = crate::http::Item<crate::runtime::model::RuntimeEndpoint>),
        (status = 201, description = "Created", body = crate::http::Item<crate::runtime::model::RuntimeEndpoint>)
    )
)]
pub(crate) async fn put(
    State(app): State<Arc<App>>,
    Path((machine_id, provider_key)): Path<(String, String)>,
    ApiJson(body): ApiJson<EndpointFields>,
) -> ApiResult<Response> {
    let staged = service::put(&app, &machine_id, &provider_key, body).await?;
    let (endpoint, created) = staged.value;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    commit(
        &app,
        staged.tx,
        &Idempotency::default(),
        status,
        &Item { item: endpoint },
    )
    .await
}

#[utoipa::path(
    delete,
    path = "/api/v1/machines/{machineId}/runtime-endpoints/{providerKey}",
    tag = "runtime-endpoints",
    params(("machineId" = String, Path, description = "mach_…"), ("providerKey" = String, Path)),
    responses(
        (status = 204, description = "Deleted")
    )
)]
pub(crate) async fn delete(
    State(app): State<Arc<App>>,
    Path((machine_id, provider_key)): Path<(String, String)>,
) -> ApiResult<Response> {
    service::delete(&app, &machine_id, &provider_key)
        .await?
        .commit()
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
