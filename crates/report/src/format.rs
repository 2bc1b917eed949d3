//! Numbers as a reader wants them: three significant figures, thousands
//! separated, ranges as `median [min–max]`.
//!
//! Three figures because the run-to-run spread is tens of percent: a fourth digit
//! would be noise dressed as precision. Tables, sentences and tests all go
//! through these functions, so a number reads the same everywhere.

use crate::aggregate::{Range, Unit};

const KIB: f64 = 1024.0;
const MIB: f64 = 1024.0 * 1024.0;

/// `95000.0` -> `95,000`; `12.34` -> `12.3`; `0.01234` -> `0.0123`.
pub fn num(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    let a = x.abs();
    // Whole numbers (counts) print without decimals.
    if a >= 100.0 || x.fract() == 0.0 {
        return thousands(x.round());
    }
    fixed(x, decimals_for(x))
}

/// Decimals that give `x` three significant figures (none from 100 up).
fn decimals_for(x: f64) -> usize {
    let a = x.abs();
    if a >= 100.0 || a == 0.0 || !a.is_finite() {
        0
    } else {
        (2 - a.log10().floor() as i32).clamp(0, 12) as usize
    }
}

/// `x` with a fixed number of decimals; thousands separated when there are none.
fn fixed(x: f64, decimals: usize) -> String {
    if decimals == 0 {
        thousands(x.round())
    } else {
        format!("{x:.decimals$}")
    }
}

/// Three numbers with the median's precision, so a range never mixes `20` and
/// `21.2`; whole numbers (counts) stay whole.
fn triple(median: f64, min: f64, max: f64) -> [String; 3] {
    if [median, min, max].iter().all(|v| v.fract() == 0.0) {
        return [num(median), num(min), num(max)];
    }
    let d = decimals_for(median);
    [fixed(median, d), fixed(min, d), fixed(max, d)]
}

/// Three significant figures even for whole values: for rates per request, where
/// `1.00` next to `1.02` reads better than `1`.
pub fn sig3(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".to_string();
    }
    fixed(x, decimals_for(x))
}

