//! Cryptography: secrets at rest, token hashing (and, with later features, EIP-191 proofs and
//! pairing JWTs).

pub mod eip191;
pub mod eip55;
pub mod eip712;
pub mod jwt;
pub mod secrets;

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`: how tokens that are only checked are stored, and how API
/// keys become idempotency principals.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// HMAC-SHA256 (hex) of a challenge message, keyed with the session secret: lets the server
/// detect a challenge row edited after issue.
pub fn challenge_mac(session_secret: &[u8], message: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac =
        Hmac::<Sha256>::new_from_slice(session_secret).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of a rebuilt message against its stored [`challenge_mac`].
pub fn challenge_mac_matches(session_secret: &[u8], message: &str, stored_hex: &str) -> bool {
    use hmac::{Hmac, KeyInit, Mac};
    let Ok(stored) = hex::decode(stored_hex) else {
        return false;
    };
    let mut mac =
        Hmac::<Sha256>::new_from_slice(session_secret).expect("HMAC takes keys of any length");
    mac.update(message.as_bytes());
    mac.verify_slice(&stored).is_ok()
}
