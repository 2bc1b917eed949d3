//! The server's process tree, sampled from /proc with the procfs crate.
//!
//! CPU time and context switches come from the server's own `getrusage` line at
//! exit (exact for every thread and reaped child, see `server-kit/src/usage.rs`);
//! what only /proc can tell is what is *alive*: how many processes and threads, and
//! how much memory they hold. RSS counts a page once per process that maps it, so a
//! forking server's shared pages are counted again in every child; PSS divides each
//! shared page among the processes sharing it, so the tree's PSS is what it really
//! costs. Reading `smaps_rollup` walks page tables, so memory is sampled less often
//! than the cheap counts.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use procfs::process::Process;

/// How often the sampler looks at the tree during a cell.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// What the tree held at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSample {
    pub processes: u64,
    pub threads: u64,
    pub rss_bytes: u64,
    pub pss_bytes: u64,
}

/// Every PID whose ancestry leads to `root`, `root` included.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(all) = procfs::process::all_processes() {
        for process in all.flatten() {
            if let Ok(stat) = process.stat() {
                children.entry(stat.ppid).or_default().push(stat.pid);
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        if let Some(kids) = children.get(&tree[i]) {
            tree.extend(kids);
        }
        i += 1;
    }
    tree
}

/// Samples the tree under `root` once.
pub fn sample(root: i32) -> TreeSample {
    let mut total = TreeSample::default();
    for pid in descendants(root) {
        let Ok(process) = Process::new(pid) else {
            continue;
        };
        let Ok(stat) = process.stat() else { continue };
        if stat.state == 'Z' {
            continue;
        }
        total.processes += 1;
        total.threads += stat.num_threads.max(0) as u64;
        total.rss_bytes += stat.rss * procfs::page_size();
        total.pss_bytes += pss_bytes(&process).unwrap_or(0);
    }
    total
}

fn pss_bytes(process: &Process) -> Option<u64> {
    let rollup = process.smaps_rollup().ok()?;
    let map = rollup.memory_map_rollup.0.first()?;
    map.extension.map.get("Pss").copied()
}

/// A background thread that samples the tree until stopped, keeping the maxima.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<TreeSample>,
}

impl Sampler {
    pub fn start(root: i32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut max = TreeSample::default();
            loop {
                let s = sample(root);
                max.processes = max.processes.max(s.processes);
                max.threads = max.threads.max(s.threads);
                max.rss_bytes = max.rss_bytes.max(s.rss_bytes);
                max.pss_bytes = max.pss_bytes.max(s.pss_bytes);
                if flag.load(Ordering::Relaxed) {
                    return max;
                }
                std::thread::sleep(SAMPLE_INTERVAL);
            }
        });
        Sampler { stop, handle }
    }

    /// Stops sampling (after one last sample) and returns the maxima.
    pub fn finish(self) -> TreeSample {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id() as i32);
        assert!(s.processes >= 1);
        assert!(s.threads >= 1);
        assert!(s.rss_bytes > 0);
        assert!(s.pss_bytes > 0);
    }
}
