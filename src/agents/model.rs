use serde::{Deserialize, Serialize};

use crate::runtime::model::RuntimeEndpoint;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MachineAgentStatus)]
pub enum AgentStatus {
    Provisioned,
    Active,
    Revoked,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Provisioned => "provisioned",
            AgentStatus::Active => "active",
            AgentStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<AgentStatus> {
        [
            AgentStatus::Provisioned,
            AgentStatus::Active,
            AgentStatus::Revoked,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// `MachineAgent` on the wire (spec §1.1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MachineAgent {
    pub id: String,
    pub machine_id: String,
    pub label: String,
    pub allowed_provider_keys: Vec<String>,
    pub status: AgentStatus,
    pub has_agent_token: bool,
    pub last_seen_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The one-time token, in the enrolment answer only, under both names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provisioning_token: Option<String>,
    #[serde(skip)]
    pub created_at_ms: i64,
    #[serde(skip)]
    pub token_hash: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = EnrollMachineAgent)]
pub struct Enroll {
    pub label: Option<String>,
    pub allowed_provider_keys: Option<Vec<String>>,
    pub provider_keys: Option<Vec<String>>,
}

/// The heartbeat's `item` (spec §1.3): the agent plus the lease it applied and its endpoints.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatItem {
    #[serde(flatten)]
    pub agent: MachineAgent,
    pub agent_id: String,
    pub lease_ttl_seconds: i64,
    pub observed_at: String,
    pub endpoints: Vec<RuntimeEndpoint>,
}

/// The heartbeat's raw answer: the merged shape both clients decode.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HeartbeatResponse {
    pub item: HeartbeatItem,
    pub endpoints: Vec<RuntimeEndpoint>,
}

/// `POST /machine-agents/heartbeat`. Endpoint keys may also be sent in snake_case; `null` means
/// absent; `leaseTtlSeconds` is an alias of `leaseSeconds`.
#[derive(utoipa::ToSchema)]
#[allow(non_snake_case)]
pub struct HeartbeatRequest {
    pub machineId: String,
    pub agentId: String,
    /// Or `Authorization: Bearer …`, or `x-agent-pairing-token`.
    pub agentToken: Option<String>,
    #[schema(minimum = 30, maximum = 86400)]
    pub leaseSeconds: Option<i64>,
    #[schema(minimum = 30, maximum = 86400)]
    pub leaseTtlSeconds: Option<i64>,
    pub endpoints: Option<Vec<crate::runtime::model::EndpointFields>>,
}
