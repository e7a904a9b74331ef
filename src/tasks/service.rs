//! Tasks (spec orchestration.md §2): create, discover, resolve, execute; the reads of routes,
//! outcomes and runs (§3); and the recording of executions that orders and direct reads share
//! (orders-and-payments.md §6.3): `running` rows committed before the call, final states after.

use serde_json::{Map, Value, json};

use super::model::{
    Constraints, CreateTask, DiscoverTask, Discovered, Discovery, ExecuteTask, Executed, Fallback,
    OutcomeRecord, OutcomeStatus, Resolved, RouteRecord, RouteStatus, RunDetail, RunRecord,
    RunStatus, TaskRecord, TaskResolution, TaskStatus,
};
use super::store::{self, RunFilters};
use crate::App;
use crate::audit::{self, Actor, NewAuditEvent};
use crate::catalog::model::{ExecutionMode, ExternalHandoff, IntegrationStatus, Service};
use crate::catalog::service::{self as catalog, MachineScope, SkillStates};
use crate::clock::format_ms;
use crate::engine::{self, Finished, Inputs, Prepared};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::paging::{ListPage, PageRequest, Position};
use crate::http::validate::{MAX_NAME, name_list, optional_text, required_text};
use crate::machines::model::Machine;
use crate::machines::service as machines;
use crate::market::model::CandidateView;
use crate::market::ranking::{self, Candidate, Context, Criteria};
use crate::market::service::service_type;
use crate::store::{Staged, Tx, new_id};

/// `discovery.maxCandidates`: default and range.
const DEFAULT_CANDIDATES: i64 = 10;
const MAX_CANDIDATES: i64 = 25;

fn task_not_found(id: &str) -> ApiError {
    ApiError::not_found("task", id)
}

fn task_closed(status: TaskStatus) -> ApiError {
    ApiError::validation(
        "taskId",
        "open task",
        format!("The task is {status}: only queued, resolving or resolved tasks can be discovered or resolved"),
    )
    .with_reason("task-closed")
    .with("status", status.as_str())
}

fn route_required() -> ApiError {
    ApiError::new(
        ErrorCode::ROUTE_REQUIRED,
        "The task has no selected route: resolve it first (a route runs once)",
    )
}

fn task_event(task: &TaskRecord, event_type: &'static str, payload: Value) -> NewAuditEvent {
    NewAuditEvent {
        actor: Actor::Api,
        event_type,
        resource_type: "task",
        resource_id: task.id.clone(),
        machine_id: Some(task.machine_id.clone()),
        payload,
    }
}

fn max_candidates(field: &str, value: Option<i64>) -> ApiResult<Option<i64>> {
    match value {
        Some(n) if !(1..=MAX_CANDIDATES).contains(&n) => Err(ApiError::validation(
            field,
            "1..25",
            format!("{field} must be from 1 to {MAX_CANDIDATES}"),
        )),
        other => Ok(other),
    }
}

fn constraints(app: &App, input: super::model::ConstraintsInput) -> ApiResult<Constraints> {
    let budget = match input.budget {
        Some(b) if !b.is_finite() || b < 0.0 => {
            return Err(ApiError::validation(
                "constraints.budget",
                ">= 0",
                "constraints.budget must be a number >= 0",
            ));
        }
        other => other,
    };
    let preferred = name_list("constraints.preferredSkillKeys", input.preferred_skill_keys)?
        .unwrap_or_default();
    if let Some((i, unknown)) = preferred
        .iter()
        .enumerate()
        .find(|(_, key)| app.catalog.skill(key).is_none())
    {
        return Err(ApiError::validation(
            &format!("constraints.preferredSkillKeys[{i}]"),
            "known skill",
            format!("Unknown skill {unknown}"),
        )
        .with_reason("unknown-skill"));
    }
    Ok(Constraints {
        region: optional_text("constraints.region", input.region, MAX_NAME)?,
        budget,
        allow_external_handoff: input.allow_external_handoff.unwrap_or(true),
        require_native_execution: input.require_native_execution.unwrap_or(false),
        required_capabilities: name_list(
            "constraints.requiredCapabilities",
            input.required_capabilities,
        )?
        .unwrap_or_default(),
        preferred_skill_keys: preferred,
    })
}

