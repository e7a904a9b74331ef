//! Authenticated encryption of values the server must store and read back (README §3.13):
//! AES-256-GCM under `PEAQOS_SECRETS_KEY`, or under a key derived from the session secret with
//! HKDF-SHA256 (info `peaqos-secrets-v1`) when that variable is unset.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const NONCE_LEN: usize = 12;
/// Marks the format of a sealed value, so a later scheme can be told apart.
const VERSION: &str = "v1.";

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox([REDACTED])")
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "stored secret cannot be decrypted (was PEAQOS_SECRETS_KEY or the session secret changed?)"
)]
pub struct OpenError;

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        SecretBox {
            cipher: Aes256Gcm::new_from_slice(key).expect("a 32-byte key"),
        }
    }

    /// The key derived from the session secret when `PEAQOS_SECRETS_KEY` is unset.
    pub fn derived_from(session_secret: &[u8]) -> Self {
        let mut key = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, session_secret)
            .expand(b"peaqos-secrets-v1", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SecretBox::new(&key)
    }

    /// Encrypts `plaintext` under a fresh random nonce: `v1.` + base64url(nonce ‖ ciphertext).
    pub fn seal(&self, plaintext: &[u8]) -> String {
        let nonce_bytes = crate::store::random_bytes::<NONCE_LEN>();
        let nonce = Nonce::from(nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(&nonce, plaintext)
            .expect("AES-GCM encryption of an in-memory buffer");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{VERSION}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, OpenError> {
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(OpenError)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| OpenError)?;
        self.cipher
            .decrypt(&nonce, ciphertext)
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open() {
        let b = SecretBox::new(&[7u8; 32]);
        let sealed = b.seal(b"runtime-token");
        assert!(!sealed.contains("runtime-token"));
        assert_ne!(sealed, b.seal(b"runtime-token"), "fresh nonce each time");
        assert_eq!(b.open(&sealed).unwrap(), b"runtime-token");
    }

    #[test]
    fn wrong_key_or_tampering_fails() {
        let sealed = SecretBox::new(&[7u8; 32]).seal(b"x");
        assert!(SecretBox::new(&[8u8; 32]).open(&sealed).is_err());
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(SecretBox::new(&[7u8; 32]).open(&tampered).is_err());
        assert!(SecretBox::new(&[7u8; 32]).open("garbage").is_err());
    }

    #[test]
    fn derivation_is_deterministic() {
        let a = SecretBox::derived_from(b"0123456789abcdef0123456789abcdef");
        let b = SecretBox::derived_from(b"0123456789abcdef0123456789abcdef");
        assert_eq!(b.open(&a.seal(b"same")).unwrap(), b"same");
    }
}
