//! Amounts of money: exact decimals inside the server, JSON numbers only at the edge (spec
//! README §3.7). A JSON number is read through its shortest decimal text, so `0.1` is exactly
//! one tenth and a hundred of them make exactly 10.

use alloy_primitives::U256;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

/// The decimal a JSON number (an `f64`) was written as.
pub fn from_f64(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    value
        .to_string()
        .parse::<Decimal>()
        .ok()
        .map(|d| d.normalize())
}

/// A decimal as a JSON number.
pub fn to_f64(value: Decimal) -> f64 {
    value.to_f64().unwrap_or(f64::MAX)
}

/// A positive decimal string as agents send it: plain (`"1"`, `"0.02"`) or with an exponent
/// (`"1e-05"`, as Python's `str(float)` writes small values). `None` for anything else —
/// signs, blanks, `NaN`, `inf`, hex, more precision than a decimal holds.
pub fn parse_decimal_text(text: &str) -> Option<Decimal> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], Some(&text[at + 1..])),
        None => (text, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    if mantissa.ends_with('.') {
        return None;
    }
    let value = match exponent {
        None => Decimal::from_str_exact(mantissa).ok()?,
        Some(exp) => {
            let unsigned = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if unsigned.is_empty() || unsigned.len() > 3 || !digits(unsigned) {
                return None;
            }
            Decimal::from_scientific(&format!("{mantissa}e{exp}")).ok()?
        }
    };
    Some(value.normalize())
}

/// `amount × 10^decimals` as a whole number of base units; `None` when `amount` has more
/// fractional digits than `decimals` (or is negative).
pub fn to_base_units(amount: Decimal, decimals: u32) -> Option<U256> {
    let amount = amount.normalize();
    if amount.is_sign_negative() || amount.scale() > decimals {
        return None;
    }
    let mantissa = U256::from(u128::try_from(amount.mantissa()).ok()?);
    let scale = U256::from(10u8).checked_pow(U256::from(decimals - amount.scale()))?;
    mantissa.checked_mul(scale)
}

/// A decimal integer string (`"1000"`) as base units.
pub fn parse_base_units(text: &str) -> Option<U256> {
    if text.is_empty() || text.len() > 78 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(text, 10).ok()
}

/// Parses stored text (written by [`Decimal::to_string`]).
pub fn parse(text: &str) -> Option<Decimal> {
    text.parse::<Decimal>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_become_the_decimals_they_were_written_as() {
        assert_eq!(from_f64(0.1).unwrap().to_string(), "0.1");
        assert_eq!(from_f64(2.0).unwrap().to_string(), "2");
        let tenth = from_f64(0.1).unwrap();
        let sum: Decimal = (0..100).map(|_| tenth).sum();
        assert_eq!(sum, Decimal::from(10));
        assert!(from_f64(f64::NAN).is_none());
        assert_eq!(to_f64(Decimal::new(25, 1)), 2.5);
    }

    #[test]
    fn decimal_texts_in_plain_and_exponent_form() {
        for (text, plain) in [
            ("1", "1"),
            ("1.0", "1"),
            ("0.02", "0.02"),
            ("1e-05", "0.00001"),
            ("1.5E-7", "0.00000015"),
            ("1e+20", "100000000000000000000"),
            ("2.50", "2.5"),
            (".5", "0.5"),
            ("0", "0"),
        ] {
            assert_eq!(
                parse_decimal_text(text).unwrap().to_string(),
                plain,
                "{text}"
            );
        }
        for bad in [
            "", " 1", "1 ", "-1", "+1", "NaN", "inf", "1e", "1e-", "0x10", "1.", "1..2", "1e5000",
            "1,5", "١",
        ] {
            assert!(parse_decimal_text(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn base_units() {
        let d = |s: &str| parse_decimal_text(s).unwrap();
        assert_eq!(to_base_units(d("1.5"), 6), Some(U256::from(1_500_000)));
        assert_eq!(to_base_units(d("1e-05"), 6), Some(U256::from(10)));
        assert_eq!(to_base_units(d("0.0000001"), 6), None);
        assert_eq!(
            to_base_units(d("1"), 36).unwrap().to_string(),
            format!("1{}", "0".repeat(36))
        );
        assert_eq!(parse_base_units("1000"), Some(U256::from(1000)));
        assert!(parse_base_units("-1").is_none());
        assert!(parse_base_units("1.0").is_none());
        assert!(parse_base_units(&"9".repeat(79)).is_none());
    }
}
