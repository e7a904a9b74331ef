//! A test signer: an Ethereum-style secp256k1 key that signs EIP-191 personal_sign messages
//! byte-for-byte like `eth_account` (RFC 6979 nonces, low-s, v = 27/28). The unit tests in
//! `src/crypto/eip191.rs` check the same signing steps against vectors from `eth_account`.

use k256::ecdsa::SigningKey;
use k256::elliptic_curve::Generate;
use peaqos_orchestrator::crypto::eip191::{address_of, personal_sign_hash};

pub struct Wallet {
    key: SigningKey,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wallet")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

impl Wallet {
    /// A fresh key from OS randomness.
    pub fn random() -> Wallet {
        Wallet {
            key: SigningKey::generate(),
        }
    }

    /// A key from 64 hex digits, with or without `0x`. Panics on anything else.
    pub fn from_hex(hex: &str) -> Wallet {
        let digits = hex.strip_prefix("0x").unwrap_or(hex);
        let bytes = hex::decode(digits).expect("private key is hex");
        let key = SigningKey::from_slice(&bytes).expect("private key is a valid secp256k1 scalar");
        Wallet { key }
    }

    /// Lower-case `0x` + 40 hex digits.
    pub fn address(&self) -> String {
        address_of(self.key.verifying_key())
    }

    /// EIP-191 personal_sign of the UTF-8 `message`: `0x` + 130 hex digits, r ‖ s ‖ v with
    /// v = 27/28 and low s, identical to `eth_account`'s `Account.sign_message(encode_defunct(text=message))`.
    pub fn sign_personal(&self, message: &str) -> String {
        let (signature, recovery_id) = self
            .key
            .sign_prehash_recoverable(&personal_sign_hash(message.as_bytes()));
        // Ethereum's v only carries the parity of R.y; an x-coordinate that overflowed the group
        // order (probability ~2^-128) cannot be expressed.
        assert!(!recovery_id.is_x_reduced(), "unrepresentable recovery id");
        let mut raw = signature.to_bytes().to_vec();
        raw.push(27 + u8::from(recovery_id.is_y_odd()));
        format!("0x{}", hex::encode(raw))
    }
}
