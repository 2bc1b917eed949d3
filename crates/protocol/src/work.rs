//! Per-request work: what a request costs the server besides the echo itself.
//!
//! `cpu:<dur>` burns CPU for that long (shows which models scale across cores and
//! which stall behind one busy handler). `sleep:<dur>` waits without CPU (a blocking
//! model parks a thread or a process; an event loop must use a timer and keep serving
//! others). The core only says *how much* work is due; it never sleeps or spins.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Work due before a request's reply may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Work {
    /// Reply at once.
    #[default]
    None,
    /// Spin on the CPU for this long per request.
    Cpu(Duration),
    /// Wait this long per request without using the CPU.
    Sleep(Duration),
}

impl Work {
    /// The work due for `requests` requests answered together (one read that
    /// completed several pipelined requests): the same kind, `requests` times as long.
    pub fn times(self, requests: usize) -> Work {
        let n = u32::try_from(requests).unwrap_or(u32::MAX);
        match self {
            Work::None => Work::None,
            Work::Cpu(d) => Work::Cpu(d.saturating_mul(n)),
            Work::Sleep(d) => Work::Sleep(d.saturating_mul(n)),
        }
    }
}

/// Why a `--work` value was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkParseError {
    #[error("unknown work kind {0:?}: expected none, cpu:<duration> or sleep:<duration> (e.g. cpu:50us, sleep:2ms)")]
    UnknownKind(String),
    #[error(
        "bad duration {0:?}: expected a whole number followed by ns, us, ms, s, m or h (e.g. 50us, 2ms, 2m), or 0"
    )]
    BadDuration(String),
    #[error("duration {0:?} is longer than the 60 s a request may take")]
    TooLong(String),
}

/// Longest work a request may ask for; beyond it a typo (`sleep:2000s`) would hang
/// every benchmark.
pub const MAX_WORK: Duration = Duration::from_secs(60);

impl FromStr for Work {
    type Err = WorkParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s == "none" {
            return Ok(Work::None);
        }
        let (kind, dur) = s
            .split_once(':')
            .ok_or_else(|| WorkParseError::UnknownKind(s.to_string()))?;
        let make: fn(Duration) -> Work = match kind {
            "cpu" => Work::Cpu,
            "sleep" => Work::Sleep,
            other => return Err(WorkParseError::UnknownKind(other.to_string())),
        };
        let duration = parse_duration(dur)?;
        if duration > MAX_WORK {
            return Err(WorkParseError::TooLong(dur.to_string()));
        }
        Ok(make(duration))
    }
}

/// Parses `50us`, `2ms`, `1s`, `2m`, `1h`, `500ns` (also `µs`), or a bare `0`:
/// the one duration syntax of every socklab flag (`serve`, `load`, `compare`,
/// `soak`); `m` and `h` as in wrk's `--duration 2m`.
pub fn parse_duration(s: &str) -> Result<Duration, WorkParseError> {
    let bad = || WorkParseError::BadDuration(s.to_string());
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = s.split_at(digits_end);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "ns" => Duration::from_nanos(n),
        "us" | "µs" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        "h" => Duration::from_secs(n.checked_mul(3600).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    Ok(duration)
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Work::None => write!(f, "none"),
            Work::Cpu(d) => write!(f, "cpu:{}", format_duration(*d)),
            Work::Sleep(d) => write!(f, "sleep:{}", format_duration(*d)),
        }
    }
}

fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1_000) {
        format!("{}us", ns / 1_000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind_and_unit() {
        assert_eq!("none".parse(), Ok(Work::None));
        assert_eq!("cpu:50us".parse(), Ok(Work::Cpu(Duration::from_micros(50))));
        assert_eq!(
            "sleep:2ms".parse(),
            Ok(Work::Sleep(Duration::from_millis(2)))
        );
        assert_eq!("sleep:1s".parse(), Ok(Work::Sleep(Duration::from_secs(1))));
        assert_eq!(
            "cpu:700ns".parse(),
            Ok(Work::Cpu(Duration::from_nanos(700)))
        );
    }

    #[test]
    fn rejects_nonsense_with_a_reason() {
        assert!(matches!(
            "nap:2ms".parse::<Work>(),
            Err(WorkParseError::UnknownKind(_))
        ));
        assert!(matches!(
            "cpu".parse::<Work>(),
            Err(WorkParseError::UnknownKind(_))
        ));
        assert!(matches!(
            "cpu:2d".parse::<Work>(),
            Err(WorkParseError::BadDuration(_))
        ));
        assert!(matches!(
            "cpu:2h".parse::<Work>(),
            Err(WorkParseError::TooLong(_))
        ));
        assert!(matches!(
            "cpu:ms".parse::<Work>(),
            Err(WorkParseError::BadDuration(_))
        ));
        assert!(matches!(
            "sleep:61s".parse::<Work>(),
            Err(WorkParseError::TooLong(_))
        ));
        assert!(matches!(
            "sleep:99999999999999999999s".parse::<Work>(),
            Err(WorkParseError::BadDuration(_))
        ));
    }

    #[test]
    fn minutes_and_hours_as_in_wrk() {
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1ms"), Ok(Duration::from_millis(1)));
        assert!(matches!(
            parse_duration("99999999999999999h"),
            Err(WorkParseError::BadDuration(_))
        ));
    }

    #[test]
    fn display_round_trips() {
        for s in ["none", "cpu:50us", "sleep:2ms", "sleep:3s", "cpu:7ns"] {
            assert_eq!(s.parse::<Work>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn times_scales_the_duration() {
        assert_eq!(
            Work::Sleep(Duration::from_millis(2)).times(3),
            Work::Sleep(Duration::from_millis(6))
        );
        assert_eq!(Work::None.times(5), Work::None);
    }
}
