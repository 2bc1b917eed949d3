//! The one table of socklab's server models, and the lines `socklab serve` prints.
//!
//! ripgrep keeps every flag once (`crates/core/flags/defs.rs`) and its parser, help
//! and man page all read that list. socklab does the same for its models: the
//! `socklab models` listing, the checks `socklab serve` makes, `socklab compare`'s
//! matrix, the criterion benches, the report's order and colours, and the
//! conformance and hardening suites all read [`MODELS`]. A new model or variant is
//! one row here, plus its crate (and its subcommand in `socklab serve`, which links
//! the crate).
//!
//! # Layout
//!
//! - [`MODELS`]: every model and variant, in teaching order, with what one client
//!   costs in it and how its concurrency is bounded ([`Shape`]).
//! - [`announce`]: the line `socklab serve` prints when it is ready (addresses and
//!   PID), written and parsed in one place.

pub mod announce;

pub use announce::Announce;

/// How a model's concurrency is bounded, apart from `--max-conns`: what a test or a
/// benchmark must know to give every client a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// One client at a time, whatever the flags (iterative).
    Serial,
    /// As many clients as `--max-conns` allows (fork, thread, the event loops).
    Elastic,
    /// A fixed set of `--workers`, fed by someone who checks the cap before handing
    /// a client over (pool's queue, prefork's fd passing).
    PoolQueue,
    /// A fixed set of `--workers`, each checking the cap and then blocking in its own
    /// `accept()`: the cap may be overshot by `workers - 1`.
    PoolAccept,
    /// `--loops N` independent event loops, each with its own `SO_REUSEPORT`
    /// listener and its share of `--max-conns`. The kernel picks a listener by
    /// hashing the client's address, not by which loop has room: a client can wait
    /// in a full loop's backlog while another loop is idle.
    Sharded,
}

impl Shape {
    /// Whether the model has a fixed set of workers (`--workers N`).
    pub fn pooled(self) -> bool {
        matches!(self, Shape::PoolQueue | Shape::PoolAccept)
    }
}

/// One server model or variant.
#[derive(Clone, Copy, Debug)]
pub struct Model {
    /// The name everything else uses: `socklab compare --models`, the report, the
    /// benches' `BenchmarkId`s, the test suites. A variant's name starts with its
    /// family's and a dash (`prefork-flock`).
    pub name: &'static str,
    /// The `socklab serve` arguments that run it: the subcommand (the family), then
    /// the variant's options. No tuning: that is [`Model::compare_args`].
    pub serve: &'static [&'static str],
    /// What `socklab compare` adds to run it in the matrix (pools get four workers:
    /// with the server pinned to one CPU, the default of one per CPU would be a pool
    /// of one, indistinguishable from the iterative server).
    pub compare_args: &'static [&'static str],
    /// One line for `socklab models`.
    pub summary: &'static str,
    /// What serving one more client costs in this model: the unit of concurrency.
    pub per_client: &'static str,
    pub shape: Shape,
    /// One server process holds a descriptor per client (threads, event loops), so a
    /// connection flood reaches its descriptor limit.
    pub fd_per_client: bool,
    /// The model has a UDP server. Per-client models (fork, thread) do not: UDP has
    /// no connections, so there is no client to give a process or thread.
    pub udp: bool,
    /// `socklab compare` runs it unless `--models` says otherwise; the others are
    /// variants, the design choices inside a model.
    pub default: bool,
    /// Its colour in every chart (Tableau 10 for the families).
    pub colour: (u8, u8, u8),
}

impl Model {
    /// The `socklab serve` subcommand: the model's family.
    pub fn family(&self) -> &'static str {
        self.serve[0]
    }
}

const WORKERS_4: &[&str] = &["--workers", "4"];