pub async fn create(
    app: &App,
    machine_id: &str,
    body: CreateTask,
) -> ApiResult<Staged<TaskRecord>> {
    machines::gate_b(app, machine_id).await?;
    let raw_type = body.service_type.ok_or_else(|| {
        ApiError::validation("serviceType", "required", "serviceType is required")
    })?;
    let service_type = service_type("serviceType", &raw_type)?;
    let task_type = required_text("taskType", body.task_type, MAX_NAME)?;
    let operation = optional_text("operation", body.operation, MAX_NAME)?;
    let constraints = constraints(app, body.constraints.unwrap_or_default())?;
    let discovery = Discovery {
        max_candidates: max_candidates(
            "discovery.maxCandidates",
            body.discovery.and_then(|d| d.max_candidates),
        )?
        .unwrap_or(DEFAULT_CANDIDATES),
    };
    let now = app.clock.now_ms();
    let task = TaskRecord {
        id: new_id("tsk_"),
        machine_id: machine_id.to_string(),
        service_type,
        operation,
        task_type,
        status: TaskStatus::Queued,
        input: body.input.unwrap_or_default(),
        constraints,
        discovery,
        route_id: None,
        outcome_id: None,
        order_id: None,
        created_at: format_ms(now),
        updated_at: format_ms(now),
        created_at_ms: now,
    };
    let mut tx = app.store.begin().await?;
    store::insert_task(&mut tx, &task).await?;
    let payload = json!({"serviceType": task.service_type, "taskType": task.task_type,
                         "operation": task.operation});
    audit::record(&mut tx, now, task_event(&task, "task.created", payload)).await?;
    Ok(Staged { tx, value: task })
}

pub async fn list(
    app: &App,
    machine_id: &str,
    page: &PageRequest,
) -> ApiResult<ListPage<TaskRecord>> {
    machines::gate_b(app, machine_id).await?;
    let rows = store::tasks_of(
        &app.store,
        machine_id,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(page.finish(rows, |t| Position {
        t: t.created_at_ms,
        id: t.id.clone(),
    }))
}

async fn task_of(app: &App, machine_id: &str, task_id: &str) -> ApiResult<TaskRecord> {
    store::task(&app.store, task_id)
        .await?
        .filter(|t| t.machine_id == machine_id)
        .ok_or_else(|| task_not_found(task_id))
}

pub async fn get(app: &App, machine_id: &str, task_id: &str) -> ApiResult<TaskRecord> {
    machines::gate_b(app, machine_id).await?;
    task_of(app, machine_id, task_id).await
}

/// The outcome of the discovery rule (§2.2): the ranked candidates and the resolution.
struct Decision<'a> {
    ranked: Vec<Candidate<'a>>,
    /// Index in `ranked` of the candidate that decides the resolution.
    chosen: Option<usize>,
    resolution: TaskResolution,
}

fn candidate_view(candidate: &Candidate<'_>, scope: &MachineScope, now_ms: i64) -> CandidateView {
    CandidateView {
        service: catalog::view(candidate.service, Some(scope), now_ms),
        score: candidate.score,
        reasons: candidate.reasons.clone(),
    }
}

