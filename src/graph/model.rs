use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire_enum;

wire_enum!(pub NodeType {
    Machine = "machine",
    Trigger = "trigger",
    Skill = "skill",
    Task = "task",
    Policy = "policy",
    Discovery = "discovery",
    Storage = "storage",
    Memory = "memory",
    Handoff = "handoff",
    Route = "route",
    Outcome = "outcome",
    CatalogEntry = "catalog-entry",
});

wire_enum!(pub EdgeType {
    Connects = "connects",
    Request = "request",
    Discover = "discover",
    Constrain = "constrain",
    Candidate = "candidate",
    Route = "route",
    Result = "result",
    RouteSelect = "route-select",
    RouteSource = "route-source",
    Execute = "execute",
    Handoff = "handoff",
    Receipt = "receipt",
    Sync = "sync",
    Allow = "allow",
    Deny = "deny",
});

wire_enum!(pub NodeStatus {
    Draft = "draft",
    Active = "active",
    Blocked = "blocked",
    Degraded = "degraded",
});

crate::impl_wire_enum!(NodeType, EdgeType, NodeStatus);

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Position {
    pub x: f64,
    pub y: f64,
}

/// `GraphNode`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphNode {
    pub id: String,
    pub machine_id: String,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    pub ref_id: Option<String>,
    pub title: String,
    pub status: NodeStatus,
    pub position: Position,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// `GraphEdge`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphEdge {
    pub id: String,
    pub machine_id: String,
    pub source_node_id: String,
    pub target_node_id: String,
    #[serde(rename = "type")]
    pub edge_type: EdgeType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[schema(value_type = Object)]
    pub data: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// `GET /machines/{machineId}/graph`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Graph {
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
}

/// `position` as sent: missing coordinates default to 0 (create) or stay (patch).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct PositionInput {
    pub x: Option<f64>,
    pub y: Option<f64>,
}

/// `POST …/graph/nodes` and `PATCH …/graph/nodes/{nodeId}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeInput {
    #[serde(rename = "type")]
    pub node_type: Option<String>,
    pub title: Option<String>,
    pub ref_id: Option<String>,
    pub position: Option<PositionInput>,
    pub status: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}

/// `POST …/graph/edges` and `PATCH …/graph/edges/{edgeId}`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeInput {
    pub source_node_id: Option<String>,
    pub target_node_id: Option<String>,
    #[serde(rename = "type")]
    pub edge_type: Option<String>,
    pub label: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Map<String, Value>>,
}
