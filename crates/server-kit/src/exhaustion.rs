//! What a server says when it runs out of something: once, with the limit it hit.
//!
//! A server that cannot get a descriptor (`EMFILE`), a task (`EAGAIN` from
//! `fork()` or `clone()`) or memory (`ENOMEM`) keeps running: it backs off and
//! retries, or drops the one client. The operator must still learn *which* limit
//! stopped it and *where*, and so must `socklab compare`'s c100k cell, which
//! reads the log to say why a model held fewer connections than it was offered.
//! Said on every retry (every [`RESOURCE_BACKOFF`](crate::accept::RESOURCE_BACKOFF))
//! it would be twenty lines a second burying the first, so [`say_once`] prints
//! each kind of error once per process, with the numbers that explain it:
//!
//! ```text
//! socklab nonblocking: accept: Too many open files (os error 24); 20000 descriptors open, RLIMIT_NOFILE 20000 (hard 20000): this process's descriptor limit; pausing accept for 50ms and retrying (said once)
//! socklab thread: cannot spawn a thread: Resource temporarily unavailable (os error 11); 16367 threads in this process, 65531 memory mappings of vm.max_map_count 65530, kernel.pid_max 32768, kernel.threads-max 192726, RLIMIT_NPROC 96363: at vm.max_map_count: the memory-mapping limit (a thread takes four mappings, its stack and signal stack with a guard page each); this client is dropped (said once)
//! ```
//!
//! A forked child has its own copy of the "said" flags: each process says it
//! once for itself.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// One bit per errno (63 stands for every larger one): said already.
static SAID: AtomicU64 = AtomicU64::new(0);

/// Prints `socklab MODEL: WHAT: ERR; CONTEXT; THEN (said once)` the first time
/// this process meets `err`'s errno, and nothing after. `model` may be empty
/// (a shared loop that does not know its model). Returns whether it printed.
pub fn say_once(model: &str, what: &str, err: &io::Error, then: &str) -> bool {
    let errno = err.raw_os_error().unwrap_or(0).clamp(0, 63) as u32;
    if SAID.fetch_or(1 << errno, Ordering::Relaxed) & (1 << errno) != 0 {
        return false;
    }
    let who = if model.is_empty() {
        "socklab".to_string()
    } else {
        format!("socklab {model}")
    };
    let context = explain(err).map_or(String::new(), |c| format!("; {c}"));
    eprintln!("{who}: {what}: {err}{context}; {then} (said once)");
    true
}

/// The limit behind `err`, with this process's numbers, when it is one of the
/// limits a server runs into.
fn explain(err: &io::Error) -> Option<String> {
    Some(match err.raw_os_error()? {
        libc::EMFILE => {
            let (soft, hard) = nofile();
            format!(
                "{} descriptors open, RLIMIT_NOFILE {soft} (hard {hard}): this process's \
                 descriptor limit",
                open_descriptors().map_or("?".into(), |n| n.to_string())
            )
        }
        libc::ENFILE => format!(
            "fs.file-max {}: the system's file table is full",
            proc_value("/proc/sys/fs/file-max")
        ),
        libc::EAGAIN => {
            let maps = mappings();
            let max_maps: Option<usize> = proc_value("/proc/sys/vm/max_map_count").parse().ok();
            // A thread takes four mappings: its stack and its signal stack, each
            // with a guard page. glibc reports a failed stack mmap as EAGAIN too.
            let which = match (maps, max_maps) {
                (Some(n), Some(max)) if n + MAPPINGS_SLACK >= max => {
                    "at vm.max_map_count: the memory-mapping limit (a thread takes four \
                     mappings, its stack and signal stack with a guard page each)"
                }
                _ => "a task limit",
            };
            format!(
                "{} threads in this process, {} memory mappings of vm.max_map_count {}, \
                 kernel.pid_max {}, kernel.threads-max {}, RLIMIT_NPROC {}: {which}",
                threads().map_or("?".into(), |n| n.to_string()),
                maps.map_or("?".into(), |n| n.to_string()),
                max_maps.map_or("?".into(), |n| n.to_string()),
                proc_value("/proc/sys/kernel/pid_max"),
                proc_value("/proc/sys/kernel/threads-max"),
                nproc()
            )
        }
        libc::ENOMEM | libc::ENOBUFS => "out of memory".to_string(),
        _ => return None,
    })
}

