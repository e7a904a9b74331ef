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

async fn list(State(app): State<Arc<App>>, query: QueryParams) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["machines"])?;
    let page = service::list(&app, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}

async fn create(
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

async fn read(State(app): State<Arc<App>>, Path(machine_id): Path<String>) -> ApiResult<Response> {
    let machine = service::get(&app, &machine_id).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: machine }))
}

async fn update(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    ApiJson(body): ApiJson<UpdateMachine>,
) -> ApiResult<Response> {
    let staged = service::update(&app, &machine_id, body).await?;
    commit(
        &app,
        staged.tx,
        &Idempotency::default(),
        StatusCode::OK,
        &Item { item: staged.value },
    )
    .await
}

async fn archive(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
) -> ApiResult<Response> {
    if let Some(tx) = service::archive(&app, &machine_id).await? {
        tx.commit().await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
