use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::catalog::model::{ExecutionMode, ExternalHandoff, IntegrationStatus, ServiceType};
use crate::market::model::CandidateView;
use crate::wire_enum;

wire_enum!(pub TaskStatus {
    Draft = "draft",
    Queued = "queued",
    Resolving = "resolving",
    Resolved = "resolved",
    Executing = "executing",
    Completed = "completed",
    Failed = "failed",
    HandedOff = "handed_off",
});

wire_enum!(pub RouteStatus {
    Selected = "selected",
    Blocked = "blocked",
    HandedOff = "handed_off",
    Failed = "failed",
    Completed = "completed",
});

wire_enum!(pub OutcomeStatus {
    Pending = "pending",
    Running = "running",
    Completed = "completed",
    Failed = "failed",
    External = "external",
});

wire_enum!(pub RunStatus {
    Queued = "queued",
    Running = "running",
    Completed = "completed",
    Failed = "failed",
    External = "external",
    Blocked = "blocked",
});

crate::impl_wire_enum!(TaskStatus, RouteStatus, OutcomeStatus, RunStatus);

impl TaskStatus {
    /// Discover and resolve are allowed only before execution.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TaskStatus::Queued | TaskStatus::Resolving | TaskStatus::Resolved
        )
    }
}

/// `constraints` of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Constraints {
    pub region: Option<String>,
    pub budget: Option<f64>,
    pub allow_external_handoff: bool,
    pub require_native_execution: bool,
    pub required_capabilities: Vec<String>,
    pub preferred_skill_keys: Vec<String>,
}

impl Default for Constraints {
    fn default() -> Self {
        Constraints {
            region: None,
            budget: None,
            allow_external_handoff: true,
            require_native_execution: false,
            required_capabilities: Vec::new(),
            preferred_skill_keys: Vec::new(),
        }
    }
}

/// `discovery` of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    pub max_candidates: i64,
}

/// `TaskRecord`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub id: String,
    pub machine_id: String,
    pub service_type: ServiceType,
    pub operation: Option<String>,
    pub task_type: String,
    pub status: TaskStatus,
    #[schema(value_type = Object)]
    pub input: Map<String, Value>,
    pub constraints: Constraints,
    pub discovery: Discovery,
    pub route_id: Option<String>,
    pub outcome_id: Option<String>,
    pub order_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// One entry of a route's `fallbackChain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fallback {
    pub skill_key: String,
    pub service_id: String,
    pub execution_mode: ExecutionMode,
}

/// `RouteRecord`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteRecord {
    pub id: String,
    pub machine_id: String,
    pub task_id: String,
    pub selected_skill_key: String,
    pub selected_service_id: String,
    pub execution_mode: ExecutionMode,
    pub integration_status: IntegrationStatus,
    pub status: RouteStatus,
    pub reason: String,
    pub score: f64,
    pub fallback_chain: Vec<Fallback>,
    pub handoff: Option<ExternalHandoff>,
    pub order_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
    /// The resolution this route was persisted from (answered again by execute).
    #[serde(skip)]
    pub resolution: Value,
}

/// `OutcomeRecord`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutcomeRecord {
    pub id: String,
    pub machine_id: String,
    pub task_id: String,
    pub route_id: String,
    pub status: OutcomeStatus,
    pub skill_key: String,
    pub service_id: String,
    pub execution_mode: ExecutionMode,
    pub receipt_ref: Option<String>,
    pub logs_ref: Option<String>,
    pub external_ref: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// `RunRecord`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    pub id: String,
    pub machine_id: String,
    pub task_id: String,
    pub route_id: Option<String>,
    pub outcome_id: Option<String>,
    pub status: RunStatus,
    pub execution_mode: Option<ExecutionMode>,
    pub skill_key: Option<String>,
    pub service_id: Option<String>,
    pub summary: Option<String>,
    pub order_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// `TaskResolution`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TaskResolution {
    Native {
        candidate: CandidateView,
    },
    Handoff {
        candidate: CandidateView,
        handoff: ExternalHandoff,
    },
    Unavailable {
        reason: String,
        candidates: Vec<CandidateView>,
    },
}

impl TaskResolution {
    pub fn kind(&self) -> &'static str {
        match self {
            TaskResolution::Native { .. } => "native",
            TaskResolution::Handoff { .. } => "handoff",
            TaskResolution::Unavailable { .. } => "unavailable",
        }
    }
}

/// `constraints` as sent.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConstraintsInput {
    pub region: Option<String>,
    pub budget: Option<f64>,
    pub allow_external_handoff: Option<bool>,
    pub require_native_execution: Option<bool>,
    pub required_capabilities: Option<Vec<String>>,
    pub preferred_skill_keys: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryInput {
    pub max_candidates: Option<i64>,
}

/// `POST /machines/{machineId}/tasks`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateTask {
    pub service_type: Option<String>,
    pub task_type: Option<String>,
    pub operation: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
    pub constraints: Option<ConstraintsInput>,
    pub discovery: Option<DiscoveryInput>,
}

/// `POST …/tasks/{taskId}/discover`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverTask {
    pub allow_external_handoff: Option<bool>,
    pub require_native_execution: Option<bool>,
    pub max_candidates: Option<i64>,
}

/// `POST …/tasks/{taskId}/execute`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteTask {
    #[schema(value_type = Option<Object>)]
    pub input: Option<Map<String, Value>>,
}

/// The answer of discover.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Discovered {
    pub task_id: String,
    pub machine_id: String,
    pub resolution: TaskResolution,
    pub candidates: Vec<CandidateView>,
}

/// The answer of resolve.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Resolved {
    pub item: RouteRecord,
    pub resolution: TaskResolution,
}

/// The answer of execute.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Executed {
    pub item: OutcomeRecord,
    pub run: RunRecord,
    #[schema(value_type = Object)]
    pub resolution: Value,
    #[serde(skip)]
    pub status_code: u16,
}

/// `GET /runs/{runId}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RunDetail {
    pub run: RunRecord,
    pub outcome: Option<OutcomeRecord>,
}
