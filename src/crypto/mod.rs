//! Cryptography: secrets at rest, token hashing (and, with later features, EIP-191 proofs and
//! pairing JWTs).

pub mod eip191;
pub mod secrets;

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `data`: how tokens that are only checked are stored, and how API
/// keys become idempotency principals.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
