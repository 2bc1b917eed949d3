//! The server's process tree, sampled from /proc with the procfs crate.
//!
//! CPU time and context switches come from the server's own `getrusage` line,
//! printed on SIGUSR1 (exact for every thread, live or exited, and every reaped
//! child, see `server-kit/src/usage.rs`), plus its *live* children, read here:
//! [`live_children`]. What only /proc can tell is also what is alive: how many
//! processes and threads, and how much memory they hold. RSS counts a page once per process that maps it, so a
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
use socklab_server_kit::usage::TreeUsage;

/// How often the sampler looks at the tree during a cell.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);

/// What the tree held at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TreeSample {
    pub processes: u64,
    pub threads: u64,
    pub rss_bytes: u64,
    pub pss_bytes: u64,
    /// Descriptors open in all its processes (for a server that dies, the most
    /// connections it held is its peak less its idle count).
    pub fds: u64,
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

/// The processes under `root` (`root` included) with their /proc stat, those gone
/// meanwhile left out, and zombies too unless `zombies`.
fn processes(root: i32, zombies: bool) -> impl Iterator<Item = (Process, procfs::process::Stat)> {
    descendants(root).into_iter().filter_map(move |pid| {
        let process = Process::new(pid).ok()?;
        let stat = process.stat().ok()?;
        (zombies || stat.state != 'Z').then_some((process, stat))
    })
}

/// Samples the tree under `root` once.
pub fn sample(root: i32) -> TreeSample {
    let mut total = TreeSample::default();
    for (process, stat) in processes(root, false) {
        total.processes += 1;
        total.threads += stat.num_threads.max(0) as u64;
        total.rss_bytes += stat.rss * procfs::page_size();
        total.pss_bytes += pss_bytes(&process).unwrap_or(0);
        total.fds += process.fd_count().unwrap_or(0) as u64;
    }
    total
}

/// CPU time and context switches of every live process under `root`, `root`
/// itself left out: a forking server's children, which its own `getrusage` counts
/// only once it has reaped them.
///
/// CPU time is the scheduler's `sum_exec_runtime` (/proc/PID/schedstat, in ns: as
/// exact as `getrusage`, which derives its times from the same counter), split
/// into user and system in the proportion of the process's `utime`:`stime` ticks.
/// A child reaped between the server's line and this scan is counted in neither.
pub fn live_children(root: i32) -> TreeUsage {
    let mut total = TreeUsage::default();
    // A zombie counts: it has exited, but its time reaches the server's own
    // getrusage only once the server reaps it.
    for (process, stat) in processes(root, true).filter(|(p, _)| p.pid != root) {
        let (mut cpu_ns, mut vol, mut invol) = (0u64, 0u64, 0u64);
        let mut add = |sched: Option<u64>, status: Option<(u64, u64)>| {
            cpu_ns += sched.unwrap_or(0);
            let (v, i) = status.unwrap_or((0, 0));
            vol += v;
            invol += i;
        };
        let switches = |s: procfs::process::Status| {
            Some((s.voluntary_ctxt_switches?, s.nonvoluntary_ctxt_switches?))
        };
        if stat.num_threads <= 1 {
            add(
                process.schedstat().ok().map(|s| s.sum_exec_runtime),
                process.status().ok().and_then(switches),
            );
        } else if let Ok(tasks) = process.tasks() {
            for task in tasks.flatten() {
                add(
                    task.schedstat().ok().map(|s| s.sum_exec_runtime),
                    task.status().ok().and_then(switches),
                );
            }
        }
        let cpu_us = cpu_ns / 1_000;
        let ticks = stat.utime + stat.stime;
        let user_us = (cpu_us * stat.utime).checked_div(ticks).unwrap_or(0);
        total = total.plus(&TreeUsage {
            user_us,
            system_us: cpu_us - user_us,
            voluntary_ctx: vol,
            involuntary_ctx: invol,
        });
    }
    total
}

/// What the tree holds that a leak would make grow: processes, threads, open
/// descriptors, resident memory. Cheaper than [`sample`] (no page-table walk for
/// PSS), so a soak can take it often.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub processes: u64,
    pub threads: u64,
    pub fds: u64,
    pub rss_bytes: u64,
}

pub fn resources(root: i32) -> Resources {
    let mut total = Resources::default();
    for (process, stat) in processes(root, false) {
        total.processes += 1;
        total.threads += stat.num_threads.max(0) as u64;
        total.rss_bytes += stat.rss * procfs::page_size();
        total.fds += process.fd_count().unwrap_or(0) as u64;
    }
    total
}

/// The process under `root` with the most descriptors open: how many, and its
/// soft `RLIMIT_NOFILE` (`None`: unlimited or unreadable). What a process can
/// hold is its own table's limit, not the tree's sum: a forking server's
/// children each have their own.
pub fn fullest_fd_table(root: i32) -> Option<(u64, Option<u64>)> {
    processes(root, false)
        .filter_map(|(process, _)| {
            let fds = process.fd_count().ok()? as u64;
            let soft = process
                .limits()
                .ok()
                .and_then(|l| match l.max_open_files.soft_limit {
                    procfs::process::LimitValue::Value(v) => Some(v),
                    procfs::process::LimitValue::Unlimited => None,
                });
            Some((fds, soft))
        })
        .max_by_key(|(fds, _)| *fds)
}

/// The most memory mappings any process under `root` has (lines of
/// /proc/PID/maps): what `vm.max_map_count` limits, per process.
/// `None` when no live process is left (a zombie has no mappings).
pub fn most_mappings(root: i32) -> Option<u64> {
    descendants(root)
        .into_iter()
        .filter_map(|pid| {
            let maps = std::fs::read(format!("/proc/{pid}/maps")).ok()?;
            Some(maps.iter().filter(|&&b| b == b'\n').count() as u64)
        })
        .filter(|&n| n > 0)
        .max()
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
                max.fds = max.fds.max(s.fds);
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

    /// A child that burns CPU shows up in its parent's live children, precisely.
    #[test]
    fn live_children_count_a_busy_child() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("sh");
        std::thread::sleep(Duration::from_millis(600));
        let usage = live_children(std::process::id() as i32);
        let _ = child.kill();
        let _ = child.wait();
        assert!(usage.cpu() >= Duration::from_millis(20), "{usage}");
        assert!(usage.voluntary_ctx + usage.involuntary_ctx >= 1, "{usage}");
        assert!(live_children(child.id() as i32).cpu().is_zero());
    }

    #[test]
    fn counts_this_process_descriptors() {
        let before = resources(std::process::id() as i32);
        let files: Vec<_> = (0..5)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = resources(std::process::id() as i32);
        drop(files);
        assert!(after.fds >= before.fds + 5, "{before:?} -> {after:?}");
        assert!(after.threads >= 1 && after.rss_bytes > 0);
    }

    #[test]
    fn the_fullest_table_is_read_with_its_limit() {
        let me = std::process::id() as i32;
        let (fds, soft) = fullest_fd_table(me).unwrap();
        assert!(fds >= 3);
        assert!(soft.is_none_or(|s| s >= fds), "{fds} of {soft:?}");
        assert!(most_mappings(me).unwrap() > 5);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id() as i32);
        assert!(s.processes >= 1);
        assert!(s.threads >= 1);
        assert!(s.rss_bytes > 0);
        assert!(s.pss_bytes > 0);
    }
}
