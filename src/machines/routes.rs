use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::model::{CreateMachine, UpdateMachine};
use super::service;
use crate::App;
use crate::error::ApiResult;
use crate::error::ErrorCode::*;
use crate::error::RouteErrors;
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/machines", get(list).post(create))
        .route(
            "/machines/{machine_id}",
            get(read).patch(update).delete(archive),
        )
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/machines", &[PEAQOS_IDENTITY_UNAVAILABLE]),
    ("POST", "/api/v1/machines", PROOF_CHECKED),
    (
        "GET",
        "/api/v1/machines/{machineId}",
        &[
            NOT_FOUND,
            MACHINE_NOT_ACTIVATED,
            PEAQOS_IDENTITY_UNAVAILABLE,
        ],
    ),
    ("PATCH", "/api/v1/machines/{machineId}", PROOF_CHECKED),
    (
        "PATCH",
        "/api/v1/machines/{machineId}",
        &[
            NOT_FOUND,
            MACHINE_NOT_ACTIVE,
            MACHINE_IDENTITY_IMMUTABLE,
            OPEN_MARKET_ORDERS,
            IDEMPOTENCY_CONFLICT,
        ],
    ),
    (
        "DELETE",
        "/api/v1/machines/{machineId}",
        &[NOT_FOUND, OPEN_MARKET_ORDERS, IDEMPOTENCY_CONFLICT],
    ),
];

/// A write that checks an identity proof.
const PROOF_CHECKED: &[crate::error::ErrorCode] = &[
    MACHINE_IDENTITY_EXISTS,
    MACHINE_IDENTITY_PROOF_REQUIRED,
    MACHINE_IDENTITY_PROOF_INVALID,
    MACHINE_IDENTITY_PROOF_EXPIRED,
    MACHINE_NOT_ACTIVATED,
    PEAQOS_IDENTITY_UNAVAILABLE,
];

#[utoipa::path(
    get,
    path = "/api/v1/machines",
    tag = "machines",
    params(crate::http::paging::PageParams),
    responses(
        (status = 200, description = "Machines, oldest first", body = crate::http::paging::ListPage<crate::machines::model::Machine>)
    )
)]
pub(crate) async fn list(State(app): State<Arc<App>>, query: QueryParams) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["machines"])?;
    let page = service::list(&app, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}

#[utoipa::path(
    post,
    path = "/api/v1/machines",
    tag = "machines",
    request_body = crate::machines::model::CreateMachine,
    responses(
        (status = 201, description = "The machine, as a draft", body = crate::http::Item<crate::machines::model::Machine>)
    )
)]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<CreateMachine>,
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

#[utoipa::path(
    get,
    path = "/api/v1/machines/{machineId}",
    tag = "machines",
    params(("machineId" = String, Path, description = "mach_…")),
    responses(
        (status = 200, description = "The machine", body = crate::http::Item<crate::machines::model::Machine>)
    )
)]
pub(crate) async fn read(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
) -> ApiResult<Response> {
    let machine = service::get(&app, &machine_id).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: machine }))
}

#[utoipa::path(
    patch,
    path = "/api/v1/machines/{machineId}",
    tag = "machines",
    params(("machineId" = String, Path, description = "mach_…")),
    request_body = crate::machines::model::UpdateMachine,
    responses(
        (status = 200, description = "The updated machine", body = crate::http::Item<crate::machines::model::Machine>)
    )
)]
pub(crate) async fn update(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    ApiJson(body): ApiJson<UpdateMachine>,
) -> ApiResult<Response> {
    let (tx, machine) = service::update(&app, &machine_id, body).await?;
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    Ok(crate::http::json(StatusCode::OK, &Item { item: machine }))
}

#[utoipa::path(
    delete,
    path = "/api/v1/machines/{machineId}",
    tag = "machines",
    params(("machineId" = String, Path, description = "mach_…")),
    responses(
        (status = 204, description = "Archived")
    )
)]
pub(crate) async fn archive(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
) -> ApiResult<Response> {
    if let Some(tx) = service::archive(&app, &machine_id).await? {
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
