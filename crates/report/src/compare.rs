//! Honest comparisons: every sentence that ranks two models is built here, from
//! the data, and only says what the data supports.
//!
//! The rule (DESIGN.md, "Measuring honestly"): two timed results are different
//! only when their min–max ranges over the repeats do not overlap. Otherwise the
//! report says "no measurable difference here" instead of ranking them on noise.
//! A reason ("because each process has its own page tables") is attached only when
//! the measured direction is the one the design predicts; a result that goes the
//! other way is stated as measured, flagged, and left unexplained.

use crate::aggregate::{Metric, Range, Unit, Words};
use crate::format;

/// The phrase every overlap sentence carries; tests and readers look for it.
pub const NO_DIFFERENCE: &str = "no measurable difference here";

/// What kind of number is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Timed over repeats: needs a spread (two or more repeats) on both sides.
    Timed,
    /// Counted (syscalls, instructions): repeats exactly, so one value is enough.
    Counted,
}

/// How `a` stands against `b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// `a`'s whole range lies above `b`'s.
    Higher,
    /// `a`'s whole range lies below `b`'s.
    Lower,
    /// The ranges share at least one value: no ranking.
    Overlap,
    /// A timed side has fewer than two repeats: its spread is unknown.
    TooFewRepeats,
}

/// Compares two ranges by the overlap rule.
pub fn order(a: &Range, b: &Range, basis: Basis) -> Order {
    if basis == Basis::Timed && (a.n < 2 || b.n < 2) {
        return Order::TooFewRepeats;
    }
    if basis == Basis::Counted && within_counted_tolerance(a.median, b.median) {
        return Order::Overlap;
    }
    if a.min > b.max {
        Order::Higher
    } else if a.max < b.min {
        Order::Lower
    } else {
        Order::Overlap
    }
}

/// Counts repeat, but not to the last call: a stray `futex`, a timer's wake-up,
/// the scheduler's context switches. Counts this close are the same count (at one
/// connection every model made 1.00–1.03 context switches per request).
pub const COUNTED_TOLERANCE: f64 = 0.05;

fn within_counted_tolerance(a: f64, b: f64) -> bool {
    (a - b).abs() <= COUNTED_TOLERANCE * a.abs().max(b.abs())
}

/// What is being compared, and how to say it.
#[derive(Debug, Clone)]
pub struct Quantity {
    pub words: Words,
    pub unit: Unit,
    pub basis: Basis,
}

impl Quantity {
    /// A timed metric of the cells.
    pub fn of(metric: Metric) -> Quantity {
        Quantity {
            words: metric.words(),
            unit: metric.unit(),
            basis: Basis::Timed,
        }
    }
}

/// One side of a comparison: a model and its range.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub model: &'a str,
    pub range: Range,
}

/// What a model's design predicts: `higher` ends up above `lower`, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub higher: &'static str,
    pub lower: &'static str,
    pub because: &'static str,
}

/// One sentence comparing `a` and `b` at `context` ("At 1,000 connections").
///
/// - ranges apart: "fork used 13× more PSS per connection than thread", plus the
///   `because` of `expect` when the direction matches it;
/// - ranges overlap: both values and "no measurable difference here";
/// - against `expect`: the measured direction, flagged, no explanation.
pub fn pair(q: &Quantity, context: &str, a: Entry, b: Entry, expect: Option<&Expect>) -> String {
    // Both in one unit, the larger's: "12.5 ms and 9.04 ms", not "9,039 µs".
    let reference = a.range.median.abs().max(b.range.median.abs());
    let values = format!(
        "{context}, {} measured {} and {} {}",
        a.model,
        format::range_scaled_like(&a.range, q.unit, reference),
        b.model,
        format::range_scaled_like(&b.range, q.unit, reference)
    );
    let (hi, lo) = match order(&a.range, &b.range, q.basis) {
        Order::Higher => (a, b),
        Order::Lower => (b, a),
        Order::Overlap => return format!("{values}: the ranges overlap, so {NO_DIFFERENCE}."),
        Order::TooFewRepeats => {
            return format!(
                "{values}: with fewer than two repeats the spread is unknown, so no comparison is drawn."
            )
        }
    };
    let claim = ranked(q, &hi, &lo);
    match expect {
        Some(e) if e.higher == hi.model && e.lower == lo.model => {
            format!("{values}: {claim}, because {}.", e.because)
        }
        Some(e) if e.higher == lo.model && e.lower == hi.model => format!(
            "{values}: {claim}. That is the opposite of what the design predicts, so no \
             explanation is offered; repeat the run before drawing a conclusion."
        ),
        _ => format!("{values}: {claim}."),
    }
}