/// §2.2: rank with the task's criteria (no delegation policy, stored skill credentials only) and
/// take the first candidate that can be used now.
fn decide<'a>(
    app: &'a App,
    task: &TaskRecord,
    scope: &MachineScope,
    skills: &SkillStates,
) -> Decision<'a> {
    let no_credentials = Default::default();
    let c = &task.constraints;
    let criteria = Criteria {
        operation: task.operation.as_deref(),
        required_capabilities: &c.required_capabilities,
        region: c.region.as_deref(),
        allow_external_handoff: c.allow_external_handoff,
        require_native_execution: c.require_native_execution,
        budget_max: c.budget,
        budget_currency: None,
        preferred_skill_keys: &c.preferred_skill_keys,
        limit: task.discovery.max_candidates as usize,
    };
    let context = Context {
        scope,
        delegation: None,
        skills,
        request_credentials: &no_credentials,
    };
    let ranked = ranking::rank(
        app.catalog.services_of_type(task.service_type),
        task.service_type,
        &criteria,
        &context,
    );
    let now = app.clock.now_ms();
    let mut first_problem: Option<String> = None;
    let mut chosen = None;
    let mut resolution = None;
    for (i, candidate) in ranked.iter().enumerate() {
        let service = candidate.service;
        if service.execution_mode == ExecutionMode::ExternalHandoff {
            if let (true, Some(handoff)) = (c.allow_external_handoff, service.handoff.clone()) {
                chosen = Some(i);
                resolution = Some(TaskResolution::Handoff {
                    candidate: candidate_view(candidate, scope, now),
                    handoff,
                });
                break;
            }
            continue;
        }
        let operation = task.operation.as_deref().unwrap_or(&service.operations[0]);
        match engine::executor_available(app, service, operation, scope) {
            Err(problem) => {
                first_problem.get_or_insert(problem.message);
            }
            Ok(_)
                if service.integration_status == IntegrationStatus::CredentialsRequired
                    && !candidate.credentials_available =>
            {
                first_problem.get_or_insert(format!(
                    "credentials for {} are not configured",
                    service.provider_key
                ));
            }
            Ok(_) => {
                chosen = Some(i);
                resolution = Some(TaskResolution::Native {
                    candidate: candidate_view(candidate, scope, now),
                });
                break;
            }
        }
    }
    let resolution = resolution.unwrap_or_else(|| TaskResolution::Unavailable {
        reason: first_problem.unwrap_or_else(|| "no candidate matches the constraints".to_string()),
        candidates: ranked
            .iter()
            .map(|c| candidate_view(c, scope, now))
            .collect(),
    });
    Decision {
        ranked,
        chosen,
        resolution,
    }
}

async fn open_task(app: &App, machine_id: &str, task_id: &str) -> ApiResult<(Machine, TaskRecord)> {
    let machine = machines::gate_b(app, machine_id).await?;
    let task = task_of(app, machine_id, task_id).await?;
    if !task.status.is_open() {
        return Err(task_closed(task.status));
    }
    Ok((machine, task))
}

pub async fn discover(
    app: &App,
    machine_id: &str,
    task_id: &str,
    body: DiscoverTask,
) -> ApiResult<Staged<Discovered>> {
    let max = max_candidates("maxCandidates", body.max_candidates)?;
    let (machine, mut task) = open_task(app, machine_id, task_id).await?;
    let expected = task.status;
    if let Some(allow) = body.allow_external_handoff {
        task.constraints.allow_external_handoff = allow;
    }
    if let Some(native) = body.require_native_execution {
        task.constraints.require_native_execution = native;
    }
    if let Some(max) = max {
        task.discovery.max_candidates = max;
    }
    let now = app.clock.now_ms();
    let scope = MachineScope::of(app, machine, now).await?;
    let skills = catalog::skill_states(app).await?;
    let decision = decide(app, &task, &scope, &skills);
    let candidates: Vec<CandidateView> = decision
        .ranked
        .iter()
        .map(|c| candidate_view(c, &scope, now))
        .collect();
    task.status = TaskStatus::Resolving;
    task.updated_at = format_ms(now);
    let mut tx = app.store.begin().await?;
    if !store::update_task(&mut tx, &task, expected, now).await? {
        return Err(task_closed(
            store::task(&app.store, task_id)
                .await?
                .map_or(expected, |t| t.status),
        ));
    }
    let payload =
        json!({"candidateCount": candidates.len(), "resolutionKind": decision.resolution.kind()});
    audit::record(&mut tx, now, task_event(&task, "task.discovered", payload)).await?;
    Ok(Staged {
        tx,
        value: Discovered {
            task_id: task.id,
            machine_id: task.machine_id,
            resolution: decision.resolution,
            candidates,
        },
    })
}

/// A new route for `service` (`status: selected`), as resolve, orders and direct reads make.
#[allow(clippy::too_many_arguments)]
pub fn new_route(
    task: &TaskRecord,
    service: &Service,
    integration_status: IntegrationStatus,
    status: RouteStatus,
    score: f64,
    reason: String,
    fallback_chain: Vec<Fallback>,
    resolution: Value,
    now_ms: i64,
) -> RouteRecord {
    RouteRecord {
        id: new_id("rte_"),
        machine_id: task.machine_id.clone(),
        task_id: task.id.clone(),
        selected_skill_key: service.skill_key.clone(),
        selected_service_id: service.id.clone(),
        execution_mode: service.execution_mode,
        integration_status,
        status,
        reason,
        score,
        fallback_chain,
        handoff: (service.execution_mode == ExecutionMode::ExternalHandoff)
            .then(|| service.handoff.clone())
            .flatten(),
        order_id: task.order_id.clone(),
        created_at: format_ms(now_ms),
        updated_at: format_ms(now_ms),
        created_at_ms: now_ms,
        resolution,
    }
}

