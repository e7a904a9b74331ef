use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};

use super::model::{CreateTask, DiscoverTask, ExecuteTask, RunStatus};
use super::service::{self, Filters};
use crate::App;
use crate::catalog::model::ExecutionMode;
use crate::error::ErrorCode::*;
use crate::error::sets::GATE_B;
use crate::error::{ApiError, ApiResult, RouteErrors};
use crate::http::Item;
use crate::http::idempotency::{Idempotency, commit};
use crate::http::json::ApiJson;
use crate::http::paging::PageRequest;
use crate::http::query::QueryParams;
use crate::wire::parse_field;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/machines/{machine_id}/tasks", get(list).post(create))
        .route("/machines/{machine_id}/tasks/{task_id}", get(read))
        .route(
            "/machines/{machine_id}/tasks/{task_id}/discover",
            post(discover),
        )
        .route(
            "/machines/{machine_id}/tasks/{task_id}/resolve",
            post(resolve),
        )
        .route(
            "/machines/{machine_id}/tasks/{task_id}/execute",
            post(execute),
        )
        .route("/machines/{machine_id}/routes", get(list_routes))
        .route("/machines/{machine_id}/outcomes", get(list_outcomes))
        .route("/runs", get(list_runs))
        .route("/runs/{run_id}", get(read_run))
}

/// Errors beyond those of every route (`openapi.rs`).
pub(crate) const ERRORS: RouteErrors = &[
    ("GET", "/api/v1/machines/{machineId}/tasks", GATE_B),
    ("POST", "/api/v1/machines/{machineId}/tasks", GATE_B),
    ("GET", "/api/v1/machines/{machineId}/tasks/{taskId}", GATE_B),
    (
        "POST",
        "/api/v1/machines/{machineId}/tasks/{taskId}/discover",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/tasks/{taskId}/resolve",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/tasks/{taskId}/resolve",
        &[EXECUTION_UNSUPPORTED],
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/tasks/{taskId}/execute",
        GATE_B,
    ),
    (
        "POST",
        "/api/v1/machines/{machineId}/tasks/{taskId}/execute",
        &[ROUTE_REQUIRED, EXECUTION_UNSUPPORTED, ENDPOINT_UNREACHABLE],
    ),
    ("GET", "/api/v1/machines/{machineId}/routes", GATE_B),
    ("GET", "/api/v1/machines/{machineId}/outcomes", GATE_B),
    ("GET", "/api/v1/runs", GATE_B),
    ("GET", "/api/v1/runs/{runId}", GATE_B),
];

/// The machine's tasks, oldest first, internal ones included.
#[utoipa::path(get, path = "/api/v1/machines/{machineId}/tasks", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…"), crate::http::paging::PageParams),
    responses((status = 200, description = "Tasks, oldest first", body = crate::http::paging::ListPage<crate::tasks::model::TaskRecord>)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["tasks", &machine_id])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::list(&app, &machine_id, &page).await?,
    ))
}

/// Creates a task (`queued`).
#[utoipa::path(post, path = "/api/v1/machines/{machineId}/tasks", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…")),
    request_body = crate::tasks::model::CreateTask,
    responses((status = 201, description = "The task", body = crate::http::Item<crate::tasks::model::TaskRecord>)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<CreateTask>,
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

/// One task.
#[utoipa::path(get, path = "/api/v1/machines/{machineId}/tasks/{taskId}", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…"), ("taskId" = String, Path, description = "tsk_…")),
    responses((status = 200, description = "The task", body = crate::http::Item<crate::tasks::model::TaskRecord>)))]
pub(crate) async fn read(
    State(app): State<Arc<App>>,
    Path((machine_id, task_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let task = service::get(&app, &machine_id, &task_id).await?;
    Ok(crate::http::json(StatusCode::OK, &Item { item: task }))
}

/// Ranks the catalogue for the task and says which candidate would serve it.
#[utoipa::path(post, path = "/api/v1/machines/{machineId}/tasks/{taskId}/discover", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…"), ("taskId" = String, Path, description = "tsk_…")),
    request_body = crate::tasks::model::DiscoverTask,
    responses((status = 200, description = "The resolution and the ranked candidates", body = crate::tasks::model::Discovered)))]
pub(crate) async fn discover(
    State(app): State<Arc<App>>,
    Path((machine_id, task_id)): Path<(String, String)>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<DiscoverTask>,
) -> ApiResult<Response> {
    let staged = service::discover(&app, &machine_id, &task_id, body).await?;
    commit(&app, staged.tx, &idempotency, StatusCode::OK, &staged.value).await
}

/// Resolves the task into a route (`selected`, or `blocked` when nothing can run now).
#[utoipa::path(post, path = "/api/v1/machines/{machineId}/tasks/{taskId}/resolve", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…"), ("taskId" = String, Path, description = "tsk_…")),
    responses((status = 201, description = "The route and the resolution", body = crate::tasks::model::Resolved)))]
