use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};

use super::model::{EdgeInput, NodeInput};
use super::service;
use crate::App;
use crate::error::ErrorCode::*;
use crate::error::sets::GATE_B;
use crate::error::{ApiResult, RouteErrors};
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/machines/{machine_id}/graph", get(read))
        .route("/machines/{machine_id}/graph/nodes", post(create_node))
        .route(
            "/machines/{machine_id}/graph/nodes/{node_id}",
            patch(update_node).delete(delete_node),
        )
        .route("/machines/{machine_id}/graph/edges", post(create_edge))
        .route(
            "/machines/{machine_id}/graph/edges/{edge_id}",
            patch(update_edge).delete(delete_edge),
        )
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/machines/{machineId}/graph", GATE_B),
    ("POST", "/api/v1/machines/{machineId}/graph/nodes", GATE_B),
    (
        "PATCH",
        "/api/v1/machines/{machineId}/graph/nodes/{nodeId}",
        GATE_B,
    ),
    (
        "DELETE",
        "/api/v1/machines/{machineId}/graph/nodes/{nodeId}",
        &[NOT_FOUND],
    ),
    ("POST", "/api/v1/machines/{machineId}/graph/edges", GATE_B),
    (
        "PATCH",
        "/api/v1/machines/{machineId}/graph/edges/{edgeId}",
        GATE_B,
    ),
    (
        "DELETE",
        "/api/v1/machines/{machineId}/graph/edges/{edgeId}",
        &[NOT_FOUND],
    ),
];

/// The machine's whole graph: nodes and edges, each oldest first.
#[utoipa::path(get, path = "/api/v1/machines/{machineId}/graph", tag = "graph",
    params(("machineId" = String, Path, description = "mach_…")),
    responses((status = 200, description = "Nodes and edges", body = crate::graph::model::Graph)))]
pub(crate) async fn read(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
) -> ApiResult<Response> {
    Ok(crate::http::json(
        StatusCode::OK,
        &service::graph(&app, &machine_id).await?,
    ))
}

/// Adds a node.
#[utoipa::path(post, path = "/api/v1/machines/{machineId}/graph/nodes", tag = "graph",
    params(("machineId" = String, Path, description = "mach_…")),
    request_body = crate::graph::model::NodeInput,
    responses((status = 201, description = "The node", body = crate::http::Item<crate::graph::model::GraphNode>)))]
pub(crate) async fn create_node(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<NodeInput>,
) -> ApiResult<Response> {
    let staged = service::create_node(&app, &machine_id, body).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &Item { item: staged.value },
    )
    .await
}

/// Changes a node; `data` is merged shallowly, `refId: ""` clears it.
#[utoipa::path(patch, path = "/api/v1/machines/{machineId}/graph/nodes/{nodeId}", tag = "graph",
    params(("machineId" = String, Path, description = "mach_…"), ("nodeId" = String, Path, description = "gnd_…")),
    request_body = crate::graph::model::NodeInput,
    responses((status = 200, description = "The node", body = crate::http::Item<crate::graph::model::GraphNode>)))]
pub(crate) async fn update_node(
    State(app): State<Arc<App>>,
    Path((machine_id, node_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<NodeInput>,
) -> ApiResult<Response> {
    let (tx, node) = service::update_node(&app, &machine_id, &node_id, body).await?;
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    Ok(crate::http::json(StatusCode::OK, &Item { item: node }))
}

/// Deletes a node and the edges touching it.
#[utoipa::path(delete, path = "/api/v1/machines/{machineId}/graph/nodes/{nodeId}", tag = "graph",
    params(("machineId" = String, Path, description = "mach_…"), ("nodeId" = String, Path, description = "gnd_…")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_node(
    State(app): State<Arc<App>>,
    Path((machine_id, node_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    service::delete_node(&app, &machine_id, &node_id)
        .await?
        .commit()
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Adds an edge between two nodes of the machine.
#[utoipa::path(post, path = "/api/v1/machines/{machineId}/graph/edges", tag = "graph",
    params(("machineId" = String, Path, description = "mach_…")),
    request_body = crate::graph::model::EdgeInput,
    responses((status = 201, description = "The edge", body = crate::http::Item<crate::graph::model::GraphEdge>)))]
pub(crate) async fn create_edge(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<EdgeInput>,
) -> ApiResult<Response> {
    let staged = service::create_edge(&app, &machine_id, body).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &Item { item: staged.value },
    )
    .await
}

/// Changes an edge; `data` is merged shallowly, `label: ""` removes it.
#[utoipa::path(patch, path = "/api/v1/machines/{machineId}/graph/edges/{edgeId}", tag = "graph",
    params(("machineId" = String, Path, description = "mach_…"), ("edgeId" = String, Path, description = "ged_…")),
    request_body = crate::graph::model::EdgeInput,
    responses((status = 200, description = "The edge", body = crate::http::Item<crate::graph::model::GraphEdge>)))]
pub(crate) async fn update_edge(
    State(app): State<Arc<App>>,
    Path((machine_id, edge_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<EdgeInput>,
) -> ApiResult<Response> {
    let (tx, edge) = service::update_edge(&app, &machine_id, &edge_id, body).await?;
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    Ok(crate::http::json(StatusCode::OK, &Item { item: edge }))
}

/// Deletes an edge.
#[utoipa::path(delete, path = "/api/v1/machines/{machineId}/graph/edges/{edgeId}", tag = "graph",
    params(("machineId" = String, Path, description = "mach_…"), ("edgeId" = String, Path, description = "ged_…")),
    responses((status = 204, description = "Deleted")))]
pub(crate) async fn delete_edge(
    State(app): State<Arc<App>>,
    Path((machine_id, edge_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    service::delete_edge(&app, &machine_id, &edge_id)
        .await?
        .commit()
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
