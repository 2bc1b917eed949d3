//! Which limit stopped a model short of its target, read from what happened.
//!
//! The evidence, in the order it is believed:
//!
//! 1. **What the server said.** Every socklab server says once, on stderr, when
//!    it runs out of something (`server-kit::exhaustion`): `EMFILE` on `accept`
//!    is its descriptor limit, `ENFILE` the system's file table, `EAGAIN` from
//!    `fork()` or a thread spawn a task limit — or, when the process's memory
//!    mappings are at `vm.max_map_count`, that one (glibc reports a thread stack
//!    it could not map as `EAGAIN`: measured here, thread-per-client stopped at
//!    16,367 threads with 65,531 mappings, four per thread, and half of
//!    `kernel.pid_max` still free) — `ENOMEM` memory. Its own line is quoted, with
//!    its numbers.
//! 2. **What /proc showed as the window closed**: the fullest descriptor table
//!    of the server's processes against that process's `RLIMIT_NOFILE`, its
//!    threads against `kernel.pid_max`.
//! 3. **The model's shape**, when the server said nothing: one client at a time
//!    (iterative), one client per worker (prefork, pool) — it held what its
//!    design holds.
//! 4. **What the loaders said**: a connect that failed with `EADDRNOTAVAIL` ran
//!    out of ephemeral ports on the client side.
//!
//! Anything else is `unknown`, with the numbers that rule the usual limits out.

use socklab_models::Shape;
use socklab_report::schema::{Limit, LimitKind};

/// What is known about one c100k cell when its window closed.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    pub target: u64,
    /// Connections the server held (its own count).
    pub held: u64,
    /// Clients answered in the window (`None`: not known). A pool that accepts
    /// every client into its queue holds them all and serves its workers' worth.
    pub served: Option<u64>,
    /// The server's stderr.
    pub log: String,
    /// The server process with the most descriptors open: its count and its
    /// soft `RLIMIT_NOFILE`.
    pub fds: Option<(u64, Option<u64>)>,
    /// The most memory mappings of one server process, and `vm.max_map_count`.
    pub maps: Option<(u64, u64)>,
    /// Threads and processes of the server's tree.
    pub threads: u64,
    pub processes: u64,
    /// The machine's task ceiling and the tasks alive on it.
    pub pid_max: u64,
    pub tasks: u64,
    pub shape: Option<Shape>,
    /// The worker count the cell gave the model, if it takes one.
    pub workers: Option<usize>,
    /// The `--max-conns` the cell capped it at, when below the target (a process
    /// per client).
    pub cap: Option<usize>,
    /// Error messages the loaders reported.
    pub loader_errors: Vec<String>,
    /// The server died during the cell: its last words. `held` is then the most
    /// it held before.
    pub died: Option<String>,
}

/// Descriptors short of the limit that still count as "at it": the process's
/// own listener, epoll, eventfd and stdio.
const AT_LIMIT: u64 = 64;

/// The limit that stopped the model, with its evidence.
pub fn classify(e: &Evidence) -> Limit {
    let lines = said(&e.log);
    let served_all = e.served.is_none_or(|s| s >= e.target);
    let (kind, mut evidence) = if e.held >= e.target && served_all && e.died.is_none() {
        (
            LimitKind::None,
            format!("held all {} connections", e.target),
        )
    } else if let Some((kind, _)) = lines.first() {
        let quoted: Vec<String> = lines.iter().map(|(_, l)| format!("`{l}`")).collect();
        (
            task_or_mappings(*kind, &e.log, e),
            format!(
                "the server said: {}; {}",
                quoted.join(" and "),
                proc_numbers(e)
            ),
        )
    } else {
        from_shape_or_proc(e)
    };
    if let Some(how) = &e.died {
        evidence = format!(
            "it held at least {} connections (the most /proc saw, sampling every 200 ms), then \
             died (`{}`); {evidence}",
            e.held,
            shorten(how)
        );
    }
    Limit {
        kind,
        held: e.held,
        target: e.target,
        died: e.died.is_some(),
        evidence,
    }
}

/// Most lines of the server's log quoted as evidence.
const QUOTED: usize = 2;

