use crate::{Error, Result};

/// An amount of AGR in base units.
pub type Amount = u128;

/// Decimal places of one AGR.
pub const DECIMALS: u32 = 9;

/// Base units in one AGR.
pub const AGR: Amount = 1_000_000_000;

/// Formats base units as AGR with trailing zeros trimmed.
///
/// ```
/// assert_eq!(agora_types::format_amount(1_500_000_000), "1.5AGR");
/// assert_eq!(agora_types::format_amount(7), "0.000000007AGR");
/// ```
pub fn format_amount(amount: Amount) -> String {
    let whole = amount / AGR;
    let frac = amount % AGR;
    if frac == 0 {
        format!("{whole}AGR")
    } else {
        let frac = format!("{frac:09}");
        format!("{whole}.{}AGR", frac.trim_end_matches('0'))
    }
}

/// Parses `"1.5AGR"`, `"1.5agr"` or `"1.5"` (AGR), or `"1500nagr"` (base units).
///
/// ```
/// use agora_types::{AGR, parse_amount};
/// assert_eq!(parse_amount("1.5AGR").unwrap(), 3 * AGR / 2);
/// assert_eq!(parse_amount("1500nagr").unwrap(), 1500);
/// assert!(parse_amount("1.0000000001AGR").is_err(), "finer than a base unit");
/// ```
pub fn parse_amount(input: &str) -> Result<Amount> {
    let invalid = |reason: &str| Error::InvalidAmount {
        input: input.into(),
        reason: reason.into(),
    };
    let s = input.trim();
    let lower = s.to_ascii_lowercase();
    if let Some(base) = lower.strip_suffix("nagr") {
        return base
            .trim()
            .parse::<u128>()
            .map_err(|_| invalid("expected a whole number of nagr"));
    }
    let number = lower.strip_suffix("agr").unwrap_or(&lower).trim();
    let (whole, frac) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return Err(invalid("empty"));
    }
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || !all_digits(frac) {
        return Err(invalid("expected a number such as 1.5AGR or 1500nagr"));
    }
    if frac.len() > DECIMALS as usize {
        return Err(invalid("more than 9 decimal places"));
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid("too large"))?
    };
    let frac_units: u128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")
            .parse()
            .map_err(|_| invalid("bad fraction"))?
    };
    whole
        .checked_mul(AGR)
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(|| invalid("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_amount("1.5AGR").unwrap(), 1_500_000_000);
        assert_eq!(parse_amount("2").unwrap(), 2 * AGR);
        assert_eq!(parse_amount("0.000000001agr").unwrap(), 1);
        assert_eq!(parse_amount("1500nagr").unwrap(), 1500);
        assert_eq!(format_amount(1_500_000_000), "1.5AGR");
        assert_eq!(format_amount(3 * AGR), "3AGR");
        assert_eq!(format_amount(1), "0.000000001AGR");
    }

    #[test]
    fn rejects_bad_amounts() {
        for bad in ["", "AGR", "1.2.3", "-1", "1.0000000001", "abc", "1e9"] {
            assert!(parse_amount(bad).is_err(), "{bad:?} should not parse");
        }
        let huge = format!("{}AGR", u128::MAX);
        assert!(parse_amount(&huge).is_err());
    }
}

/// Serde adapter writing `u128` amounts as decimal strings: JSON numbers lose precision past 2^53.
pub mod serde_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the amount as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Reads a decimal string (or a small JSON number).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            S(String),
            N(u64),
        }
        match Either::deserialize(d)? {
            Either::S(s) => s.parse().map_err(serde::de::Error::custom),
            Either::N(n) => Ok(n.into()),
        }
    }
}