/// "fork used 13× more PSS per connection than thread".
fn ranked(q: &Quantity, hi: &Entry, lo: &Entry) -> String {
    let w = &q.words;
    if lo.range.median > 0.0 && hi.range.median > 0.0 {
        let r = format::ratio(hi.range.median / lo.range.median);
        format!(
            "{} {} {r} {} {} than {}",
            hi.model, w.verb, w.comparative, w.noun, lo.model
        )
    } else {
        format!(
            "{} {} {} {} than {}",
            hi.model, w.verb, w.comparative, w.noun, lo.model
        )
    }
}

/// The highest and lowest of several models, compared by the overlap rule, and
/// which models cannot be told apart from the highest. `None` for fewer than two.
pub fn extremes(q: &Quantity, context: &str, entries: &[Entry]) -> Option<String> {
    if entries.len() < 2 {
        return None;
    }
    // On equal medians the first entry (teaching order) is named.
    let pick = |better: fn(f64, f64) -> bool| {
        entries.iter().copied().reduce(|best, e| {
            if better(e.range.median, best.range.median) {
                e
            } else {
                best
            }
        })
    };
    let hi = pick(|a, b| a > b)?;
    let lo = pick(|a, b| a < b)?;
    let reference = hi.range.median.abs().max(lo.range.median.abs());
    let values = format!(
        "{context}, {} ranged from {} for {} to {} for {}",
        q.words.subject,
        format::range_scaled_like(&lo.range, q.unit, reference),
        lo.model,
        format::range_scaled_like(&hi.range, q.unit, reference),
        hi.model
    );
    match order(&hi.range, &lo.range, q.basis) {
        Order::Higher => {}
        Order::Overlap | Order::Lower if q.basis == Basis::Counted => {
            return Some(format!(
                "{values}: within {} of each other, the same for every design.",
                format::with_unit(COUNTED_TOLERANCE, Unit::Share)
            ))
        }
        Order::Overlap | Order::Lower => {
            return Some(format!(
                "{values}; even these two ranges overlap, so {NO_DIFFERENCE} between the extremes."
            ))
        }
        Order::TooFewRepeats => {
            return Some(format!(
                "{values}; with fewer than two repeats the spread is unknown, so the models are not ranked."
            ))
        }
    }
    let mut s = format!("{values}: {}.", ranked(q, &hi, &lo));
    let tied: Vec<&str> = entries
        .iter()
        .filter(|e| e.model != hi.model && order(&e.range, &hi.range, q.basis) == Order::Overlap)
        .map(|e| e.model)
        .collect();
    if !tied.is_empty() {
        s.push_str(&format!(
            " {} overlap{} {}'s range: {NO_DIFFERENCE} between them and {}.",
            list(&tied),
            if tied.len() == 1 { "s" } else { "" },
            hi.model,
            hi.model
        ));
    }
    Some(s)
}