pub(crate) async fn resolve(
    State(app): State<Arc<App>>,
    Path((machine_id, task_id)): Path<(String, String)>,
    idempotency: Idempotency,
) -> ApiResult<Response> {
    let staged = service::resolve(&app, &machine_id, &task_id).await?;
    commit(
        &app,
        staged.tx,
        &idempotency,
        StatusCode::CREATED,
        &staged.value,
    )
    .await
}

/// Runs the task's selected route once: 200 for a native call (completed or failed), 202 for a
/// handoff.
#[utoipa::path(post, path = "/api/v1/machines/{machineId}/tasks/{taskId}/execute", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…"), ("taskId" = String, Path, description = "tsk_…")),
    request_body = crate::tasks::model::ExecuteTask,
    responses(
        (status = 200, description = "Executed natively; the outcome says whether it completed", body = crate::tasks::model::Executed),
        (status = 202, description = "Handed off", body = crate::tasks::model::Executed)
    ))]
pub(crate) async fn execute(
    State(app): State<Arc<App>>,
    Path((machine_id, task_id)): Path<(String, String)>,
    idempotency: Idempotency,
    ApiJson(body): ApiJson<ExecuteTask>,
) -> ApiResult<Response> {
    let staged = service::execute(&app, &machine_id, &task_id, body).await?;
    let status = StatusCode::from_u16(staged.value.status_code).unwrap_or(StatusCode::OK);
    commit(&app, staged.tx, &idempotency, status, &staged.value).await
}

/// The machine's routes, oldest first.
#[utoipa::path(get, path = "/api/v1/machines/{machineId}/routes", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…"), crate::http::paging::PageParams),
    responses((status = 200, description = "Routes, oldest first", body = crate::http::paging::ListPage<crate::tasks::model::RouteRecord>)))]
pub(crate) async fn list_routes(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["routes", &machine_id])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::routes(&app, &machine_id, &page).await?,
    ))
}

/// The machine's outcomes, oldest first.
#[utoipa::path(get, path = "/api/v1/machines/{machineId}/outcomes", tag = "tasks",
    params(("machineId" = String, Path, description = "mach_…"), crate::http::paging::PageParams),
    responses((status = 200, description = "Outcomes, oldest first", body = crate::http::paging::ListPage<crate::tasks::model::OutcomeRecord>)))]
pub(crate) async fn list_outcomes(
    State(app): State<Arc<App>>,
    Path(machine_id): Path<String>,
    query: QueryParams,
) -> ApiResult<Response> {
    let page = PageRequest::parse(&query, &["outcomes", &machine_id])?;
    Ok(crate::http::json(
        StatusCode::OK,
        &service::outcomes(&app, &machine_id, &page).await?,
    ))
}

/// A machine's runs, oldest first, filtered.
#[utoipa::path(get, path = "/api/v1/runs", tag = "tasks",
    params(
        ("machineId" = String, Query, description = "Required"),
        ("status" = Option<String>, Query, description = "queued | running | completed | failed | external | blocked"),
        ("skillKey" = Option<String>, Query), ("serviceId" = Option<String>, Query),
        ("executionMode" = Option<String>, Query, description = "native | external-handoff"),
        crate::http::paging::PageParams
    ),
    responses((status = 200, description = "Runs, oldest first", body = crate::http::paging::ListPage<crate::tasks::model::RunRecord>)))]
pub(crate) async fn list_runs(
    State(app): State<Arc<App>>,
    query: QueryParams,
) -> ApiResult<Response> {
    let machine_id = query
        .get("machineId")
        .ok_or_else(|| ApiError::validation("machineId", "required", "machineId is required"))?;
    let filters = Filters {
        status: query
            .get("status")
            .map(|v| parse_field::<RunStatus>("status", v))
            .transpose()?,
        skill_key: query.get("skillKey"),
        service_id: query.get("serviceId"),
        execution_mode: query
            .get("executionMode")
            .map(|v| parse_field::<ExecutionMode>("executionMode", v))
            .transpose()?,
    };
    let page = PageRequest::parse(
        &query,
        &[
            "runs",
            machine_id,
            query.get("status").unwrap_or_default(),
            query.get("skillKey").unwrap_or_default(),
            query.get("serviceId").unwrap_or_default(),
            query.get("executionMode").unwrap_or_default(),
        ],
    )?;
    let page = service::runs(&app, machine_id, &filters, &page).await?;
    Ok(crate::http::json(StatusCode::OK, &page))
}

/// One run with its outcome.
#[utoipa::path(get, path = "/api/v1/runs/{runId}", tag = "tasks",
    params(("runId" = String, Path, description = "run_…")),
    responses((status = 200, description = "The run and its outcome", body = crate::tasks::model::RunDetail)))]
pub(crate) async fn read_run(
    State(app): State<Arc<App>>,
    Path(run_id): Path<String>,
) -> ApiResult<Response> {
    Ok(crate::http::json(
        StatusCode::OK,
        &service::run(&app, &run_id).await?,
    ))
}
