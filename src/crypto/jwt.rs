//! Pairing session tokens: compact HS256 JWTs (spec pairings-and-auth.md §1.2, §3). Verification
//! runs the spec's checks 1–4 in order; the pairing checks (5–9) need the database and live in
//! `pairings/auth.rs`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ISSUER: &str = "peaqos-orchestrator";
/// Clock skew tolerated on `iat` and `exp`, in seconds.
pub const LEEWAY_S: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairingClaims {
    pub machine_id: String,
    pub pairing_id: String,
    pub session_id: String,
    pub agent_address: String,
    pub agent_did: String,
    pub delegation_policy_hash: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a compact JWS")]
    Malformed,
    #[error("the token's algorithm is not HS256")]
    AlgNotAllowed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's claims are missing or invalid")]
    BadClaims,
    #[error("the token has expired")]
    Expired,
}

impl TokenError {
    /// `details.reason` of the `AGENT_AUTH_INVALID` answer (expiry has its own code).
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Malformed => "malformed",
            TokenError::AlgNotAllowed => "alg-not-allowed",
            TokenError::BadSignature => "bad-signature",
            TokenError::BadClaims => "bad-claims",
            TokenError::Expired => "expired",
        }
    }
}

pub fn sign(secret: &[u8], claims: &PairingClaims) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret))
        .expect("HS256 signing with an in-memory key")
}

/// Check 1: three base64url parts and a JSON header whose `alg` is exactly `HS256`. Done by hand
/// because `none` and unknown algorithms must be told apart from garbage.
fn check_header(token: &str) -> Result<(), TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(TokenError::Malformed);
    }
    let header: serde_json::Value = URL_SAFE_NO_PAD
        .decode(parts[0])
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(TokenError::Malformed)?;
    match header.get("alg").and_then(|a| a.as_str()) {
        Some("HS256") => {}
        Some(_) => return Err(TokenError::AlgNotAllowed),
        None => return Err(TokenError::Malformed),
    }
    match header.get("typ") {
        None => Ok(()),
        Some(typ) if typ == "JWT" => Ok(()),
        Some(_) => Err(TokenError::Malformed),
    }
}

/// Checks 1–4 against `now_s` (seconds).
pub fn verify(secret: &[u8], token: &str, now_s: i64) -> Result<PairingClaims, TokenError> {
    check_header(token)?;
    let mut validation = Validation::new(Algorithm::HS256);
    // Time and issuer are checked below, against the application clock.
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<PairingClaims>(
        token,
        &DecodingKey::from_secret(secret),
        &validation,
    )
    .map_err(|err| match err.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::AlgNotAllowed,
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            TokenError::Malformed
        }
        _ => TokenError::BadClaims,
    })?
    .claims;
    if claims.iss != ISSUER || claims.iat > now_s + LEEWAY_S || claims.exp < claims.iat {
        return Err(TokenError::BadClaims);
    }
    if now_s > claims.exp + LEEWAY_S {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims() -> PairingClaims {
        PairingClaims {
            machine_id: "mach_1".into(),
            pairing_id: "apr_1".into(),
            session_id: "aps_1".into(),
            agent_address: "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            agent_did: "did:pkh:eip155:1:0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into(),
            delegation_policy_hash: "00".into(),
            iat: 1000,
            exp: 4600,
            jti: "apt_1".into(),
            iss: ISSUER.into(),
        }
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    /// A token with any header and payload, signed with HS256 under `secret`.
    fn forge(header: serde_json::Value, payload: serde_json::Value, secret: &[u8]) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let signing_input = format!("{}.{}", b64(&header), b64(&payload));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    #[test]
    fn round_trip() {
        let token = sign(SECRET, &claims());
        assert_eq!(verify(SECRET, &token, 2000).unwrap(), claims());
        let header: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
    }

    #[test]
    fn expiry_with_leeway() {
        let token = sign(SECRET, &claims());
        assert!(verify(SECRET, &token, 4605).is_ok());
        assert_eq!(verify(SECRET, &token, 4606), Err(TokenError::Expired));
        assert!(verify(SECRET, &token, 995).is_ok());
        assert_eq!(
            verify(SECRET, &token, 994),
            Err(TokenError::BadClaims),
            "issued in the future"
        );
    }

    #[test]
    fn attacks_are_refused_with_their_reason() {
        let payload = serde_json::to_value(claims()).unwrap();
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&payload)
        );
        assert_eq!(
            verify(SECRET, &none, 2000),
            Err(TokenError::Malformed),
            "empty signature part"
        );
        let none = format!("{}.{}.sig", b64(&json!({"alg": "none"})), b64(&payload));
        assert_eq!(verify(SECRET, &none, 2000), Err(TokenError::AlgNotAllowed));
        for alg in ["RS256", "ES256", "HS512", "hs256"] {
            let token = forge(json!({"alg": alg, "typ": "JWT"}), payload.clone(), SECRET);
            assert_eq!(
                verify(SECRET, &token, 2000),
                Err(TokenError::AlgNotAllowed),
                "{alg}"
            );
        }
        let other_secret = sign(b"another-secret-another-secret-32b", &claims());
        assert_eq!(
            verify(SECRET, &other_secret, 2000),
            Err(TokenError::BadSignature)
        );

        let token = sign(SECRET, &claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut edited = payload.clone();
        edited["machineId"] = json!("mach_2");
        let tampered = format!("{}.{}.{}", parts[0], b64(&edited), parts[2]);
        assert_eq!(
            verify(SECRET, &tampered, 2000),
            Err(TokenError::BadSignature)
        );

        let mut wrong_iss = payload.clone();
        wrong_iss["iss"] = json!("someone-else");
        let token = forge(json!({"alg": "HS256", "typ": "JWT"}), wrong_iss, SECRET);
        assert_eq!(verify(SECRET, &token, 2000), Err(TokenError::BadClaims));
        let mut missing = payload.clone();
        missing.as_object_mut().unwrap().remove("sessionId");
        let token = forge(json!({"alg": "HS256"}), missing, SECRET);
        assert_eq!(verify(SECRET, &token, 2000), Err(TokenError::BadClaims));
        let mut wrong_type = payload.clone();
        wrong_type["exp"] = json!("4600");
        let token = forge(json!({"alg": "HS256"}), wrong_type, SECRET);
        assert_eq!(verify(SECRET, &token, 2000), Err(TokenError::BadClaims));
        let token = forge(json!({"alg": "HS256", "typ": "JOSE"}), payload, SECRET);
        assert_eq!(verify(SECRET, &token, 2000), Err(TokenError::Malformed));

        for garbage in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.e30"] {
            assert_eq!(
                verify(SECRET, garbage, 2000),
                Err(TokenError::Malformed),
                "{garbage}"
            );
        }
    }
}