/// `a`, `a and b`, `a, b and c`.
pub fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(samples: &[f64]) -> Range {
        Range::from_samples(samples).unwrap()
    }

    const PSS: Expect = Expect {
        higher: "fork",
        lower: "thread",
        because: "each process has its own page tables",
    };

    /// Touching ranges count as overlapping; only a gap ranks two models.
    #[test]
    fn counts_within_five_percent_are_the_same() {
        let one = Range::exact(1.00);
        assert_eq!(
            order(&Range::exact(1.03), &one, Basis::Counted),
            Order::Overlap
        );
        assert_eq!(
            order(&Range::exact(1.10), &one, Basis::Counted),
            Order::Higher
        );
    }

    #[test]
    fn order_needs_a_gap() {
        let a = r(&[1.0, 2.0, 3.0]);
        assert_eq!(
            order(&a, &r(&[3.0, 4.0, 5.0]), Basis::Timed),
            Order::Overlap
        );
        assert_eq!(order(&a, &r(&[3.1, 4.0, 5.0]), Basis::Timed), Order::Lower);
        assert_eq!(order(&r(&[6.0, 7.0]), &a, Basis::Timed), Order::Higher);
        assert_eq!(order(&r(&[6.0]), &a, Basis::Timed), Order::TooFewRepeats);
        assert_eq!(
            order(&Range::exact(6.0), &Range::exact(5.0), Basis::Counted),
            Order::Higher
        );
    }

    /// Apart ranges in the predicted direction give the ratio and the reason.
    #[test]
    fn predicted_direction_explained() {
        let q = Quantity::of(Metric::PssPerConn);
        let thread = Entry {
            model: "thread",
            range: r(&[90_000.0, 100_000.0, 110_000.0]),
        };
        let fork = Entry {
            model: "fork",
            range: r(&[1.2e6, 1.3e6, 1.4e6]),
        };
        let s = pair(&q, "At 1,000 connections", thread, fork, Some(&PSS));
        assert!(
            s.contains("fork used 13× more PSS per connection than thread"),
            "{s}"
        );
        assert!(
            s.contains("because each process has its own page tables"),
            "{s}"
        );
        assert!(!s.contains(NO_DIFFERENCE));
    }

    /// Overlapping ranges are never ranked, whatever their medians.
    #[test]
    fn overlap_is_not_ranked() {
        let q = Quantity::of(Metric::PssPerConn);
        let thread = Entry {
            model: "thread",
            range: r(&[90_000.0, 100_000.0, 130_000.0]),
        };
        let fork = Entry {
            model: "fork",
            range: r(&[120_000.0, 140_000.0, 150_000.0]),
        };
        let s = pair(&q, "At 1,000 connections", thread, fork, Some(&PSS));
        assert!(s.contains(NO_DIFFERENCE), "{s}");
        assert!(!s.contains("more") && !s.contains("because"), "{s}");
    }

    /// A result against the prediction is stated as measured, without the reason.
    #[test]
    fn contradiction_is_not_explained() {
        let q = Quantity::of(Metric::PssPerConn);
        let thread = Entry {
            model: "thread",
            range: r(&[2e6, 2.1e6, 2.2e6]),
        };
        let fork = Entry {
            model: "fork",
            range: r(&[1e5, 1.1e5, 1.2e5]),
        };
        let s = pair(&q, "At 10 connections", thread, fork, Some(&PSS));
        assert!(
            s.contains("thread used 19× more PSS per connection than fork"),
            "{s}"
        );
        assert!(s.contains("opposite of what the design predicts"), "{s}");
        assert!(!s.contains("page tables"), "{s}");
    }

    /// Extremes name the best model and the models tied with it.
    #[test]
    fn extremes_name_ties() {
        let q = Quantity::of(Metric::Throughput);
        let e = [
            Entry {
                model: "thread",
                range: r(&[60_000.0, 70_000.0, 75_000.0]),
            },
            Entry {
                model: "async",
                range: r(&[95_000.0, 100_000.0, 110_000.0]),
            },
            Entry {
                model: "uring",
                range: r(&[100_000.0, 105_000.0, 120_000.0]),
            },
        ];
        let s = extremes(&q, "At 100 connections", &e).unwrap();
        assert!(
            s.contains("uring served 50 % more requests per second than thread"),
            "{s}"
        );
        assert!(s.contains("async overlaps uring's range"), "{s}");
    }
}
