//! JSON numbers as PostgreSQL stores them. serde_json keeps each number's
//! text (`arbitrary_precision`), so every digit a caller sends is stored;
//! JSONB keeps it as `numeric`, exactly, and writes it back in numeric's
//! normal form: no exponent (`1e3` is `1000`, `1.5e-3` is `0.0015`), the
//! digits after the point kept (`1.50` stays `1.50`), no sign on zero.
//!
//! Without an exponent the written form is as long as the sent one; an
//! exponent could turn 9 bytes (`1e131071`) into 131,072 digits in every
//! later read. So exponents stay within a double's (what encoders write),
//! and size limits count a number as PostgreSQL writes it.

/// The exponents a number may be sent with: those of a double
/// (`5e-324` to `1.7976931348623157e308`), so at most about 330 bytes are
/// added to a number when it is written out.
const MIN_EXPONENT: i64 = -324;
const MAX_EXPONENT: i64 = 308;
/// What PostgreSQL's `numeric` holds: digits before and after the point.
const MAX_INTEGER_DIGITS: i64 = 131_072;
const MAX_FRACTION_DIGITS: i64 = 16_383;

/// The length of `number` (JSON number text) as PostgreSQL writes it back,
/// or why it may not be stored.
pub fn stored_len(number: &str) -> Result<usize, String> {
    let (negative, unsigned) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        None => (unsigned, 0),
        Some((mantissa, exponent)) => {
            let exponent = exponent
                .parse::<i64>()
                .ok()
                .filter(|e| (MIN_EXPONENT..=MAX_EXPONENT).contains(e))
                .ok_or_else(|| {
                    format!(
                        "numbers must have an exponent between {MIN_EXPONENT} and \
                         {MAX_EXPONENT}, as a double's"
                    )
                })?;
            (mantissa, exponent)
        }
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let fraction_len = fraction.len() as i64;
    // Digits from the first non-zero one on.
    let significant = match integer.trim_start_matches('0').len() {
        0 => fraction.trim_start_matches('0').len() as i64,
        n => n as i64 + fraction_len,
    };
    // Zero is written `0`, whatever its exponent.
    let integer_digits = match significant {
        0 => 1,
        n => (n + exponent - fraction_len).max(1),
    };
    let fraction_digits = (fraction_len - exponent).max(0);
    if integer_digits > MAX_INTEGER_DIGITS || fraction_digits > MAX_FRACTION_DIGITS {
        return Err(format!(
            "numbers may have at most {MAX_INTEGER_DIGITS} digits before the decimal \
             point and {MAX_FRACTION_DIGITS} after it"
        ));
    }
    let sign = i64::from(negative && significant > 0);
    let point = i64::from(fraction_digits > 0);
    Ok((sign + integer_digits + point + fraction_digits) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each number and what PostgreSQL 15 answered for
    /// `SELECT ('[<number>]'::jsonb)::text`.
    #[test]
    fn lengths_are_those_postgresql_writes() {
        let zeros = |n| "0".repeat(n);
        for (sent, written) in [
            (
                "12345678901234567890123",
                "12345678901234567890123".to_owned(),
            ),
            ("-98765432109876543210", "-98765432109876543210".to_owned()),
            (
                "0.10000000000000000000000000001",
                "0.10000000000000000000000000001".to_owned(),
            ),
            ("-0", "0".to_owned()),
            ("-0.0", "0.0".to_owned()),
            ("1e+2", "100".to_owned()),
            ("1E2", "100".to_owned()),
            ("1.50", "1.50".to_owned()),
            ("1.5e-3", "0.0015".to_owned()),
            ("0e10", "0".to_owned()),
            ("0.0e-5", "0.000000".to_owned()),
            ("-0e-3", "0.000".to_owned()),
            ("1.0e0", "1.0".to_owned()),
            ("100e-2", "1.00".to_owned()),
            ("-12.5e1", "-125".to_owned()),
            ("0.00e2", "0".to_owned()),
            ("0.001e2", "0.1".to_owned()),
            ("123.456e-1", "12.3456".to_owned()),
            ("1e308", format!("1{}", zeros(308))),
            ("5e-324", format!("0.{}5", zeros(323))),
        ] {
            assert_eq!(stored_len(sent), Ok(written.len()), "{sent}");
        }
    }

    #[test]
    fn exponents_beyond_a_doubles_and_digits_beyond_numeric_are_refused() {
        for sent in ["1e309", "1e-325", "1e131071", "1e99999999999999999999"] {
            assert!(stored_len(sent).unwrap_err().contains("exponent"), "{sent}");
        }
        let long = format!("1{}", "0".repeat(131_072));
        assert!(stored_len(&long).unwrap_err().contains("digits"));
        let fine = format!("0.{}", "1".repeat(16_383));
        assert_eq!(stored_len(&fine), Ok(fine.len()));
        assert!(stored_len(&format!("{fine}1")).is_err());
    }
}