/// Mappings short of `vm.max_map_count` that still count as "at it" (a failed
/// spawn needed up to four).
const MAPPINGS_SLACK: usize = 16;

/// Memory mappings one thread takes: its stack and its signal stack, each with a
/// guard page (measured: 16,367 threads, 65,531 mappings).
pub const MAPPINGS_PER_THREAD: usize = 4;

/// Mappings kept for everything but the threads (allocator arenas, libraries,
/// the listener's and the counters' pages).
const MAPPINGS_RESERVE: usize = 1024;

/// How many more threads this process can start before its memory mappings
/// reach `vm.max_map_count`, keeping a reserve for everything else, and that
/// limit; `None` where /proc does not say. Past it a new thread cannot map its
/// signal stack, and std aborts the whole process ("failed to set up alternative
/// stack guard page"): not a client dropped, every client lost.
pub fn threads_within_mappings() -> Option<(usize, usize)> {
    let max: usize = proc_value("/proc/sys/vm/max_map_count").parse().ok()?;
    let used = mappings()?;
    let left = max.saturating_sub(used + MAPPINGS_RESERVE) / MAPPINGS_PER_THREAD;
    Some((left, max))
}

/// Memory mappings of this process (lines of /proc/self/maps).
fn mappings() -> Option<usize> {
    let maps = std::fs::read("/proc/self/maps").ok()?;
    Some(maps.iter().filter(|&&b| b == b'\n').count())
}

fn proc_value(path: &str) -> String {
    std::fs::read_to_string(path).map_or("?".into(), |s| s.trim().to_string())
}

/// Descriptors this process has open. Not by listing /proc/self/fd: at
/// `EMFILE` opening that directory fails too. `fcntl(F_GETFD)` on every number
/// below the soft limit asks without opening anything (20,000 cheap calls, once).
fn open_descriptors() -> Option<usize> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return None;
    }
    let below = r.rlim_cur.min(1 << 20) as libc::c_int;
    // SAFETY: F_GETFD only reads the descriptor's flags, or fails with EBADF.
    Some(
        (0..below)
            .filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1)
            .count(),
    )
}

/// Threads of this process (`Threads:` in /proc/self/status).
fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

fn nofile() -> (String, String) {
    limit(libc::RLIMIT_NOFILE)
}

fn nproc() -> String {
    limit(libc::RLIMIT_NPROC).0
}

/// A resource limit's soft and hard values, `unlimited` spelled out.
fn limit(resource: libc::__rlimit_resource_t) -> (String, String) {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(resource, &mut r) } != 0 {
        return ("?".into(), "?".into());
    }
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    (show(r.rlim_cur), show(r.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each errno is said once; the descriptor limit comes with its numbers.
    #[test]
    fn each_kind_is_said_once_with_its_limit() {
        let emfile = io::Error::from_raw_os_error(libc::EMFILE);
        assert!(say_once("test", "accept", &emfile, "retrying"));
        assert!(!say_once("test", "accept", &emfile, "retrying"));
        let text = explain(&emfile).unwrap();
        assert!(text.contains("descriptors open, RLIMIT_NOFILE"), "{text}");
        assert!(!text.starts_with('?'), "{text}");
        let eagain = io::Error::from_raw_os_error(libc::EAGAIN);
        let text = explain(&eagain).unwrap();
        assert!(text.contains("kernel.pid_max"), "{text}");
        assert!(
            text.contains("memory mappings of vm.max_map_count"),
            "{text}"
        );
        assert!(text.ends_with("a task limit"), "{text}");
        assert!(say_once("test", "spawn", &eagain, "dropped"));
        assert!(explain(&io::Error::from_raw_os_error(libc::ECONNRESET)).is_none());
    }
}