/// Every model and variant, in teaching order: from one client at a time to
/// completion-based I/O, each variant after its family.
pub const MODELS: &[Model] = &[
    Model {
        name: "iterative",
        serve: &["iterative"],
        compare_args: &[],
        summary: "one client at a time in one thread (the tutorial's first server; the natural UDP server)",
        per_client: "a turn: the others wait",
        shape: Shape::Serial,
        fd_per_client: false,
        udp: true,
        default: true,
        colour: (0x9C, 0x75, 0x5F),
    },
    Model {
        name: "fork",
        serve: &["fork"],
        compare_args: &[],
        summary: "fork() a process per client (the tutorial's multi-process server), children reaped and capped",
        per_client: "a process",
        shape: Shape::Elastic,
        fd_per_client: false,
        udp: false,
        default: true,
        colour: (0xE1, 0x57, 0x59),
    },
    Model {
        name: "prefork",
        serve: &["prefork"],
        compare_args: WORKERS_4,
        summary: "N processes forked up front, all blocking in accept() on one listener (Stevens serv02)",
        per_client: "a worker process, for as long as it stays",
        shape: Shape::PoolAccept,
        fd_per_client: false,
        udp: true,
        default: true,
        colour: (0xFF, 0x9D, 0xA7),
    },
    Model {
        name: "prefork-flock",
        serve: &["prefork", "--mode", "flock"],
        compare_args: WORKERS_4,
        summary: "prefork with a file lock around accept(): one child wakes per connection (Stevens serv03)",
        per_client: "a worker process, for as long as it stays",
        shape: Shape::PoolAccept,
        fd_per_client: false,
        udp: true,
        default: false,
        colour: (0xD3, 0x72, 0x95),
    },
    Model {
        name: "prefork-passfd",
        serve: &["prefork", "--mode", "passfd"],
        compare_args: WORKERS_4,
        summary: "prefork whose parent accepts and passes each descriptor to a child over SCM_RIGHTS (Stevens serv05)",
        per_client: "a worker process, for as long as it stays",
        shape: Shape::PoolQueue,
        fd_per_client: false,
        udp: true,
        default: false,
        colour: (0xB8, 0x5A, 0x7A),
    },
    Model {
        name: "thread",
        serve: &["thread"],
        compare_args: &[],
        summary: "one OS thread per client (the tutorial's multi-thread server), capped",
        per_client: "a thread",
        shape: Shape::Elastic,
        fd_per_client: true,
        udp: false,
        default: true,
        colour: (0x4E, 0x79, 0xA7),
    },
    Model {
        name: "pool",
        serve: &["pool"],
        compare_args: WORKERS_4,
        summary: "a fixed pool of worker threads fed by a bounded crossbeam channel",
        per_client: "a worker thread, for as long as it stays",
        shape: Shape::PoolQueue,
        fd_per_client: false,
        udp: true,
        default: true,
        colour: (0x76, 0xB7, 0xB2),
    },
    Model {
        name: "pool-accept",
        serve: &["pool", "--dispatch", "accept"],
        compare_args: WORKERS_4,
        summary: "a fixed pool of worker threads that each call accept() themselves",
        per_client: "a worker thread, for as long as it stays",
        shape: Shape::PoolAccept,
        fd_per_client: false,
        udp: true,
        default: false,
        colour: (0x4F, 0x92, 0x8C),
    },
    Model {
        name: "nonblocking",
        serve: &["nonblocking"],
        compare_args: &[],
        summary: "one thread, one epoll loop (mio): readiness, partial writes, timers, backpressure",
        per_client: "a slot in an event loop",
        shape: Shape::Elastic,
        fd_per_client: true,
        udp: true,
        default: true,
        colour: (0x59, 0xA1, 0x4F),
    },
    Model {
        name: "nonblocking-2loops",
        serve: &["nonblocking", "--loops", "2"],
        compare_args: &[],
        summary: "two epoll loops, one thread each, each with its own SO_REUSEPORT listener",
        per_client: "a slot in an event loop",
        shape: Shape::Sharded,
        fd_per_client: true,
        udp: true,
        default: false,
        colour: (0x3B, 0x78, 0x34),
    },
    Model {
        name: "workers",
        serve: &["workers"],
        // Two event loops in two processes: where compare pins the server to one
        // CPU, the default of one per CPU would be one worker, nonblocking with a
        // supervisor, and a crash would take every client.
        compare_args: &["--workers", "2"],
        summary: "N processes forked up front, each running one epoll loop on the listener they inherit (nginx, HAProxy)",
        per_client: "a slot in one worker's event loop",
        // The listener is shared, not hashed: a worker with room takes the next
        // client, so the cap holds exactly, as in one loop (see socklab-workers).
        shape: Shape::Elastic,
        // No one process holds a descriptor per client: each worker holds its own
        // clients' (a flood reaches the limit only past workers × RLIMIT_NOFILE).
        fd_per_client: false,
        udp: true,
        default: true,
        colour: (0xED, 0xC9, 0x48),
    },
    Model {
        name: "async",
        serve: &["async"],
        compare_args: &[],
        summary: "tokio tasks, one per connection, on the multi-thread (work-stealing) runtime",
        per_client: "a task",
        shape: Shape::Elastic,
        fd_per_client: true,
        udp: true,
        default: true,
        colour: (0xF2, 0x8E, 0x2B),
    },
    Model {
        name: "async-current-thread",
        serve: &["async", "--runtime", "current-thread"],
        compare_args: &[],
        summary: "tokio tasks, one per connection, on one thread (the current-thread runtime)",
        per_client: "a task",
        shape: Shape::Elastic,
        fd_per_client: true,
        udp: true,
        default: false,
        colour: (0xC9, 0x6A, 0x12),
    },
    Model {
        name: "uring",
        serve: &["uring"],
        compare_args: &[],
        summary: "a completion loop over io_uring: submit accept/recv/send, react to completions",
        per_client: "a slot in a completion loop",
        shape: Shape::Elastic,
        fd_per_client: true,
        udp: true,
        default: true,
        colour: (0xB0, 0x7A, 0xA1),
    },
    Model {
        name: "uring-2loops",
        serve: &["uring", "--loops", "2"],
        compare_args: &[],
        summary: "two io_uring loops, one thread and ring each, each with its own SO_REUSEPORT listener",
        per_client: "a slot in a completion loop",
        shape: Shape::Sharded,
        fd_per_client: true,
        udp: true,
        default: false,
        colour: (0x8A, 0x55, 0x7E),
    },
];

