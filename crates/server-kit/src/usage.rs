//! What the whole server process tree cost, from `getrusage(2)`.
//!
//! `RUSAGE_SELF` covers every thread of this process, including threads that
//! already exited; `RUSAGE_CHILDREN` covers every child process that was reaped
//! (a forking server's children, a prefork server's workers). Together, read as the
//! server exits, they are exact for the whole tree — unlike sampling /proc, which
//! misses every thread or process that lived and died between two samples.

use nix::sys::resource::{getrusage, Usage, UsageWho};

/// CPU time and context switches of this process and its reaped children.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeUsage {
    pub user_us: u64,
    pub system_us: u64,
    pub voluntary_ctx: u64,
    pub involuntary_ctx: u64,
}

impl TreeUsage {
    /// Reads `RUSAGE_SELF` + `RUSAGE_CHILDREN` now.
    pub fn now() -> TreeUsage {
        let mut total = TreeUsage::default();
        for who in [UsageWho::RUSAGE_SELF, UsageWho::RUSAGE_CHILDREN] {
            if let Ok(u) = getrusage(who) {
                total.add(&u);
            }
        }
        total
    }

    /// User plus system CPU time.
    pub fn cpu(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.user_us + self.system_us)
    }

    /// Both together (this process's line plus its live children, say).
    pub fn plus(&self, o: &TreeUsage) -> TreeUsage {
        TreeUsage {
            user_us: self.user_us + o.user_us,
            system_us: self.system_us + o.system_us,
            voluntary_ctx: self.voluntary_ctx + o.voluntary_ctx,
            involuntary_ctx: self.involuntary_ctx + o.involuntary_ctx,
        }
    }

    /// What was used between `earlier` and this reading.
    pub fn since(&self, earlier: &TreeUsage) -> TreeUsage {
        TreeUsage {
            user_us: self.user_us.saturating_sub(earlier.user_us),
            system_us: self.system_us.saturating_sub(earlier.system_us),
            voluntary_ctx: self.voluntary_ctx.saturating_sub(earlier.voluntary_ctx),
            involuntary_ctx: self.involuntary_ctx.saturating_sub(earlier.involuntary_ctx),
        }
    }

    fn add(&mut self, u: &Usage) {
        let us = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
        self.user_us += us(u.user_time());
        self.system_us += us(u.system_time());
        self.voluntary_ctx += u.voluntary_context_switches() as u64;
        self.involuntary_ctx += u.involuntary_context_switches() as u64;
    }
}

/// The words of the usage line `socklab serve` prints (on SIGUSR1 to stdout, and
/// to stderr as it exits); `socklab compare` parses them. Keys are stable:
/// `user_us`, `system_us`, `voluntary_ctx`, `involuntary_ctx`.
impl std::fmt::Display for TreeUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "user_us={} system_us={} voluntary_ctx={} involuntary_ctx={}",
            self.user_us, self.system_us, self.voluntary_ctx, self.involuntary_ctx
        )
    }
}

impl std::str::FromStr for TreeUsage {
    type Err = String;
    /// Parses the `key=value` words of [`TreeUsage`]'s Display from anywhere in a line.
    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let get = |key: &str| -> Result<u64, String> {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| format!("no {key}= in {line:?}"))?
                .parse()
                .map_err(|e| format!("{key}: {e}"))
        };
        Ok(TreeUsage {
            user_us: get("user_us")?,
            system_us: get("system_us")?,
            voluntary_ctx: get("voluntary_ctx")?,
            involuntary_ctx: get("involuntary_ctx")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_parses_back() {
        let u = TreeUsage {
            user_us: 1,
            system_us: 2,
            voluntary_ctx: 3,
            involuntary_ctx: 4,
        };
        let line = format!("socklab: thread usage {u}");
        assert_eq!(line.parse::<TreeUsage>(), Ok(u));
    }

    #[test]
    fn burning_cpu_shows_up() {
        let before = TreeUsage::now();
        crate::work::spin_for(std::time::Duration::from_millis(30));
        let after = TreeUsage::now();
        assert!(after.cpu() > before.cpu());
    }
}
