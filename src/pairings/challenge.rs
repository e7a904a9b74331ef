//! Pairing challenges (spec pairings-and-auth.md §6).

use crate::clock::format_ms;

#[derive(Debug, Clone)]
pub struct PairingChallenge {
    pub id: String,
    pub machine_id: String,
    pub machine_identity_ref: String,
    pub agent_address: String,
    pub agent_did: String,
    pub agent_provider: String,
    pub agent_role: String,
    pub origin: String,
    pub nonce: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub message_hmac: String,
    pub consumed_at: Option<i64>,
}

impl PairingChallenge {
    /// The message, rebuilt from the stored fields: `\n` line breaks, no trailing newline.
    pub fn message(&self) -> String {
        format!(
            "peaqOS machine agent pairing\n\
             \n\
             Sign this message to pair the agent below with the peaqOS machine below.\n\
             \n\
             Machine ID: {}\n\
             Machine Identity: {}\n\
             Agent Address: {}\n\
             Agent DID: {}\n\
             Agent Provider: {}\n\
             Agent Role: {}\n\
             Orchestrator: {}\n\
             Challenge ID: {}\n\
             Nonce: {}\n\
             Issued At: {}\n\
             Expires At: {}",
            self.machine_id,
            self.machine_identity_ref,
            self.agent_address,
            self.agent_did,
            self.agent_provider,
            self.agent_role,
            self.origin,
            self.id,
            self.nonce,
            format_ms(self.issued_at),
            format_ms(self.expires_at),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_is_byte_exact() {
        let c = PairingChallenge {
            id: "apc_1".into(),
            machine_id: "mach_1".into(),
            machine_identity_ref: "did:peaq:42".into(),
            agent_address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            agent_did: "did:pkh:eip155:1:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            agent_provider: "anthropic".into(),
            agent_role: "buyer".into(),
            origin: "https://orchestrator.example".into(),
            nonce: "ab".repeat(32),
            issued_at: 1_767_225_600_000,
            expires_at: 1_767_226_200_000,
            message_hmac: String::new(),
            consumed_at: None,
        };
        assert_eq!(
            c.message(),
            format!(
                "peaqOS machine agent pairing\n\nSign this message to pair the agent below with the peaqOS machine below.\n\nMachine ID: mach_1\nMachine Identity: did:peaq:42\nAgent Address: 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\nAgent DID: did:pkh:eip155:1:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed\nAgent Provider: anthropic\nAgent Role: buyer\nOrchestrator: https://orchestrator.example\nChallenge ID: apc_1\nNonce: {}\nIssued At: 2026-01-01T00:00:00.000Z\nExpires At: 2026-01-01T00:10:00.000Z",
                "ab".repeat(32)
            )
        );
    }
}
