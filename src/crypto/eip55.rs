//! EIP-55 mixed-case checksum addresses.

use super::eip191::keccak256;

/// The EIP-55 form of a 20-byte address given as 40 hex digits (any case, no `0x`).
fn checksum(hex_lower: &str) -> String {
    let hash = keccak256(hex_lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in hex_lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// The EIP-55 form of `0x` + 40 hex digits. All-lower and all-upper hex are accepted as they
/// are; mixed case must already carry a valid checksum.
pub fn parse_address(input: &str) -> Option<String> {
    let hex = input.strip_prefix("0x")?;
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let lower = hex.to_ascii_lowercase();
    let expected = checksum(&lower);
    let has_lower = hex.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = hex.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper && expected[2..] != *hex {
        return None;
    }
    Some(expected)
}

/// The EIP-55 form of an address already known to be valid (for example a recovered signer).
pub fn to_checksum(address: &str) -> String {
    checksum(&address.trim_start_matches("0x").to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from EIP-55.
    const VECTORS: [&str; 4] = [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn eip55_vectors() {
        for v in VECTORS {
            assert_eq!(parse_address(&v.to_ascii_lowercase()).unwrap(), v);
            assert_eq!(
                parse_address(&format!("0x{}", v[2..].to_ascii_uppercase())).unwrap(),
                v
            );
            assert_eq!(parse_address(v).unwrap(), v);
            assert_eq!(to_checksum(&v.to_ascii_lowercase()), v);
        }
    }

    #[test]
    fn bad_checksums_and_shapes() {
        assert!(parse_address("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD").is_none());
        assert!(parse_address("5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").is_none());
        assert!(parse_address("0X5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_none());
        assert!(parse_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea").is_none());
        assert!(parse_address("0xzaaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_none());
    }
}