/// The first lines of the server's log that name a resource it ran out of
/// (distinct, at most [`QUOTED`]), each with the limit it names.
fn said(log: &str) -> Vec<(LimitKind, String)> {
    let mut out: Vec<(LimitKind, String)> = Vec::new();
    for (kind, line) in log.lines().filter_map(said_in) {
        if out.len() < QUOTED && !out.iter().any(|(_, l)| *l == line) {
            out.push((kind, line));
        }
    }
    out
}

/// The limit one log line names, if it names one.
fn said_in(line: &str) -> Option<(LimitKind, String)> {
    // Thread per client lowers its own cap to what its mappings allow.
    if line.contains("lowered to") && line.contains("vm.max_map_count") {
        return Some((LimitKind::Mappings, shorten(line)));
    }
    const ERRNOS: &[(&str, LimitKind)] = &[
        ("(os error 24)", LimitKind::Fds),
        ("(os error 23)", LimitKind::FileTable),
        ("(os error 12)", LimitKind::Memory),
        ("(os error 105)", LimitKind::Memory),
    ];
    let kind = ERRNOS
        .iter()
        .find(|(needle, _)| line.contains(needle))
        .map(|(_, k)| *k)
        .or_else(|| {
            // EAGAIN means "no task" only from a fork or a thread spawn.
            let task = ["fork", "spawn", "clone", "thread", "worker"]
                .iter()
                .any(|w| line.contains(w));
            (line.contains("(os error 11)") && task).then_some(LimitKind::Tasks)
        })?;
    Some((kind, shorten(line)))
}

/// Mappings short of `vm.max_map_count` that still count as "at it".
const MAPS_SLACK: u64 = 16;

/// A task limit said as `EAGAIN`, or memory said as `ENOMEM` (a new thread that
/// could not `mprotect` its signal stack's guard page), is the mapping limit
/// when the process's mappings were at `vm.max_map_count`, as the server's own
/// log or /proc says.
fn task_or_mappings(kind: LimitKind, log: &str, e: &Evidence) -> LimitKind {
    let at_max =
        log.contains("at vm.max_map_count") || e.maps.is_some_and(|(n, max)| n + MAPS_SLACK >= max);
    if matches!(kind, LimitKind::Tasks | LimitKind::Memory) && at_max {
        LimitKind::Mappings
    } else {
        kind
    }
}

/// No error said: the design's own bound, a limit /proc shows, or the loaders'.
fn from_shape_or_proc(e: &Evidence) -> (LimitKind, String) {
    let numbers = proc_numbers(e);
    if let Some((fds, Some(limit))) = e.fds {
        if fds + AT_LIMIT >= limit {
            return (
                LimitKind::Fds,
                format!("no error said, but {numbers}: at its descriptor limit"),
            );
        }
    }
    if e.pid_max > 0 && e.tasks + AT_LIMIT >= e.pid_max {
        return (
            LimitKind::Tasks,
            format!("no error said, but {numbers}: at the machine's task limit"),
        );
    }
    if let Some(cap) = e.cap.filter(|&c| e.held >= c as u64) {
        return (
            LimitKind::Cap,
            format!(
                "no error said: it makes a process per client, and the cell capped it at {cap} \
                 (--max-conns); it held {}",
                e.held
            ),
        );
    }
    match (e.shape, e.workers) {
        (Some(Shape::Serial), _) => {
            return (
                LimitKind::OneAtATime,
                format!(
                    "no error said: it serves one client at a time and held {}; the others \
                     waited in the listen backlog or for a connection",
                    e.held
                ),
            )
        }
        (Some(s), Some(w)) if s.pooled() => {
            let queued = match e.served {
                Some(n) if e.held > n => format!(
                    " and served {n}: the other {} it accepted waited in its queue",
                    e.held - n
                ),
                _ => String::new(),
            };
            return (
                LimitKind::Workers,
                format!(
                    "no error said: one client per worker, and it had {w} workers; it held {}{queued}",
                    e.held
                ),
            );
        }
        _ => {}
    }
    if let Some(m) = e.loader_errors.iter().find(|m| m.contains("(os error 99)")) {
        return (
            LimitKind::Ports,
            format!("the loaders said: `{}`; {numbers}", shorten(m)),
        );
    }
    (
        LimitKind::Unknown,
        format!("no error said by the server; {numbers}"),
    )
}