/// The row named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static Model> {
    MODELS.iter().find(|m| m.name == name)
}

/// The rows `socklab compare` runs by default.
pub fn defaults() -> impl Iterator<Item = &'static Model> {
    MODELS.iter().filter(|m| m.default)
}

/// The family a model name belongs to (`prefork-lock` -> `prefork`): the row's,
/// or for a name not in the table, the longest family it starts with and a dash.
pub fn family(name: &str) -> &str {
    if let Some(m) = find(name) {
        return m.family();
    }
    MODELS
        .iter()
        .map(Model::family)
        .filter(|f| {
            name.strip_prefix(f)
                .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|f| f.len())
        .unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names are unique; a variant's name starts with its family's; each family has
    /// exactly one default row, its first.
    #[test]
    fn the_table_is_consistent() {
        let mut names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), MODELS.len());
        for m in MODELS {
            assert!(
                m.name == m.family() || m.name.starts_with(&format!("{}-", m.family())),
                "{}",
                m.name
            );
            assert_eq!(m.default, m.name == m.family(), "{}", m.name);
            assert_eq!(m.shape.pooled(), m.compare_args == WORKERS_4, "{}", m.name);
        }
        assert_eq!(family("prefork-flock"), "prefork");
        assert_eq!(family("prefork-something-new"), "prefork");
        assert_eq!(family("brand-new"), "brand-new");
    }
}
