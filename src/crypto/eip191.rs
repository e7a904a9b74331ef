//! EIP-191 version `0x45` ("personal_sign") signatures: the proof a machine gives that it controls
//! the secp256k1 key behind its identity.
//!
//! A signature is `0x` followed by exactly 130 hex digits: the 65 bytes `r ‖ s ‖ v`, with `v` in
//! `{27, 28}` (what wallets produce) or `{0, 1}`. Following EIP-2, high-`s` signatures (`s > n/2`)
//! are rejected rather than normalised, so every signature has exactly one accepted encoding.
//! Nothing here panics, whatever the input.

use k256::ecdsa::signature::hazmat::PrehashVerifier;
use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use sha3::{Digest, Keccak256};

/// Why a personal_sign signature was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum SignatureError {
    /// Not `0x` followed by exactly 130 hex digits.
    #[error("signature must be 0x followed by 130 hex digits (65 bytes r, s, v)")]
    Malformed,
    /// The recovery byte `v` is not 27, 28, 0 or 1.
    #[error("signature recovery id v must be 27, 28, 0 or 1")]
    BadRecoveryId,
    /// `s` is in the upper half of the curve order (EIP-2): a malleated signature.
    #[error("signature s value is too high (EIP-2 requires s <= n/2)")]
    HighS,
    /// `r` or `s` is zero or not below the curve order, or no public key can be recovered.
    #[error("signature is invalid")]
    InvalidSignature,
}

/// keccak-256 of `data`.
#[must_use]
pub fn keccak256(data: &[u8]) -> [u8; 32] {
    Keccak256::digest(data).into()
}

/// keccak256("\x19Ethereum Signed Message:\n" + decimal byte length + message)
#[must_use]
pub fn personal_sign_hash(message: &[u8]) -> [u8; 32] {
    let mut hasher = Keccak256::new();
    hasher.update(b"\x19Ethereum Signed Message:\n");
    hasher.update(message.len().to_string().as_bytes());
    hasher.update(message);
    hasher.finalize().into()
}

/// Recovers the signer of an EIP-191 personal_sign signature, as a lower-case 0x + 40 hex address.
///
/// Checks, in order: the encoding ([`SignatureError::Malformed`]), `v`
/// ([`SignatureError::BadRecoveryId`]), the range of `r` and `s`
/// ([`SignatureError::InvalidSignature`]), low `s` ([`SignatureError::HighS`]), and finally
/// recovery itself ([`SignatureError::InvalidSignature`]).
pub fn recover_signer(message: &[u8], signature: &str) -> Result<String, SignatureError> {
    recover_prehash(&personal_sign_hash(message), signature)
}

/// Recovers the signer of a 65-byte `r ‖ s ‖ v` signature over the 32-byte `hash` (EIP-191 and
/// EIP-712 digests alike), with the checks of [`recover_signer`].
pub fn recover_prehash(hash: &[u8; 32], signature: &str) -> Result<String, SignatureError> {
    let raw = decode_signature(signature)?;
    let (rs, v) = raw.split_at(64);
    let y_is_odd = match v {
        [27 | 0] => false,
        [28 | 1] => true,
        _ => return Err(SignatureError::BadRecoveryId),
    };
    // Rejects r or s that are zero or not below n.
    let sig = Signature::from_slice(rs).map_err(|_| SignatureError::InvalidSignature)?;
    if bool::from(sig.s().is_high()) {
        return Err(SignatureError::HighS);
    }
    // Ethereum's v carries only the parity of R.y; an x-coordinate that overflowed n is not
    // representable (and happens with negligible probability).
    let key = VerifyingKey::recover_from_prehash(hash, &sig, RecoveryId::new(y_is_odd, false))
        .map_err(|_| SignatureError::InvalidSignature)?;
    // Recovery is correct by construction; verifying again is cheap defence in depth.
    key.verify_prehash(hash, &sig)
        .map_err(|_| SignatureError::InvalidSignature)?;
    Ok(address_of(&key))
}