pub async fn resolve(app: &App, machine_id: &str, task_id: &str) -> ApiResult<Staged<Resolved>> {
    let (machine, mut task) = open_task(app, machine_id, task_id).await?;
    let expected = task.status;
    let now = app.clock.now_ms();
    let scope = MachineScope::of(app, machine, now).await?;
    let skills = catalog::skill_states(app).await?;
    let decision = decide(app, &task, &scope, &skills);
    let resolution_json = serde_json::to_value(&decision.resolution)
        .map_err(|e| ApiError::internal("serialising a resolution", e))?;
    let (candidate, status, next_task_status, reason) =
        match (decision.chosen, &decision.resolution) {
            (Some(i), _) => {
                let c = &decision.ranked[i];
                let reason = format!(
                    "{} (score {}): {}",
                    decision.resolution.kind(),
                    c.score,
                    c.reasons.join("; ")
                );
                (c, RouteStatus::Selected, TaskStatus::Resolved, reason)
            }
            (None, TaskResolution::Unavailable { reason, .. }) if !decision.ranked.is_empty() => (
                &decision.ranked[0],
                RouteStatus::Blocked,
                TaskStatus::Resolving,
                reason.clone(),
            ),
            (None, _) => {
                return Err(ApiError::new(
                    ErrorCode::EXECUTION_UNSUPPORTED,
                    "No candidate can serve this task",
                )
                .with_reason("no-candidate")
                .with("resolution", resolution_json));
            }
        };
    let fallback_chain = decision
        .ranked
        .iter()
        .filter(|c| c.service.id != candidate.service.id)
        .map(|c| Fallback {
            skill_key: c.service.skill_key.clone(),
            service_id: c.service.id.clone(),
            execution_mode: c.service.execution_mode,
        })
        .collect();
    let route = new_route(
        &task,
        candidate.service,
        candidate.integration_status,
        status,
        candidate.score,
        reason,
        fallback_chain,
        resolution_json,
        now,
    );
    task.status = next_task_status;
    task.route_id = Some(route.id.clone());
    task.updated_at = format_ms(now);
    let mut tx = app.store.begin().await?;
    if !store::update_task(&mut tx, &task, expected, now).await? {
        return Err(task_closed(
            store::task(&app.store, task_id)
                .await?
                .map_or(expected, |t| t.status),
        ));
    }
    store::save_route(&mut tx, &route, now).await?;
    let payload = json!({"routeId": route.id, "routeStatus": route.status,
                         "resolutionKind": decision.resolution.kind()});
    audit::record(&mut tx, now, task_event(&task, "task.resolved", payload)).await?;
    Ok(Staged {
        tx,
        value: Resolved {
            item: route,
            resolution: decision.resolution,
        },
    })
}

/// The rows of one execution while it runs.
#[derive(Debug, Clone)]
pub struct Execution {
    pub task: TaskRecord,
    pub route: RouteRecord,
    pub run: RunRecord,
    pub outcome: OutcomeRecord,
}

fn run_and_outcome(
    task: &TaskRecord,
    route: &RouteRecord,
    run_status: RunStatus,
    outcome_status: OutcomeStatus,
    now_ms: i64,
) -> (RunRecord, OutcomeRecord) {
    let outcome = OutcomeRecord {
        id: new_id("out_"),
        machine_id: task.machine_id.clone(),
        task_id: task.id.clone(),
        route_id: route.id.clone(),
        status: outcome_status,
        skill_key: route.selected_skill_key.clone(),
        service_id: route.selected_service_id.clone(),
        execution_mode: route.execution_mode,
        receipt_ref: None,
        logs_ref: None,
        external_ref: None,
        error_code: None,
        error_message: None,
        result: None,
        created_at: format_ms(now_ms),
        updated_at: format_ms(now_ms),
        created_at_ms: now_ms,
    };
    let run = RunRecord {
        id: new_id("run_"),
        machine_id: task.machine_id.clone(),
        task_id: task.id.clone(),
        route_id: Some(route.id.clone()),
        outcome_id: Some(outcome.id.clone()),
        status: run_status,
        execution_mode: Some(route.execution_mode),
        skill_key: Some(route.selected_skill_key.clone()),
        service_id: Some(route.selected_service_id.clone()),
        summary: None,
        order_id: task.order_id.clone(),
        created_at: format_ms(now_ms),
        updated_at: format_ms(now_ms),
        created_at_ms: now_ms,
    };
    (run, outcome)
}

