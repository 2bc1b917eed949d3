//! Open-loop pacing: when each request is due, and a precise timer to wake for it.
//!
//! # The schedule
//!
//! Request `k` (counted over all connections, from the start of the traffic) is due at
//! `start + k / rate` on connection `k % conns`. Each connection thus sends every
//! `conns / rate` seconds, and connections take turns evenly, so the server sees a
//! smooth stream rather than `conns` requests at once. A thread owns connections
//! `t, t + threads, ...` and walks its share of `k` in order.
//!
//! # Coordinated omission
//!
//! A closed-loop client waits for a reply before sending again. When the server
//! stalls for 200 ms, that client sends nothing for 200 ms and records *one* slow
//! request, although a real user arriving at a fixed rate would have sent 200 of
//! them and waited on average 100 ms each. The client has silently coordinated with
//! the server to omit the bad samples. Here, every request is charged from its
//! *intended* send time, whatever happened to the ones before it, so a stall shows
//! up in the percentiles as the users would feel it (as in wrk2 and Gil Tene's
//! "How NOT to measure latency").
//!
//! # Why a timerfd
//!
//! `epoll_wait` takes its timeout in whole milliseconds (mio rounds up), so a loop
//! that slept on it would send up to 1 ms late — forty times the 25 µs loopback round
//! trip it is trying to measure. A `timerfd` armed with nanosecond precision is
//! registered in the same epoll set and wakes the loop when the next request is due.
//! How late requests still went out is reported as the send lag.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A one-shot monotonic timer the event loop can wait on.
#[derive(Debug)]
pub struct Pacer {
    fd: OwnedFd,
}

impl Pacer {
    /// Creates the timer and registers it with `registry` under `token`.
    pub fn new(registry: &Registry, token: Token) -> io::Result<Pacer> {
        // SAFETY: plain syscall; on success we own the returned descriptor.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        registry.register(&mut SourceFd(&fd.as_raw_fd()), token, Interest::READABLE)?;
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
        Ok(Pacer { fd })
    }

    /// Arms the timer to fire at `when` (at once if `when` has passed).
    ///
    /// The timer is relative, so the clock is read here, at the last moment: a
    /// clock read before the batch of sends that precedes this call would make the
    /// timer fire late by however long those sends took.
    pub fn arm(&self, when: Instant) -> io::Result<()> {
        // A zero it_value would disarm the timer; one nanosecond fires at once.
        let d = when
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: we own the descriptor; spec is a valid itimerspec.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Consumes the expiration count after the timer fired (so epoll reports the
    /// next one).
    pub fn clear(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into our buffer; EAGAIN (nothing to read) is fine.
        unsafe {
            libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len());
        }
    }
}

/// One thread's walk through the global open-loop schedule.
///
/// The schedule starts with the traffic, before the ramp; which requests are
/// measured is known only once the ramp has ended ([`Schedule::measure_from`]).
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    rate: f64,
    conns: u64,
    thread: u64,
    threads: u64,
    /// Number of connections this thread owns.
    local: u64,
    /// First request that is measured (due at or after the window opens); none
    /// until the window is known.
    first_measured: u64,
    /// One past the last request to send, when the run is bounded by a count.
    end: Option<u64>,
    round: u64,
    j: u64,
}

/// A request that fell due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Index of the connection among this thread's connections.
    pub local_conn: usize,
    pub intended: Instant,
    pub measured: bool,
}

impl Schedule {
    /// The schedule of thread `thread` of `threads`, starting at `start`.
    pub fn new(start: Instant, rate: f64, conns: usize, thread: usize, threads: usize) -> Schedule {
        let (conns, thread, threads) = (conns as u64, thread as u64, threads as u64);
        let local = (conns - thread).div_ceil(threads);
        Schedule {
            start,
            rate,
            conns,
            thread,
            threads,
            local,
            first_measured: u64::MAX,
            end: None,
            round: 0,
            j: 0,
        }
    }

    /// Requests due from `measure_start` on are measured; with `requests`, exactly
    /// that many (over all threads), then the schedule ends.
    pub fn measure_from(&mut self, measure_start: Instant, requests: Option<u64>) {
        let since = measure_start.saturating_duration_since(self.start);
        self.first_measured = (since.as_secs_f64() * self.rate).ceil() as u64;
        self.end = requests.map(|n| self.first_measured + n);
    }

    fn k(&self) -> u64 {
        self.round * self.conns + self.thread + self.j * self.threads
    }

    fn intended(&self, k: u64) -> Instant {
        self.start + Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// When the next request is due; `None` when this thread has sent its share.
    pub fn next_due(&self) -> Option<Instant> {
        let k = self.k();
        match self.end {
            Some(end) if k >= end => None,
            _ => Some(self.intended(k)),
        }
    }

    /// Takes the next request if it is due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Due> {
        let at = self.next_due()?;
        if at > now {
            return None;
        }
        let k = self.k();
        let due = Due {
            local_conn: self.j as usize,
            intended: at,
            measured: k >= self.first_measured,
        };
        self.j += 1;
        if self.j == self.local {
            self.j = 0;
            self.round += 1;
        }
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_split_the_schedule_exactly() {
        let start = Instant::now();
        let far = start + Duration::from_secs(100);
        let mut all = Vec::new();
        for t in 0..3 {
            let mut s = Schedule::new(start, 1000.0, 7, t, 3);
            s.measure_from(start + Duration::from_millis(10), Some(50));
            while let Some(d) = s.pop_due(far) {
                all.push((d.intended, t, d.local_conn * 3 + t, d.measured));
            }
        }
        // 10 warmup requests (10 ms at 1000/s) plus 50 measured.
        assert_eq!(all.len(), 60);
        assert_eq!(all.iter().filter(|x| x.3).count(), 50);
        all.sort();
        for (k, (at, _, conn, _)) in all.iter().enumerate() {
            assert_eq!(*conn, k % 7, "request {k} on the wrong connection");
            let want = start + Duration::from_secs_f64(k as f64 / 1000.0);
            assert_eq!(*at, want);
        }
    }

    #[test]
    fn nothing_is_due_early() {
        let start = Instant::now();
        let mut s = Schedule::new(start, 10.0, 1, 0, 1);
        assert!(s.pop_due(start).is_some());
        assert!(s.pop_due(start + Duration::from_millis(99)).is_none());
        assert!(s.pop_due(start + Duration::from_millis(100)).is_some());
    }
}
