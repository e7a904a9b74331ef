use serde::Serialize;
use serde_json::Value;

use crate::clock::format_ms;

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
#[derive(Debug, Serialize)]
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

impl AuditEvent {
    pub fn from_row(
        id: String,
        actor: String,
        event_type: String,
        resource_type: String,
        resource_id: String,
        machine_id: Option<String>,
        payload: &str,
        created_at_ms: i64,
    ) -> Self {
        AuditEvent {
            id,
            actor,
            event_type,
            resource_type,
            resource_id,
            machine_id,
            payload: serde_json::from_str(payload).unwrap_or_else(|_| Value::Object(Default::default())),
            created_at: format_ms(created_at_ms),
            created_at_ms,
        }
    }
}
