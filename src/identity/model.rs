use serde::{Deserialize, Serialize};

/// `MachineIdentityChallenge` on the wire.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = MachineIdentityChallenge)]
pub struct ChallengeView {
    pub challenge_id: String,
    pub identity_ref: String,
    pub message: String,
    pub expires_at: String,
    pub verification_method: &'static str,
    pub controller_addresses: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CreateMachineIdentityChallenge)]
pub struct CreateChallenge {
    pub identity_ref: Option<String>,
}

/// `identityProof` in a request: `{challengeId, signature}`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = IdentityProofInput)]
pub struct ProofInput {
    pub challenge_id: Option<String>,
    pub signature: Option<String>,
}

/// The verified proof stored on a machine (spec §4.3, "Resulting identityProof record").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityProof {
    pub method: String,
    pub identity_ref: String,
    pub signer_address: String,
    pub challenge_id: String,
    pub verified_at: String,
    pub challenge_expires_at: String,
    pub controller_addresses: Vec<String>,
    pub resolution_source: String,
}
