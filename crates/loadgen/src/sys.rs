//! The few things the load generator asks the kernel directly: how many CPUs it may
//! run on, its file-descriptor limit, and how much CPU it has used.
//!
//! These are thin, commented wrappers over `libc`; everything else in the crate is
//! plain std and mio.

use std::io;
use std::time::Duration;

/// Number of CPUs this process may run on, from `sched_getaffinity(2)`.
///
/// This is the right default for the thread count: under `taskset -c 1` (socklab pins
/// the load generator and the server to different CPUs) the machine still has two
/// CPUs, but this process may use one, and a second event-loop thread would only
/// fight the first for it. Falls back to 1 if the call fails.
pub fn allowed_cpus() -> usize {
    // SAFETY: cpu_set_t is plain old data; zeroed is a valid (empty) set, and
    // sched_getaffinity writes at most size_of::<cpu_set_t>() bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    1
}

/// The soft and hard `RLIMIT_NOFILE` of this process.
pub fn fd_limits() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Outcome of [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FdLimit {
    /// The soft limit was already at least what is needed.
    Enough { soft: u64 },
    /// The soft limit was raised from `from` to `to`.
    Raised { from: u64, to: u64 },
    /// Not possible without privileges: the hard limit is below what is needed.
    HardLimitTooLow { soft: u64, hard: u64 },
}

/// Raises the soft `RLIMIT_NOFILE` to at least `needed` if the hard limit allows it.
///
/// Most shells start processes with a soft limit of 1,024 open files and a hard limit
/// far above it: any process may raise its own soft limit up to the hard one, no
/// privileges needed. 10,000 connections need 10,000 descriptors, so the load
/// generator raises its own and says so clearly when even the hard limit is too low
/// (fix: `ulimit -Hn`, `/etc/security/limits.conf`, or systemd's `LimitNOFILE=`).
pub fn raise_fd_limit(needed: u64) -> io::Result<FdLimit> {
    let (soft, hard) = fd_limits()?;
    if soft >= needed {
        return Ok(FdLimit::Enough { soft });
    }
    if hard < needed {
        return Ok(FdLimit::HardLimitTooLow { soft, hard });
    }
    let lim = libc::rlimit {
        rlim_cur: needed as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one rlimit struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(FdLimit::Raised {
        from: soft,
        to: needed,
    })
}

/// User and system CPU time this process has used so far (all threads), from
/// `getrusage(RUSAGE_SELF)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTimes {
    /// Reads the process's CPU times now.
    pub fn now() -> CpuTimes {
        // SAFETY: rusage is plain old data; getrusage fills the struct we own.
        let ru = unsafe {
            let mut ru: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut ru);
            ru
        };
        CpuTimes {
            user: timeval(ru.ru_utime),
            system: timeval(ru.ru_stime),
        }
    }

    /// CPU time used between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_cpu_and_a_limit() {
        assert!(allowed_cpus() >= 1);
        let (soft, hard) = fd_limits().unwrap();
        assert!(soft <= hard);
        assert!(matches!(
            raise_fd_limit(16).unwrap(),
            FdLimit::Enough { .. }
        ));
    }
}