/// An axis tick: as [`num`], without trailing zeros (`0.8`, not `0.800`).
pub fn tick(x: f64) -> String {
    let s = num(x);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// An integer-valued float with `,` between thousands.
fn thousands(x: f64) -> String {
    let digits = format!("{}", x.abs() as u64);
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    if x < 0.0 {
        out.insert(0, '-');
    }
    out
}

/// A number in the unit a table column states in its header: bytes as KiB,
/// shares as percent, everything else as itself.
pub fn in_column_unit(x: f64, unit: Unit) -> String {
    match unit {
        Unit::Bytes => num(x / KIB),
        Unit::Share => format!("{} %", num(x * 100.0)),
        Unit::Rate | Unit::Micros | Unit::Plain | Unit::Seconds => num(x),
    }
}

/// `median [min–max]` in the column's unit; only the median when every repeat
/// agreed or there was one.
pub fn range(r: &Range, unit: Unit) -> String {
    if r.n <= 1 || r.min == r.max {
        return in_column_unit(r.median, unit);
    }
    let (div, suffix) = match unit {
        Unit::Bytes => (KIB, ""),
        Unit::Share => (0.01, " %"),
        Unit::Rate | Unit::Micros | Unit::Plain | Unit::Seconds => (1.0, ""),
    };
    let [m, lo, hi] = triple(r.median / div, r.min / div, r.max / div);
    format!("{m} [{lo}–{hi}]{suffix}")
}

/// The divisor and suffix a value is shown with in sentences, chosen by its size.
fn scale(x: f64, unit: Unit) -> (f64, &'static str) {
    let a = x.abs();
    match unit {
        Unit::Bytes if a >= MIB => (MIB, " MiB"),
        Unit::Bytes if a >= KIB => (KIB, " KiB"),
        Unit::Bytes => (1.0, " B"),
        Unit::Micros if a >= 1e6 => (1e6, " s"),
        Unit::Micros if a >= 1e4 => (1e3, " ms"),
        Unit::Micros => (1.0, " µs"),
        Unit::Rate => (1.0, "/s"),
        Unit::Share => (0.01, " %"),
        Unit::Seconds => (1.0, " s"),
        Unit::Plain => (1.0, ""),
    }
}

/// A number with its unit, for sentences: `84.0 KiB`, `1.20 MiB`, `35.2 µs`,
/// `24.1 ms`, `95,000/s`.
pub fn with_unit(x: f64, unit: Unit) -> String {
    let (div, suffix) = scale(x, unit);
    format!("{}{suffix}", num(x / div))
}

/// A range for sentences, in the median's unit: `180 KiB [171–191]`.
pub fn range_with_unit(r: &Range, unit: Unit) -> String {
    range_scaled_like(r, unit, r.median)
}

/// A range for sentences in the unit `reference` would be shown in, so that two
/// figures side by side read in one unit: `12.5 ms` and `9.04 ms`, never `9,039 µs`.
pub fn range_scaled_like(r: &Range, unit: Unit, reference: f64) -> String {
    let (div, suffix) = scale(reference, unit);
    if r.n <= 1 || r.min == r.max {
        return format!("{}{suffix}", num(r.median / div));
    }
    let [m, lo, hi] = triple(r.median / div, r.min / div, r.max / div);
    format!("{m}{suffix} [{lo}–{hi}]")
}

/// How much bigger `ratio` (>= 1) is, in words: `4.2 %` or `35 %` below 2×, `2.4×` up to
/// 10×, `13×` above.
pub fn ratio(ratio: f64) -> String {
    if !ratio.is_finite() {
        "incomparably".to_string()
    } else if ratio < 1.1 {
        format!("{:.1} %", (ratio - 1.0) * 100.0)
    } else if ratio < 2.0 {
        format!("{:.0} %", (ratio - 1.0) * 100.0)
    } else if ratio < 10.0 {
        format!("{ratio:.1}×")
    } else {
        format!("{}×", num(ratio.round()))
    }
}

/// A factor for sentences: `1.9×`, `0.98×`.
pub fn ratio_x(x: f64) -> String {
    if x >= 10.0 {
        format!("{}×", num(x.round()))
    } else {
        format!("{x:.2}×")
    }
}

/// `1000` -> `1,000 connections`, `1` -> `1 connection`.
pub fn conns(n: usize) -> String {
    if n == 1 {
        "1 connection".to_string()
    } else {
        format!("{} connections", thousands(n as f64))
    }
}

/// `1` -> `1 CPU`, `2` -> `2 CPUs`.
pub fn cpus(n: usize) -> String {
    if n == 1 {
        "1 CPU".to_string()
    } else {
        format!("{} CPUs", thousands(n as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three significant figures, thousands separated, whatever the magnitude.
    #[test]
    fn numbers() {
        assert_eq!(num(95_000.0), "95,000");
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(0.01234), "0.0123");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(-2500.0), "-2,500");
        assert_eq!(tick(0.8), "0.8");
        assert_eq!(tick(1500.0), "1,500");
    }

    /// Ranges print `median [min–max]`, and just the median when all agree.
    #[test]
    fn ranges() {
        let r = Range::from_samples(&[90_000.0, 95_000.0, 99_000.0]).unwrap();
        assert_eq!(range(&r, Unit::Rate), "95,000 [90,000–99,000]");
        assert_eq!(range(&Range::exact(3.0), Unit::Plain), "3");
        let b = Range::from_samples(&[10240.0, 20480.0]).unwrap();
        assert_eq!(range(&b, Unit::Bytes), "15 [10–20]");
        let mixed = Range::from_samples(&[19.0, 20.0, 21.2]).unwrap();
        assert_eq!(range(&mixed, Unit::Plain), "20.0 [19.0–21.2]");
        assert_eq!(range_with_unit(&mixed, Unit::Micros), "20.0 µs [19.0–21.2]");
    }

    /// Small differences read as percent, large ones as multiples.
    #[test]
    fn ratios() {
        assert_eq!(ratio(1.35), "35 %");
        assert_eq!(ratio(1.042), "4.2 %");
        assert_eq!(ratio(2.41), "2.4×");
        assert_eq!(ratio(13.2), "13×");
    }
}
