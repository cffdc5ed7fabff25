//! Exact decimal arithmetic for number and quantity search values: the interval a written
//! value stands for at its precision, the ±10% of `ap`, and comparison, all on decimal
//! digits (a float would turn `0.1` into something else).

use std::cmp::Ordering;

use crate::search::Decimal;

/// The most significant digits a search value may have: the ranges need one more digit
/// and must stay within an `i128` (38 digits).
pub(super) const MAX_DIGITS: usize = 36;

/// `mantissa × 10^exponent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Scaled {
    mantissa: i128,
    exponent: i64,
}

/// Exponents beyond this are not decimals anyone searches with.
const MAX_EXPONENT: i64 = 1000;

impl Scaled {
    /// The value of `decimal` with the exponent of its last written digit (`100.00` is
    /// `10000 × 10^-2`); `None` past [`MAX_DIGITS`] significant digits or a huge exponent.
    pub(super) fn of(decimal: &Decimal) -> Option<Scaled> {
        let text = decimal.as_str();
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            Some((m, e)) => (m, e.parse::<i64>().ok()?),
            None => (unsigned, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = format!("{int_part}{frac_part}");
        let significant = digits.trim_start_matches('0');
        if significant.len() > MAX_DIGITS {
            return None;
        }
        let magnitude: i128 = if significant.is_empty() {
            0
        } else {
            significant.parse().ok()?
        };
        let exponent = exponent.checked_sub(i64::try_from(frac_part.len()).ok()?)?;
        if exponent.abs() > MAX_EXPONENT {
            return None;
        }
        Some(Scaled {
            mantissa: if negative { -magnitude } else { magnitude },
            exponent,
        })
    }

    /// `[value - ½ unit, value + ½ unit)` of the last written digit.
    pub(super) fn precision_range(self) -> Option<(Scaled, Scaled)> {
        let tenfold = self.mantissa.checked_mul(10)?;
        Some((self.shifted(tenfold - 5), self.shifted(tenfold + 5)))
    }

    /// `[value - 10%, value + 10%]`.
    pub(super) fn approximate_range(self) -> Option<(Scaled, Scaled)> {
        let tenfold = self.mantissa.checked_mul(10)?;
        let tenth = self.mantissa.abs();
        Some((self.shifted(tenfold - tenth), self.shifted(tenfold + tenth)))
    }

    /// `mantissa × 10^(exponent - 1)`.
    fn shifted(self, mantissa: i128) -> Scaled {
        Scaled {
            mantissa,
            exponent: self.exponent - 1,
        }
    }

    /// As a decimal, without an exponent unless it is far from the point, and without
    /// trailing zeros after the point.
    pub(super) fn to_decimal(self) -> Option<Decimal> {
        Decimal::parse(&self.render())
    }

    fn render(self) -> String {
        let sign = if self.mantissa < 0 { "-" } else { "" };
        let digits = self.mantissa.unsigned_abs().to_string();
        if self.mantissa == 0 {
            return "0".to_string();
        }
        if self.exponent >= 0 {
            return match usize::try_from(self.exponent) {
                Ok(zeros) if zeros <= 40 => format!("{sign}{digits}{}", "0".repeat(zeros)),
                _ => format!("{sign}{digits}e{}", self.exponent),
            };
        }
        match usize::try_from(-self.exponent) {
            Ok(scale) if scale <= 40 => {
                let padded = if digits.len() <= scale {
                    format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
                } else {
                    digits
                };
                let (int_part, frac_part) = padded.split_at(padded.len() - scale);
                // A bound has no precision of its own: `90.0` is `90`.
                match frac_part.trim_end_matches('0') {
                    "" => format!("{sign}{int_part}"),
                    frac_part => format!("{sign}{int_part}.{frac_part}"),
                }
            }
            _ => format!("{sign}{digits}e{}", self.exponent),
        }
    }
}

/// The sign, significant digits and point of a decimal: `0.digits × 10^point`.
struct Parts {
    sign: i8,
    digits: String,
    point: i64,
}

impl Parts {
    fn of(text: &str) -> Parts {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
            // An exponent too large for an i64 is still ordered correctly when saturated.
            Some((m, e)) => (
                m,
                e.parse::<i64>().unwrap_or(if e.starts_with('-') {
                    i64::MIN / 4
                } else {
                    i64::MAX / 4
                }),
            ),
            None => (unsigned, 0),
        };
        let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let all = format!("{int_part}{frac_part}");
        let leading = all.len() - all.trim_start_matches('0').len();
        let digits = all.trim_matches('0').to_string();
        if digits.is_empty() {
            return Parts {
                sign: 0,
                digits,
                point: 0,
            };
        }
        let int_len = i64::try_from(int_part.len()).unwrap_or(i64::MAX / 4);
        let leading = i64::try_from(leading).unwrap_or(i64::MAX / 4);
        Parts {
            sign: if negative { -1 } else { 1 },
            digits,
            point: (int_len - leading).saturating_add(exponent),
        }
    }
}

