//! Identity references (spec identity-and-machines.md §1): `did:peaq:0x<40 hex>`,
//! `did:peaq:<decimal uint256>` and the alias `peaqos:machine:<decimal>`, each with one canonical
//! form used for storage, comparison and responses.

use std::fmt;

use crate::error::ApiError;

/// 2²⁵⁶ − 1, the largest accepted decimal identity.
const UINT256_MAX: &str =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

/// A validated identity ref in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IdentityRef {
    /// `did:peaq:0x…` with the lower-case 20-byte address.
    Address(String),
    /// `did:peaq:<decimal>`.
    Decimal(String),
}

impl IdentityRef {
    /// Parses one of the three accepted forms; no whitespace is trimmed.
    pub fn parse(input: &str) -> Option<IdentityRef> {
        if let Some(hex) = input.strip_prefix("did:peaq:0x") {
            if hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Some(IdentityRef::Address(hex.to_ascii_lowercase()));
            }
            return None;
        }
        let decimal = input
            .strip_prefix("did:peaq:")
            .or_else(|| input.strip_prefix("peaqos:machine:"))?;
        is_canonical_uint256(decimal).then(|| IdentityRef::Decimal(decimal.to_string()))
    }

    /// Parses `value` of the request field `field`, or answers the spec's validation error.
    pub fn parse_field(field: &str, value: &str) -> Result<IdentityRef, ApiError> {
        IdentityRef::parse(value).ok_or_else(|| {
            ApiError::validation(
                field,
                "did:peaq:0x<40 hex> | did:peaq:<decimal> | peaqos:machine:<decimal>",
                format!(
                    "{field} must be did:peaq:0x<40 hex digits>, did:peaq:<decimal> or peaqos:machine:<decimal>"
                ),
            )
        })
    }

    /// The 0x-prefixed lower-case address inside a hex DID.
    pub fn address(&self) -> Option<String> {
        match self {
            IdentityRef::Address(hex) => Some(format!("0x{hex}")),
            IdentityRef::Decimal(_) => None,
        }
    }
}

impl fmt::Display for IdentityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityRef::Address(hex) => write!(f, "did:peaq:0x{hex}"),
            IdentityRef::Decimal(n) => write!(f, "did:peaq:{n}"),
        }
    }
}

/// `0` or `[1-9][0-9]*`, at most 2²⁵⁶ − 1.
pub fn is_canonical_uint256(s: &str) -> bool {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    if s.len() > 1 && s.starts_with('0') {
        return false;
    }
    s.len() < UINT256_MAX.len() || (s.len() == UINT256_MAX.len() && s <= UINT256_MAX)
}

/// A lower-case `0x` + 40 hex EVM address, if `s` is one (in any case).
pub fn evm_address(s: &str) -> Option<String> {
    let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("0x{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let hex = "did:peaq:0xABCDEF0123456789abcdef0123456789ABCDEF01";
        assert_eq!(
            IdentityRef::parse(hex).unwrap().to_string(),
            "did:peaq:0xabcdef0123456789abcdef0123456789abcdef01"
        );
        assert_eq!(
            IdentityRef::parse("did:peaq:42").unwrap().to_string(),
            "did:peaq:42"
        );
        assert_eq!(
            IdentityRef::parse("did:peaq:0").unwrap().to_string(),
            "did:peaq:0"
        );
        assert_eq!(
            IdentityRef::parse("peaqos:machine:42").unwrap().to_string(),
            "did:peaq:42"
        );
        assert_eq!(
            IdentityRef::parse(&format!("did:peaq:{UINT256_MAX}"))
                .unwrap()
                .to_string(),
            format!("did:peaq:{UINT256_MAX}")
        );
        assert_eq!(
            IdentityRef::parse(hex).unwrap().address().unwrap(),
            "0xabcdef0123456789abcdef0123456789abcdef01"
        );
    }

    #[test]
    fn rejected_forms() {
        for bad in [
            "",
            "did:peaq:",
            "did:peaq:007",
            "did:peaq:-1",
            "did:peaq:+1",
            "did:peaq:1e3",
            "did:peaq:1.0",
            " did:peaq:1",
            "did:peaq:1 ",
            "DID:peaq:1",
            "did:peaq:0x123",
            "did:peaq:0xZZcdef0123456789abcdef0123456789abcdef01",
            "did:peaq:0Xabcdef0123456789abcdef0123456789abcdef01",
            "peaqos:machine:0xabcdef0123456789abcdef0123456789abcdef01",
            "peaqos:machine:01",
            "did:key:1",
            "115792089237316195423570985008687907853269984665640564039457584007913129639936",
        ] {
            assert!(IdentityRef::parse(bad).is_none(), "{bad:?}");
        }
        // 2²⁵⁶ is one too many.
        assert!(
            IdentityRef::parse(
                "did:peaq:115792089237316195423570985008687907853269984665640564039457584007913129639936"
            )
            .is_none()
        );
        assert!(IdentityRef::parse(&format!("did:peaq:1{UINT256_MAX}")).is_none());
    }

    #[test]
    fn evm_addresses() {
        assert_eq!(
            evm_address("0xABCDEF0123456789abcdef0123456789ABCDEF01").as_deref(),
            Some("0xabcdef0123456789abcdef0123456789abcdef01")
        );
        assert!(evm_address("0xabc").is_none());
        assert!(evm_address("7xKXtg2CW87d97TXJSDpbD5jBkheTqA83TZRuJosgAsU").is_none());
    }
}
