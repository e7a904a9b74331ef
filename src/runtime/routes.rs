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

async fn list(
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

async fn read(
    State(app): State<Arc<App>>,
    Path((machine_id, provider_key)): Path<(String, String)>,
) -> ApiResult<Response> {
    let endpoint = service::get(&app, &machine_id, &provider_key).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: endpoint }))
}

async fn put(
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

async fn delete(
    State(app): State<Arc<App>>,
    Path((machine_id, provider_key)): Path<(String, String)>,
) -> ApiResult<Response> {
    service::delete(&app, &machine_id, &provider_key)
        .await?
        .commit()
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