/// Numeric order of two decimals, exactly (`1.50` equals `15e-1`).
pub(super) fn compare(a: &Decimal, b: &Decimal) -> Ordering {
    let (a, b) = (Parts::of(a.as_str()), Parts::of(b.as_str()));
    match a.sign.cmp(&b.sign) {
        Ordering::Equal => {}
        unequal => return unequal,
    }
    let magnitude = a.point.cmp(&b.point).then_with(|| a.digits.cmp(&b.digits));
    if a.sign < 0 {
        magnitude.reverse()
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        Decimal::parse(text).expect("a decimal")
    }

    fn range(text: &str, f: fn(Scaled) -> Option<(Scaled, Scaled)>) -> (String, String) {
        let (low, high) = f(Scaled::of(&d(text)).expect("in range")).expect("no overflow");
        let show = |s: Scaled| s.to_decimal().expect("renders").as_str().to_string();
        (show(low), show(high))
    }

    #[test]
    fn precision_ranges_follow_the_last_written_digit() {
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(range("100", Scaled::precision_range), pair("99.5", "100.5"));
        assert_eq!(
            range("100.00", Scaled::precision_range),
            pair("99.995", "100.005")
        );
        assert_eq!(range("1e2", Scaled::precision_range), pair("50", "150"));
        assert_eq!(range("0", Scaled::precision_range), pair("-0.5", "0.5"));
        assert_eq!(
            range("-2.5", Scaled::precision_range),
            pair("-2.55", "-2.45")
        );
        assert_eq!(
            range("0.001", Scaled::precision_range),
            pair("0.0005", "0.0015")
        );
        assert_eq!(
            range("1.5E-3", Scaled::precision_range),
            pair("0.00145", "0.00155")
        );
        assert_eq!(range("100", Scaled::approximate_range), pair("90", "110"));
        assert_eq!(range("-40", Scaled::approximate_range), pair("-44", "-36"));
        assert_eq!(range("0", Scaled::approximate_range), pair("0", "0"));
        assert_eq!(
            range("1e50", Scaled::precision_range),
            pair("5e49", "15e49")
        );
    }

    #[test]
    fn too_many_digits_are_refused() {
        assert!(Scaled::of(&d(&"9".repeat(MAX_DIGITS))).is_some());
        assert!(Scaled::of(&d(&"9".repeat(MAX_DIGITS + 1))).is_none());
        assert!(Scaled::of(&d("1e99999999999999999999")).is_none());
        assert!(Scaled::of(&d("1e2000")).is_none());
    }

    #[test]
    fn comparison_is_exact() {
        use Ordering::*;
        for (a, b, order) in [
            ("1.50", "15e-1", Equal),
            ("100", "1e2", Equal),
            ("0", "-0.0", Equal),
            ("99.5", "100", Less),
            ("100.5", "100.49999999999999999999999", Greater),
            ("-1", "0", Less),
            ("-1", "-2", Greater),
            ("0.1", "0.09", Greater),
            ("1e-999999999999999999999", "0", Greater),
            ("1e999999999999999999999", "1e300", Greater),
            ("-0.001", "-0.0001", Less),
        ] {
            assert_eq!(compare(&d(a), &d(b)), order, "{a} vs {b}");
            assert_eq!(compare(&d(b), &d(a)), order.reverse(), "{b} vs {a}");
        }
    }
}