/// An order's internal task.
pub async fn find_internal(app: &App, task_id: &str) -> ApiResult<TaskRecord> {
    store::task(&app.store, task_id)
        .await?
        .ok_or_else(|| ApiError::internal("an order's task", format!("task {task_id} is missing")))
}

/// Closes an execution a crash interrupted: its `running` outcome and run, its route and its
/// `executing` task fail with `message` (the interrupted-execution sweep). Rows that are no
/// longer running are left as they are.
pub async fn fail_interrupted(
    tx: &mut Tx,
    task_id: &str,
    message: &str,
    now_ms: i64,
) -> ApiResult<()> {
    let Some(mut task) = store::task_in(tx, task_id).await? else {
        return Ok(());
    };
    if let Some(outcome_id) = &task.outcome_id
        && let Some(mut outcome) = store::outcome_in(tx, outcome_id).await?
        && outcome.status == OutcomeStatus::Running
    {
        outcome.status = OutcomeStatus::Failed;
        outcome.error_code = Some("EXECUTION_INTERRUPTED".into());
        outcome.error_message = Some(message.to_string());
        store::save_outcome(tx, &outcome, now_ms).await?;
        if let Some(mut run) = store::run_of_outcome(tx, outcome_id).await?
            && run.status == RunStatus::Running
        {
            run.status = RunStatus::Failed;
            run.summary = Some(format!("failed: {message}"));
            store::save_run(tx, &run, now_ms).await?;
        }
        if let Some(mut route) = store::route_in(tx, &outcome.route_id).await? {
            route.status = RouteStatus::Failed;
            store::save_route(tx, &route, now_ms).await?;
        }
    }
    if task.status == TaskStatus::Executing {
        task.status = TaskStatus::Failed;
        store::update_task(tx, &task, TaskStatus::Executing, now_ms).await?;
    }
    Ok(())
}

/// Inserts an internal task (orders, direct reads): no `task.*` event here; the caller records
/// its own.
pub async fn insert_internal(tx: &mut Tx, task: &TaskRecord) -> ApiResult<()> {
    Ok(store::insert_task(tx, task).await?)
}

/// An internal task for `service` (`market-order` or `direct-read`), `queued`.
pub fn internal_task(
    machine_id: &str,
    service: &Service,
    operation: &str,
    task_type: &str,
    input: Map<String, Value>,
    order_id: Option<String>,
    now_ms: i64,
) -> TaskRecord {
    TaskRecord {
        id: new_id("tsk_"),
        machine_id: machine_id.to_string(),
        service_type: service.service_type,
        operation: Some(operation.to_string()),
        task_type: task_type.to_string(),
        status: TaskStatus::Queued,
        input,
        constraints: Constraints::default(),
        discovery: Discovery {
            max_candidates: DEFAULT_CANDIDATES,
        },
        route_id: None,
        outcome_id: None,
        order_id,
        created_at: format_ms(now_ms),
        updated_at: format_ms(now_ms),
        created_at_ms: now_ms,
    }
}

/// Before the call: the task becomes `executing` (compare-and-set from `expected`), and the
/// route (inserted or already stored), a `running` run and a `running` outcome are written. The
/// caller commits this before it calls. `false` when the task was not in `expected`.
pub async fn start(
    tx: &mut Tx,
    mut task: TaskRecord,
    route: RouteRecord,
    expected: TaskStatus,
    now_ms: i64,
) -> ApiResult<Option<Execution>> {
    let (run, outcome) = run_and_outcome(
        &task,
        &route,
        RunStatus::Running,
        OutcomeStatus::Running,
        now_ms,
    );
    task.status = TaskStatus::Executing;
    task.route_id = Some(route.id.clone());
    task.outcome_id = Some(outcome.id.clone());
    task.updated_at = format_ms(now_ms);
    if !store::update_task(tx, &task, expected, now_ms).await? {
        return Ok(None);
    }
    store::save_route(tx, &route, now_ms).await?;
    store::save_outcome(tx, &outcome, now_ms).await?;
    store::save_run(tx, &run, now_ms).await?;
    Ok(Some(Execution {
        task,
        route,
        run,
        outcome,
    }))
}

