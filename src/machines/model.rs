use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::identity::model::{IdentityProof, ProofInput};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MachineStatus {
    Draft,
    Active,
    Degraded,
    Blocked,
    Archived,
}

impl MachineStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MachineStatus::Draft => "draft",
            MachineStatus::Active => "active",
            MachineStatus::Degraded => "degraded",
            MachineStatus::Blocked => "blocked",
            MachineStatus::Archived => "archived",
        }
    }

    pub fn parse(s: &str) -> Option<MachineStatus> {
        [
            MachineStatus::Draft,
            MachineStatus::Active,
            MachineStatus::Degraded,
            MachineStatus::Blocked,
            MachineStatus::Archived,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

/// `Machine` on the wire (spec §5).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub id: String,
    pub display_name: String,
    pub status: MachineStatus,
    pub owner_id: String,
    pub identity_ref: String,
    pub identity_proof: Option<IdentityProof>,
    pub machine_type: String,
    pub runtime_profile: String,
    pub capabilities: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub policy_ids: Vec<String>,
    pub skill_keys: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip)]
    pub created_at_ms: i64,
    #[serde(skip)]
    pub revision: i64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateMachine {
    pub display_name: Option<String>,
    pub owner_id: Option<String>,
    pub machine_type: Option<String>,
    pub runtime_profile: Option<String>,
    pub identity_ref: Option<String>,
    pub identity_proof: Option<ProofInput>,
    pub capabilities: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub policy_ids: Option<Vec<String>>,
    pub skill_keys: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateMachine {
    pub display_name: Option<String>,
    pub owner_id: Option<String>,
    pub machine_type: Option<String>,
    pub runtime_profile: Option<String>,
    pub identity_ref: Option<String>,
    pub identity_proof: Option<ProofInput>,
    pub status: Option<MachineStatus>,
    pub capabilities: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    pub policy_ids: Option<Vec<String>>,
    pub skill_keys: Option<Vec<String>>,
}
