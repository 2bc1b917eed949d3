//! The lines a held `socklab load --hold` and whoever holds it (`socklab
//! compare`'s c100k cell) exchange, written and read in this one place.
//!
//! ```text
//! load → stdout   socklab load: ramped complete=true stalled=false served=18000 length_s=10.012
//! stdin → load    go 1764000000123456789        (warm-up starts then: Unix time, ns)
//! stdin → load    release                       (the window is over: close, report, exit)
//! ```
//!
//! Why a wall-clock instant and not "now": the holder writes `go` to several
//! loaders one after another, and each reads it when its thread is scheduled. An
//! instant a little in the future, on the clock every process on the machine
//! shares, starts every loader's warm-up at the same moment whatever those delays
//! were (each turns it into its own monotonic `Instant`). End of input before
//! `go` stops the load (its holder is gone); after it, it counts as `release`.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socklab_loadgen::Ramp;
use socklab_models::announce::field;

/// How the ramped line starts.
const RAMPED: &str = "socklab load: ramped";

/// What a held load says when its ramp has ended.
pub fn ramped_line(r: &Ramp) -> String {
    format!(
        "{RAMPED} complete={} stalled={} served={} length_s={:.3}",
        r.complete, r.stalled, r.served, r.length_s
    )
}

/// How a loader's ramp ended, read back from its ramped line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramped {
    pub complete: bool,
    pub stalled: bool,
    pub served: u64,
    pub length_s: f64,
}

/// Reads a ramped line; `None` for any other line.
pub fn parse_ramped(line: &str) -> Option<Ramped> {
    line.trim().strip_prefix(RAMPED)?;
    Some(Ramped {
        complete: field(line, "complete")?.parse().ok()?,
        stalled: field(line, "stalled")?.parse().ok()?,
        served: field(line, "served")?.parse().ok()?,
        length_s: field(line, "length_s")?.parse().ok()?,
    })
}

/// What the holder tells a held load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Start the warm-up at this instant.
    Go(SystemTime),
    /// Close the connections and finish.
    Release,
}

impl Command {
    /// The line that says it (with its newline).
    pub fn line(&self) -> String {
        match self {
            Command::Go(at) => {
                let ns = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
                format!("go {ns}\n")
            }
            Command::Release => "release\n".to_string(),
        }
    }

    /// Reads one line from the holder.
    pub fn parse(line: &str) -> Result<Command, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["go", ns] => {
                let ns: u64 = ns
                    .parse()
                    .map_err(|_| format!("go needs a Unix time in ns, got {ns:?}"))?;
                Ok(Command::Go(UNIX_EPOCH + Duration::from_nanos(ns)))
            }
            ["release"] => Ok(Command::Release),
            _ => Err(format!("expected `go UNIX_NS` or `release`, got {line:?}")),
        }
    }
}

/// The monotonic instant that is `at` on the wall clock (in the past or future).
pub fn instant_of(at: SystemTime) -> Instant {
    let (now, wall) = (Instant::now(), SystemTime::now());
    match at.duration_since(wall) {
        Ok(ahead) => now + ahead,
        Err(behind) => now.checked_sub(behind.duration()).unwrap_or(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip() {
        let r = Ramp {
            limit_s: 20.0,
            length_s: 10.0123,
            complete: false,
            stalled: true,
            quiet_s: 1.0,
            served: 3_300,
        };
        let back = parse_ramped(&ramped_line(&r)).unwrap();
        assert_eq!(
            back,
            Ramped {
                complete: false,
                stalled: true,
                served: 3_300,
                length_s: 10.012
            }
        );
        assert!(parse_ramped("socklab: thread serving tcp=127.0.0.1:1 pid=2").is_none());
        let at = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_123_456_789);
        let go = Command::Go(at);
        assert_eq!(Command::parse(&go.line()), Ok(go));
        assert_eq!(Command::parse("release\n"), Ok(Command::Release));
        assert!(Command::parse("go soon").is_err());
        assert!(Command::parse("stop").is_err());
    }

    #[test]
    fn a_wall_clock_instant_becomes_a_monotonic_one() {
        let soon = SystemTime::now() + Duration::from_millis(200);
        let i = instant_of(soon);
        let ahead = i.saturating_duration_since(Instant::now());
        assert!((150..=200).contains(&ahead.as_millis()), "{ahead:?}");
        let past = instant_of(SystemTime::now() - Duration::from_millis(100));
        assert!(past <= Instant::now());
    }
}