/// After the call: the final states of §6.3. `task_after_402` is the task status a provider
/// `402` leaves (the status before execute: a 402 changes nothing but the attempt's rows).
pub async fn finish(
    tx: &mut Tx,
    execution: &mut Execution,
    finished: &Finished,
    task_after_402: TaskStatus,
    now_ms: i64,
) -> ApiResult<()> {
    let (outcome_status, run_status, route_status, task_status) = match finished {
        Finished::Completed { .. } => (
            OutcomeStatus::Completed,
            RunStatus::Completed,
            RouteStatus::Completed,
            TaskStatus::Completed,
        ),
        Finished::PaymentRequired { .. } => (
            OutcomeStatus::Failed,
            RunStatus::Failed,
            RouteStatus::Failed,
            task_after_402,
        ),
        _ => (
            OutcomeStatus::Failed,
            RunStatus::Failed,
            RouteStatus::Failed,
            TaskStatus::Failed,
        ),
    };
    let Execution {
        task,
        route,
        run,
        outcome,
    } = execution;
    outcome.status = outcome_status;
    outcome.result = match finished {
        Finished::Completed { result, .. } => Some(result.clone()),
        _ => None,
    };
    if let Some((code, message)) = finished.error() {
        outcome.error_code = Some(code.to_string());
        outcome.error_message = Some(message);
    }
    outcome.updated_at = format_ms(now_ms);
    run.status = run_status;
    run.summary = Some(finished.summary());
    run.updated_at = format_ms(now_ms);
    route.status = route_status;
    route.updated_at = format_ms(now_ms);
    task.status = task_status;
    task.updated_at = format_ms(now_ms);
    store::save_outcome(tx, outcome, now_ms).await?;
    store::save_run(tx, run, now_ms).await?;
    store::save_route(tx, route, now_ms).await?;
    if !store::update_task(tx, task, TaskStatus::Executing, now_ms).await? {
        return Err(ApiError::internal(
            "finishing an execution",
            format!("task {} left executing by another writer", task.id),
        ));
    }
    Ok(())
}

/// A handoff (no call): external outcome and run, the route handed off, the task handed off,
/// all in `tx` (compare-and-set on the task from `expected`). `None` when the task moved.
pub async fn hand_off(
    tx: &mut Tx,
    mut task: TaskRecord,
    mut route: RouteRecord,
    handoff: &ExternalHandoff,
    expected: TaskStatus,
    now_ms: i64,
) -> ApiResult<Option<Execution>> {
    let (mut run, mut outcome) = run_and_outcome(
        &task,
        &route,
        RunStatus::External,
        OutcomeStatus::External,
        now_ms,
    );
    outcome.external_ref = Some(handoff.url.clone());
    run.summary = Some(format!("handed off: {}", handoff.label));
    route.status = RouteStatus::HandedOff;
    route.handoff = Some(handoff.clone());
    route.updated_at = format_ms(now_ms);
    task.status = TaskStatus::HandedOff;
    task.route_id = Some(route.id.clone());
    task.outcome_id = Some(outcome.id.clone());
    task.updated_at = format_ms(now_ms);
    if !store::update_task(tx, &task, expected, now_ms).await? {
        return Ok(None);
    }
    store::save_route(tx, &route, now_ms).await?;
    store::save_outcome(tx, &outcome, now_ms).await?;
    store::save_run(tx, &run, now_ms).await?;
    Ok(Some(Execution {
        task,
        route,
        run,
        outcome,
    }))
}