/// The server's numbers from /proc, in words.
fn proc_numbers(e: &Evidence) -> String {
    if e.died.is_some() {
        // Gone by the close: only the sampler's peak is left.
        return format!(
            "at its peak it had {} threads in {}; the machine's kernel.pid_max is {}",
            e.threads,
            processes(e.processes),
            e.pid_max
        );
    }
    let fds = match e.fds {
        Some((n, Some(limit))) => {
            format!("its fullest process had {n} of {limit} descriptors open")
        }
        Some((n, None)) => format!("its fullest process had {n} descriptors open"),
        None => "its descriptors were not read".to_string(),
    };
    let maps = match e.maps {
        Some((n, max)) => format!("; {n} memory mappings in one process of vm.max_map_count {max}"),
        None => String::new(),
    };
    format!(
        "{fds}{maps}; {} threads in {}; {} tasks on the machine of kernel.pid_max {}",
        e.threads,
        processes(e.processes),
        e.tasks,
        e.pid_max
    )
}

fn processes(n: u64) -> String {
    if n == 1 {
        "1 process".to_string()
    } else {
        format!("{n} processes")
    }
}

/// A log line without its `(said once)` tail, at most 400 characters.
fn shorten(line: &str) -> String {
    let line = line.trim().trim_end_matches(" (said once)");
    match line.char_indices().nth(400) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn short_of(held: u64) -> Evidence {
        Evidence {
            target: 100_000,
            held,
            fds: Some((held + 8, Some(20_000))),
            threads: 3,
            processes: 1,
            pid_max: 32_768,
            tasks: 400,
            shape: Some(Shape::Elastic),
            ..Evidence::default()
        }
    }

    const EMFILE: &str = "socklab nonblocking: accept: Too many open files (os error 24); 20000 \
        descriptors open, RLIMIT_NOFILE 20000 (hard 20000): this process's descriptor limit; \
        pausing accept for 50ms and retrying (said once)";

    /// Each errno the server says maps to its limit, quoted; EAGAIN only from a
    /// fork or a spawn.
    #[test]
    fn the_servers_own_line_names_the_limit() {
        let mut e = short_of(19_992);
        e.log = format!("socklab: nonblocking serving tcp=127.0.0.1:1 pid=9\n{EMFILE}\n");
        let l = classify(&e);
        assert_eq!(
            (l.kind, l.held, l.target),
            (LimitKind::Fds, 19_992, 100_000)
        );
        assert!(
            l.evidence.contains("Too many open files (os error 24)"),
            "{l:?}"
        );
        assert!(l.evidence.contains("20000 of 20000 descriptors"), "{l:?}");
        assert!(!l.evidence.contains("said once"), "{l:?}");
        for (line, kind) in [
            ("socklab thread: cannot spawn a thread: Resource temporarily unavailable (os error 11); …", LimitKind::Tasks),
            ("socklab fork: fork() failed: Resource temporarily unavailable (os error 11)", LimitKind::Tasks),
            ("socklab async: accept: Cannot allocate memory (os error 12)", LimitKind::Memory),
            ("socklab: accept: Too many open files in system (os error 23)", LimitKind::FileTable),
        ] {
            e.log = line.to_string();
            assert_eq!(classify(&e).kind, kind, "{line}");
        }
        e.log = "socklab uring: read: Resource temporarily unavailable (os error 11)".into();
        assert_ne!(classify(&e).kind, LimitKind::Tasks);
        // EAGAIN from a spawn, with the process's mappings at vm.max_map_count.
        e.log = "socklab thread: cannot spawn a thread: Resource temporarily unavailable (os error 11); 16367 threads".into();
        e.maps = Some((65_531, 65_530));
        let l = classify(&e);
        assert_eq!(l.kind, LimitKind::Mappings, "{l:?}");
        assert!(l.evidence.contains("65531 memory mappings"), "{l:?}");
        e.maps = Some((200, 65_530));
        assert_eq!(classify(&e).kind, LimitKind::Tasks);
        // A new thread that cannot guard its signal stack panics, and the panic
        // cannot unwind: the server dies. Its log says both.
        e.log = "thread 'client' (3740) panicked at library/std/src/sys/pal/unix/stack_overflow.rs:240:13:\n\
                 failed to set up alternative stack guard page: Cannot allocate memory (os error 12)\n\
                 socklab thread: cannot spawn a thread: Resource temporarily unavailable (os error 11); 16375 threads in this process, 65532 memory mappings of vm.max_map_count 65530: at vm.max_map_count: the memory-mapping limit (said once)\n\
                 fatal runtime error: failed to initiate panic, error 5, aborting".into();
        (e.maps, e.held) = (None, 16_370);
        e.died = Some("fatal runtime error: failed to initiate panic, error 5, aborting".into());
        let l = classify(&e);
        assert_eq!(
            (l.kind, l.died, l.held),
            (LimitKind::Mappings, true, 16_370),
            "{l:?}"
        );
        assert!(
            l.evidence.starts_with("it held at least 16370 connections"),
            "{l:?}"
        );
        assert!(
            l.evidence.contains("then died (`fatal runtime error"),
            "{l:?}"
        );
        assert!(l.evidence.contains("`failed to set up alternative stack guard page: Cannot allocate memory (os error 12)` and `socklab thread: cannot spawn"), "{l:?}");
    }

    /// Thread per client lowers its own cap below vm.max_map_count and says so.
    #[test]
    fn a_cap_lowered_to_the_mappings_is_the_mapping_limit() {
        let mut e = short_of(16_124);
        e.log = "socklab thread: --max-conns 100000 lowered to 16124: a thread takes 4 memory \
                 mappings and vm.max_map_count is 65530; past it a new thread cannot map its \
                 signal stack and the whole process aborts"
            .into();
        let l = classify(&e);
        assert_eq!((l.kind, l.died), (LimitKind::Mappings, false), "{l:?}");
        assert!(l.evidence.contains("lowered to 16124"), "{l:?}");
    }

    /// Held everything: nothing stopped it, whatever the log says.
    #[test]
    fn holding_the_target_is_no_limit() {
        let mut e = short_of(100_000);
        e.log = EMFILE.to_string();
        assert_eq!(classify(&e).kind, LimitKind::None);
    }

    /// Silent servers: /proc at the limit, else the model's shape, else the
    /// loaders' ports, else unknown with the numbers.
    #[test]
    fn a_silent_server_is_read_from_proc_and_its_shape() {
        let mut e = short_of(19_990);
        e.fds = Some((19_990, Some(20_000)));
        assert_eq!(classify(&e).kind, LimitKind::Fds);
        let mut e = short_of(1_000);
        e.tasks = 32_760;
        assert_eq!(classify(&e).kind, LimitKind::Tasks);
        let mut e = short_of(1);
        e.shape = Some(Shape::Serial);
        assert_eq!(classify(&e).kind, LimitKind::OneAtATime);
        let mut e = short_of(1_000);
        (e.shape, e.workers) = (Some(Shape::PoolAccept), Some(1_000));
        let l = classify(&e);
        assert_eq!(l.kind, LimitKind::Workers);
        assert!(l.evidence.contains("1000 workers"), "{l:?}");
        // A queue in front of the workers holds every client and serves a few.
        let mut e = short_of(1_500);
        (e.target, e.served) = (1_500, Some(1_000));
        (e.shape, e.workers) = (Some(Shape::PoolQueue), Some(1_000));
        let l = classify(&e);
        assert_eq!(l.kind, LimitKind::Workers, "{l:?}");
        assert!(
            l.evidence
                .contains("the other 500 it accepted waited in its queue"),
            "{l:?}"
        );
        let mut e = short_of(1_000);
        e.cap = Some(1_000);
        let l = classify(&e);
        assert_eq!(l.kind, LimitKind::Cap, "{l:?}");
        assert!(l.evidence.contains("capped it at 1000"), "{l:?}");
        let mut e = short_of(50_000);
        e.fds = Some((5_000, Some(20_000)));
        let l = classify(&e);
        assert_eq!(l.kind, LimitKind::Unknown);
        assert!(l.evidence.contains("5000 of 20000"), "{l:?}");
        e.loader_errors =
            vec!["connect to 127.0.0.1:1: Cannot assign requested address (os error 99)".into()];
        assert_eq!(classify(&e).kind, LimitKind::Ports);
    }
}
