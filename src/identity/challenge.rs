//! Machine identity challenges (spec identity-and-machines.md §4.1): the exact message a DID
//! controller signs, and the HMAC that lets the server detect a tampered challenge row.

use crate::clock::format_ms;

/// Placeholder controller for decimal identities in `disabled` mode, so strict clients decode.
pub const ZERO_ADDRESS: &str = "0x0000000000000000000000000000000000000000";

#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub identity_ref: String,
    pub origin: String,
    pub nonce: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub controller_addresses: Vec<String>,
    pub message_hmac: String,
    pub consumed_at: Option<i64>,
}

impl Challenge {
    /// The message, rebuilt from the stored fields: `\n` line breaks, no trailing newline.
    pub fn message(&self) -> String {
        let identity = &self.identity_ref;
        format!(
            "peaqOS machine identity proof\n\
             \n\
             Sign this message to prove that you control the peaqOS machine identity {identity}.\n\
             \n\
             Identity: {identity}\n\
             Orchestrator: {origin}\n\
             Challenge ID: {id}\n\
             Nonce: {nonce}\n\
             Issued At: {issued}\n\
             Expires At: {expires}",
            origin = self.origin,
            id = self.id,
            nonce = self.nonce,
            issued = format_ms(self.issued_at),
            expires = format_ms(self.expires_at),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{challenge_mac as message_hmac, challenge_mac_matches as hmac_matches};

    fn sample() -> Challenge {
        Challenge {
            id: "mic_01J9Z3K4Q7W8X5R2T6Y1V0B3N8".into(),
            identity_ref: "did:peaq:42".into(),
            origin: "http://127.0.0.1:8080".into(),
            nonce: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
            issued_at: 1_767_225_600_000,
            expires_at: 1_767_226_200_000,
            controller_addresses: vec![],
            message_hmac: String::new(),
            consumed_at: None,
        }
    }

    #[test]
    fn message_is_byte_exact() {
        assert_eq!(
            sample().message(),
            "peaqOS machine identity proof\n\nSign this message to prove that you control the peaqOS machine identity did:peaq:42.\n\nIdentity: did:peaq:42\nOrchestrator: http://127.0.0.1:8080\nChallenge ID: mic_01J9Z3K4Q7W8X5R2T6Y1V0B3N8\nNonce: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\nIssued At: 2026-01-01T00:00:00.000Z\nExpires At: 2026-01-01T00:10:00.000Z"
        );
    }

    #[test]
    fn hmac_detects_tampering() {
        let c = sample();
        let mac = message_hmac(b"k".repeat(32).as_slice(), &c.message());
        assert!(hmac_matches(b"k".repeat(32).as_slice(), &c.message(), &mac));
        let mut tampered = c.clone();
        tampered.expires_at += 1;
        assert!(!hmac_matches(
            b"k".repeat(32).as_slice(),
            &tampered.message(),
            &mac
        ));
        assert!(!hmac_matches(
            b"x".repeat(32).as_slice(),
            &c.message(),
            &mac
        ));
        assert!(!hmac_matches(
            b"k".repeat(32).as_slice(),
            &c.message(),
            "not-hex"
        ));
    }
}