/// `POST …/tasks/{taskId}/execute`. A native execution commits its `running` rows itself and
/// returns the final transaction staged; a handoff is one staged transaction.
pub async fn execute(
    app: &App,
    machine_id: &str,
    task_id: &str,
    body: ExecuteTask,
) -> ApiResult<Staged<Executed>> {
    let machine = machines::gate_b(app, machine_id).await?;
    let mut task = task_of(app, machine_id, task_id).await?;
    let route = match (&task.route_id, task.status) {
        (Some(route_id), TaskStatus::Resolved) => store::route(&app.store, route_id)
            .await?
            .filter(|r| r.status == RouteStatus::Selected)
            .ok_or_else(route_required)?,
        _ => return Err(route_required()),
    };
    let service = app
        .catalog
        .service(&route.selected_service_id)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::EXECUTION_UNSUPPORTED,
                "The route's service is no longer in the catalogue",
            )
            .with_reason("no-adapter")
        })?;
    if service.payment.required {
        return Err(ApiError::new(
            ErrorCode::EXECUTION_UNSUPPORTED,
            "This service must be paid for: place an order instead",
        )
        .with_reason("order-required"));
    }
    if let Some(input) = body.input {
        task.input = input;
    }
    let operation = task
        .operation
        .clone()
        .unwrap_or_else(|| service.operations[0].clone());
    let now = app.clock.now_ms();
    let scope = MachineScope::of(app, machine, now).await?;
    let credentials = catalog::stored_credentials(app, &service.skill_key).await?;
    let prepared = engine::prepare(
        app,
        service,
        &scope,
        &Inputs {
            operation: &operation,
            input: &task.input,
            credentials: credentials.as_ref(),
            payment: None,
        },
    )
    .await?;
    let resolution = route.resolution.clone();

    let (mut tx, execution, status_code) = match prepared {
        Prepared::Handoff(handoff) => {
            let mut tx = app.store.begin().await?;
            let execution = hand_off(&mut tx, task, route, &handoff, TaskStatus::Resolved, now)
                .await?
                .ok_or_else(route_required)?;
            (tx, execution, 202)
        }
        Prepared::Call(call) => {
            let mut tx = app.store.begin().await?;
            let mut execution = start(&mut tx, task, route, TaskStatus::Resolved, now)
                .await?
                .ok_or_else(route_required)?;
            tx.commit().await?;
            let finished = engine::send(call).await;
            let done = app.clock.now_ms();
            let mut tx = app.store.begin().await?;
            finish(
                &mut tx,
                &mut execution,
                &finished,
                TaskStatus::Resolved,
                done,
            )
            .await?;
            (tx, execution, 200)
        }
    };
    let now = app.clock.now_ms();
    let payload = json!({"routeId": execution.route.id, "runId": execution.run.id,
                         "outcomeId": execution.outcome.id, "status": execution.outcome.status,
                         "statusCode": status_code});
    audit::record(
        &mut tx,
        now,
        task_event(&execution.task, "task.executed", payload),
    )
    .await?;
    Ok(Staged {
        tx,
        value: Executed {
            item: execution.outcome,
            run: execution.run,
            resolution,
            status_code,
        },
    })
}

pub async fn routes(
    app: &App,
    machine_id: &str,
    page: &PageRequest,
) -> ApiResult<ListPage<RouteRecord>> {
    machines::gate_b(app, machine_id).await?;
    let rows = store::routes_of(
        &app.store,
        machine_id,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(page.finish(rows, |r| Position {
        t: r.created_at_ms,
        id: r.id.clone(),
    }))
}

pub async fn outcomes(
    app: &App,
    machine_id: &str,
    page: &PageRequest,
) -> ApiResult<ListPage<OutcomeRecord>> {
    machines::gate_b(app, machine_id).await?;
    let rows = store::outcomes_of(
        &app.store,
        machine_id,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(page.finish(rows, |o| Position {
        t: o.created_at_ms,
        id: o.id.clone(),
    }))
}

pub async fn runs(
    app: &App,
    machine_id: &str,
    filters: &RunFilters<'_>,
    page: &PageRequest,
) -> ApiResult<ListPage<RunRecord>> {
    machines::gate_b(app, machine_id).await?;
    let rows = store::runs_of(
        &app.store,
        machine_id,
        filters,
        page.after.as_ref(),
        page.fetch_limit(),
    )
    .await?;
    Ok(page.finish(rows, |r| Position {
        t: r.created_at_ms,
        id: r.id.clone(),
    }))
}

pub async fn run(app: &App, run_id: &str) -> ApiResult<RunDetail> {
    let run = store::run(&app.store, run_id)
        .await?
        .ok_or_else(|| ApiError::not_found("run", run_id))?;
    machines::gate_b(app, &run.machine_id).await?;
    let outcome = match &run.outcome_id {
        Some(id) => store::outcome(&app.store, id).await?,
        None => None,
    };
    Ok(RunDetail { run, outcome })
}

pub use store::RunFilters as Filters;
