//! What the kernel holds for the machine's sockets and tasks, read from /proc
//! before a c100k cell and as its window closes.
//!
//! - `/proc/net/sockstat`, `TCP:` line: `inuse` sockets (every state but
//!   TIME_WAIT; with both ends on this machine, two per connection) and `mem`,
//!   the pages of socket buffers in use. An idle connection holds no buffer, so
//!   `mem` barely moves however many are open; what each socket costs lives in
//!   slab caches (TCP, sock_inode_cache, filp, dentry, epoll items: about 4 KiB a
//!   socket), which only `/proc/meminfo`'s `Slab:` shows — for the whole machine,
//!   other work included.
//! - `kernel.pid_max` and the tasks alive (`/proc/loadavg`'s fourth field), the
//!   ceiling every thread and process of the machine shares.

use std::path::Path;

/// Bytes in a page of socket buffer memory (`sockstat`'s `mem` counts pages).
pub const PAGE: u64 = 4096;

/// One reading of the machine's socket and task counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kernel {
    /// TCP sockets in use (not TIME_WAIT) and in TIME_WAIT.
    pub tcp_inuse: u64,
    pub tcp_tw: u64,
    /// Pages of TCP socket buffers.
    pub tcp_mem_pages: u64,
    /// Slab memory of the whole machine, bytes.
    pub slab_bytes: u64,
    /// Tasks (threads and processes) alive on the machine.
    pub tasks: u64,
    pub pid_max: u64,
}

impl Kernel {
    /// Reads it now; a file that cannot be read leaves its fields at zero.
    pub fn read() -> Kernel {
        let text = |p: &str| std::fs::read_to_string(Path::new(p)).unwrap_or_default();
        let mut k = Kernel::default();
        if let Some((inuse, tw, mem)) = sockstat_tcp(&text("/proc/net/sockstat")) {
            (k.tcp_inuse, k.tcp_tw, k.tcp_mem_pages) = (inuse, tw, mem);
        }
        k.slab_bytes = meminfo_kib(&text("/proc/meminfo"), "Slab").unwrap_or(0) * 1024;
        k.tasks = loadavg_tasks(&text("/proc/loadavg")).unwrap_or(0);
        k.pid_max = text("/proc/sys/kernel/pid_max").trim().parse().unwrap_or(0);
        k
    }
}

/// `inuse`, `tw` and `mem` of the `TCP:` line of /proc/net/sockstat.
pub fn sockstat_tcp(text: &str) -> Option<(u64, u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("TCP:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let value = |key: &str| -> Option<u64> {
        let i = words.iter().position(|w| *w == key)?;
        words.get(i + 1)?.parse().ok()
    };
    Some((value("inuse")?, value("tw")?, value("mem")?))
}

/// A `/proc/meminfo` field in kB.
pub fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The tasks alive, from `/proc/loadavg` (`0.52 0.58 0.59 6/150 12345`: 150).
pub fn loadavg_tasks(text: &str) -> Option<u64> {
    text.split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let sockstat = "sockets: used 1029\nTCP: inuse 13 orphan 0 tw 4 alloc 999 mem 77\nUDP: inuse 0 mem 215\n";
        assert_eq!(sockstat_tcp(sockstat), Some((13, 4, 77)));
        assert_eq!(sockstat_tcp("UDP: inuse 0"), None);
        let meminfo =
            "MemTotal:       24683612 kB\nSlab:            1126260 kB\nSReclaimable:     900 kB\n";
        assert_eq!(meminfo_kib(meminfo, "Slab"), Some(1_126_260));
        assert_eq!(meminfo_kib(meminfo, "SUnreclaim"), None);
        assert_eq!(loadavg_tasks("4.17 3.41 3.94 6/150 19388\n"), Some(150));
        let now = Kernel::read();
        assert!(now.pid_max > 0 && now.tasks > 0, "{now:?}");
    }
}
