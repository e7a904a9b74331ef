use serde::{Deserialize, Serialize};

use super::policy::{DelegationPolicy, DelegationPolicyInput};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PairingStatus {
    Active,
    Paused,
    Revoked,
}

impl PairingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PairingStatus::Active => "active",
            PairingStatus::Paused => "paused",
            PairingStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<PairingStatus> {
        [
            PairingStatus::Active,
            PairingStatus::Paused,
            PairingStatus::Revoked,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// `AgentPairingVerification` (spec §4.3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AgentPairingVerification)]
pub struct PairingVerification {
    pub method: String,
    pub signer_address: String,
    pub verified_at: String,
    pub challenge_expires_at: String,
    pub challenge_id: String,
}

/// `AgentPairing` on the wire (spec §4.1).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentPairing {
    pub id: String,
    pub machine_id: String,
    pub agent_address: String,
    pub agent_did: String,
    pub agent_provider: String,
    pub agent_role: String,
    pub description: Option<String>,
    pub status: PairingStatus,
    pub verification: Option<PairingVerification>,
    pub delegation_policy: DelegationPolicy,
    pub has_auth_token: bool,
    pub token_last_four: Option<String>,
    pub session_id: Option<String>,
    pub session_token_id: Option<String>,
    pub session_issued_at: Option<String>,
    pub session_expires_at: Option<String>,
    /// Only in the answers of creation and session rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairing_token: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
    #[serde(skip)]
    pub session_issued_at_ms: Option<i64>,
    #[serde(skip)]
    pub session_expires_at_ms: Option<i64>,
    #[serde(skip)]
    pub policy_hash: String,
    #[serde(skip)]
    pub revision: i64,
}

/// `AgentPairingChallenge` on the wire (spec §4.4).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AgentPairingChallenge)]
pub struct ChallengeView {
    pub challenge_id: String,
    pub machine_id: String,
    pub machine_identity_ref: String,
    pub agent_address: String,
    pub agent_did: String,
    pub agent_provider: String,
    pub agent_role: String,
    pub message: String,
    pub expires_at: String,
    pub verification_method: &'static str,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CreateAgentPairingChallenge)]
pub struct CreateChallenge {
    pub agent_address: Option<String>,
    pub agent_provider: Option<String>,
    pub agent_role: Option<String>,
    pub agent_did: Option<String>,
}

/// `agentProof` in a request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentProofInput {
    pub challenge_id: Option<String>,
    pub signature: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CreateAgentPairing)]
pub struct CreatePairing {
    pub agent_address: Option<String>,
    pub agent_provider: Option<String>,
    pub agent_role: Option<String>,
    pub agent_did: Option<String>,
    pub agent_proof: Option<AgentProofInput>,
    pub description: Option<String>,
    pub delegation_policy: Option<DelegationPolicyInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = RotateAgentPairingSession)]
pub struct RotateSession {
    pub agent_proof: Option<AgentProofInput>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UpdateAgentPairing)]
pub struct UpdatePairing {
    pub agent_provider: Option<String>,
    pub agent_role: Option<String>,
    pub description: Option<String>,
    pub status: Option<PairingStatus>,
    pub delegation_policy: Option<DelegationPolicyInput>,
}