/// Lower-case 0x address of an uncompressed/compressed secp256k1 public key (last 20 bytes of
/// keccak256 of the 64-byte uncompressed point without the 0x04 prefix).
#[must_use]
pub fn address_of(key: &VerifyingKey) -> String {
    let point = key.to_sec1_point(false);
    // A valid verifying key is never the identity, so the uncompressed encoding is 0x04 ‖ x ‖ y.
    let xy = point.as_bytes().get(1..).unwrap_or_default();
    let hash = keccak256(xy);
    format!("0x{}", hex::encode(&hash[12..]))
}

/// `0x` + 130 hex digits (either case) → the 65 signature bytes.
fn decode_signature(signature: &str) -> Result<[u8; 65], SignatureError> {
    let digits = signature
        .strip_prefix("0x")
        .ok_or(SignatureError::Malformed)?;
    let mut raw = [0u8; 65];
    // Fails on a wrong length as well as on non-hex characters.
    hex::decode_to_slice(digits, &mut raw).map_err(|_| SignatureError::Malformed)?;
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;
    use k256::elliptic_curve::Generate;
    use serde_json::Value;

    const VECTORS: &str = include_str!("../../tests/vectors/eip191.json");

    /// secp256k1 group order n.
    const N: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    /// n / 2 (the largest accepted s).
    const HALF_N: &str = "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0";

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("eip191.json parses")
    }

    fn field<'a>(v: &'a Value, name: &str) -> &'a str {
        v[name]
            .as_str()
            .unwrap_or_else(|| panic!("vector field {name} missing"))
    }

    fn signing_key(hex_key: &str) -> SigningKey {
        let bytes = hex::decode(hex_key.trim_start_matches("0x")).expect("hex key");
        SigningKey::from_slice(&bytes).expect("valid key")
    }

    /// Exactly what `tests/common/wallet.rs` does: RFC 6979 over the personal_sign hash,
    /// low-s, v = 27 + parity.
    fn sign_personal(key: &SigningKey, message: &str) -> String {
        let (sig, recid) = key.sign_prehash_recoverable(&personal_sign_hash(message.as_bytes()));
        assert!(!recid.is_x_reduced());
        let mut raw = sig.to_bytes().to_vec();
        raw.push(27 + u8::from(recid.is_y_odd()));
        format!("0x{}", hex::encode(raw))
    }

    fn sig_hex(r: &str, s: &str, v: u8) -> String {
        format!("0x{r}{s}{v:02x}")
    }

    #[test]
    fn keccak256_known_answers() {
        assert_eq!(
            hex::encode(keccak256(b"")),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
        assert_eq!(
            hex::encode(keccak256(b"abc")),
            "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
        );
    }

    #[test]
    fn personal_sign_hash_matches_eth_account() {
        let all = vectors();
        let vs = all["vectors"].as_array().expect("vectors");
        assert!(vs.len() >= 8);
        for v in vs {
            let message = field(v, "message");
            assert_eq!(
                format!("0x{}", hex::encode(personal_sign_hash(message.as_bytes()))),
                field(v, "hash"),
                "hash of vector {}",
                field(v, "name")
            );
        }
    }

    #[test]
    fn vectors_recover_their_signer() {
        let all = vectors();
        for v in all["vectors"].as_array().expect("vectors") {
            let name = field(v, "name");
            let address = field(v, "address");
            let message = field(v, "message");
            let signature = field(v, "signature");
            assert_eq!(
                recover_signer(message.as_bytes(), signature).as_deref(),
                Ok(address),
                "recover {name}"
            );
            // Upper-case hex digits are accepted too.
            let upper = format!("0x{}", signature[2..].to_ascii_uppercase());
            assert_eq!(
                recover_signer(message.as_bytes(), &upper).as_deref(),
                Ok(address),
                "recover upper-case {name}"
            );
            let key = signing_key(field(v, "privateKey"));
            assert_eq!(address_of(key.verifying_key()), address, "address {name}");
        }
    }

    #[test]
    fn k256_signing_reproduces_eth_account_signatures() {
        let all = vectors();
        for v in all["vectors"].as_array().expect("vectors") {
            let key = signing_key(field(v, "privateKey"));
            assert_eq!(
                sign_personal(&key, field(v, "message")),
                field(v, "signature"),
                "signature of vector {}",
                field(v, "name")
            );
        }
    }

    #[test]
    fn negative_vectors() {
        let all = vectors();
        let negatives = all["negative"].as_array().expect("negative");
        assert!(negatives.len() >= 3);
        for v in negatives {
            let name = field(v, "name");
            let message = field(v, "message").as_bytes();
            let signature = field(v, "signature");
            let address = field(v, "address");
            let got = recover_signer(message, signature);
            match field(v, "kind") {
                "recovers" => assert_eq!(got.as_deref(), Ok(address), "{name}"),
                "high-s" => assert_eq!(got, Err(SignatureError::HighS), "{name}"),
                "recovers-other" => {
                    let other = field(v, "recoveredAddress");
                    assert_ne!(other, address);
                    assert_eq!(got.as_deref(), Ok(other), "{name}");
                }
                kind => panic!("unknown negative kind {kind}"),
            }
        }
    }

    #[test]
    fn v_zero_one_equals_v_27_28() {
        let all = vectors();
        for v in all["vectors"].as_array().expect("vectors") {
            let signature = field(v, "signature");
            let mut raw = hex::decode(&signature[2..]).expect("hex");
            raw[64] -= 27;
            let converted = format!("0x{}", hex::encode(&raw));
            assert_eq!(
                recover_signer(field(v, "message").as_bytes(), &converted).as_deref(),
                Ok(field(v, "address"))
            );
        }
    }

    #[test]
    fn s_boundary() {
        let all = vectors();
        let v = &all["vectors"][0];
        let signature = field(v, "signature");
        let r = &signature[2..66];
        let message = field(v, "message").as_bytes();
        // s = n/2 is low: it passes the EIP-2 check (and recovers some key, or fails recovery
        // as InvalidSignature, never HighS).
        assert_ne!(
            recover_signer(message, &sig_hex(r, HALF_N, 27)),
            Err(SignatureError::HighS)
        );
        // s = n/2 + 1 is high.
        let half_plus_one = "7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a1";
        assert_eq!(
            recover_signer(message, &sig_hex(r, half_plus_one, 27)),
            Err(SignatureError::HighS)
        );
        // s = n - 1 is high; s = n and r = n are out of range.
        let n_minus_one = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364140";
        assert_eq!(
            recover_signer(message, &sig_hex(r, n_minus_one, 28)),
            Err(SignatureError::HighS)
        );
        assert_eq!(
            recover_signer(message, &sig_hex(r, N, 27)),
            Err(SignatureError::InvalidSignature)
        );
        assert_eq!(
            recover_signer(message, &sig_hex(N, &signature[66..130], 27)),
            Err(SignatureError::InvalidSignature)
        );
    }

    #[test]
    fn random_keys_round_trip() {
        for i in 0..16 {
            let key = SigningKey::generate();
            let message = format!("round trip {i}\nwith a second line");
            let signature = sign_personal(&key, &message);
            assert_eq!(signature.len(), 132);
            assert!(matches!(&signature[130..], "1b" | "1c"));
            assert_eq!(
                recover_signer(message.as_bytes(), &signature),
                Ok(address_of(key.verifying_key()))
            );
            // Flipping v recovers a different key (or none), never the signer.
            let flipped = format!(
                "{}{}",
                &signature[..130],
                if &signature[130..] == "1b" {
                    "1c"
                } else {
                    "1b"
                }
            );
            assert_ne!(
                recover_signer(message.as_bytes(), &flipped),
                Ok(address_of(key.verifying_key()))
            );
        }
    }

    #[test]
    fn garbage_never_panics() {
        let zero = "0".repeat(64);
        let one = format!("{}1", "0".repeat(63));
        let five = format!("{}5", "0".repeat(63));
        // A real r and s, to make r = 0 / s = 0 / v = 29 the only defect.
        let good = "0x11424c6db7d2f7c0bfd2431f1ad91b659ea8412efe675c3f44cfa74adcfa678c\
                    6841b83872a1c94ca06712741c820fd482a2be9745458d17826735ca495181f61b";
        let (r, s) = (&good[2..66], &good[66..130]);
        let cases: Vec<(String, SignatureError)> = vec![
            (String::new(), SignatureError::Malformed),
            ("0x".into(), SignatureError::Malformed),
            ("0".into(), SignatureError::Malformed),
            ("0x1b".into(), SignatureError::Malformed),
            (good[2..].into(), SignatureError::Malformed),
            (format!("0X{}", &good[2..]), SignatureError::Malformed),
            (format!(" {good}"), SignatureError::Malformed),
            (format!("{good} "), SignatureError::Malformed),
            (format!("{good}\n"), SignatureError::Malformed),
            (good[..131].into(), SignatureError::Malformed),
            (format!("{good}0"), SignatureError::Malformed),
            (format!("{good}00"), SignatureError::Malformed),
            (format!("0x{}", "g".repeat(130)), SignatureError::Malformed),
            (format!("0x{}zz", &good[2..130]), SignatureError::Malformed),
            (format!("0x{}", "é".repeat(65)), SignatureError::Malformed),
            (format!("0x{}é", &good[2..129]), SignatureError::Malformed),
            (format!("0x{}", "0".repeat(1000)), SignatureError::Malformed),
            (
                format!("0x{}", "0".repeat(130)),
                SignatureError::InvalidSignature,
            ),
            (sig_hex(&zero, &zero, 27), SignatureError::InvalidSignature),
            (
                format!("0x{}", "f".repeat(130)),
                SignatureError::BadRecoveryId,
            ),
            (
                format!("0x{}1b", "f".repeat(128)),
                SignatureError::InvalidSignature,
            ),
            (sig_hex(&zero, s, 27), SignatureError::InvalidSignature),
            (sig_hex(r, &zero, 27), SignatureError::InvalidSignature),
            (sig_hex(r, s, 29), SignatureError::BadRecoveryId),
            (sig_hex(r, s, 26), SignatureError::BadRecoveryId),
            (sig_hex(r, s, 2), SignatureError::BadRecoveryId),
            (sig_hex(r, s, 3), SignatureError::BadRecoveryId),
            (sig_hex(r, s, 0xff), SignatureError::BadRecoveryId),
            (sig_hex(N, N, 27), SignatureError::InvalidSignature),
            // r = 5: x = 5 is not on secp256k1 (5^3 + 7 is not a square mod p), so there is
            // no point R to recover from.
            (sig_hex(&five, &one, 27), SignatureError::InvalidSignature),
            (sig_hex(&five, s, 28), SignatureError::InvalidSignature),
        ];
        for (signature, expected) in &cases {
            for message in [&b""[..], b"hello world", &[0xff; 1000]] {
                assert_eq!(
                    recover_signer(message, signature),
                    Err(*expected),
                    "signature {signature:?}"
                );
            }
        }

        // Structurally valid but arbitrary r/s/v must never panic, whatever the outcome.
        for seed in 0u32..256 {
            let bytes = keccak256(&seed.to_be_bytes());
            let more = keccak256(&bytes);
            let v = [27u8, 28, 0, 1][(seed % 4) as usize];
            let signature = format!("0x{}{}{v:02x}", hex::encode(bytes), hex::encode(more));
            let _ = recover_signer(b"fuzz", &signature);
        }
    }
}
