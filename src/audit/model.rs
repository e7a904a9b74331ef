use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// An API call.
    Api,
    /// Background work (sweeper, prober).
    System,
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Api => "api",
            Actor::System => "system:machine-markets",
        }
    }
}

/// An event to record: see the catalogue in orchestration.md §5.3.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub actor: Actor,
    pub event_type: &'static str,
    pub resource_type: &'static str,
    pub resource_id: String,
    pub machine_id: Option<String>,
    pub payload: Value,
}

/// `AuditEvent` on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: String,
    pub actor: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub resource_type: String,
    pub resource_id: String,
    pub machine_id: Option<String>,
    pub payload: Value,
    pub created_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
}

/// The exact-match filters of `GET /audit-events`.
#[derive(Debug, Default)]
pub struct Filters<'a> {
    pub event_type: Option<&'a str>,
    pub resource_type: Option<&'a str>,
    pub resource_id: Option<&'a str>,
    pub machine_id: Option<&'a str>,
}
