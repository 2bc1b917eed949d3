//! What each scenario tests and what each model's design predicts, in words.
//!
//! This is the only place the report states expectations. They are never printed
//! as findings: [`crate::compare::pair`] attaches an expectation's `because` only
//! when the measured ranges are apart and point the predicted way.

use std::borrow::Cow;

use crate::aggregate::{Better, Unit, Words};
use crate::compare::Expect;

/// A paragraph on what a scenario tests and what each design should do in it.
pub fn intro(scenario: &str) -> Option<&'static str> {
    Some(match scenario {
        "scaling" => {
            "Each connection is a closed loop: send a message, wait for the uppercased \
             reply, send the next. The number of connections grows by tens. With one \
             connection every model sits at the loopback floor: the round trip, not the \
             server, is the cost. As connections grow the designs separate. `iterative` \
             serves one client at a time, so the others wait in the listen backlog. \
             `fork` and `thread` create one process or thread per client: memory grows \
             with every connection, and the kernel's scheduler does the multiplexing \
             (context switches). `prefork` and `pool` cap the number of processes or \
             threads, so clients beyond the cap wait for a free worker. `nonblocking` \
             (epoll), `async` (tokio) and `uring` (io_uring) keep a small state per \
             connection and multiplex in user space. On a 2-CPU loopback both sides \
             saturate from about 10 connections, so throughput differs little; memory \
             per connection and the latency tail carry the lesson."
        }
        "curve" => {
            "Open loop at rising offered rates, a fixed number of connections: the \
             latency-vs-load curve serious server benchmarks draw (wrk2, mutilate's \
             scan). Each step offers 60 % more requests per second than the one before, \
             sent on schedule whether or not replies have come, and every latency is \
             charged from its intended send time. At first the achieved rate follows the \
             offered one and the tail stays flat; at the knee the server stops keeping \
             up, a queue builds, and p99 bends upward. Saturation throughput on two CPUs \
             measures the load generator as much as the server; the knee, and the server \
             CPU each request cost on the way to it, measure the server."
        }
        "churn" => {
            "Every connection carries one request and is closed: the cost of setting up \
             a connection dominates. `fork` pays a `fork()` (copying page tables) and a \
             reap per connection, `thread` a `clone()` and a stack. `prefork` and `pool` \
             created their workers in advance and pay only `accept()`. The event-driven \
             models register the new socket with their loop."
        }
        "cpu" => {
            "Each request burns CPU on the server before it is answered. Models that run \
             requests on several threads or processes can use several cores. A single \
             event loop uses one, and while it computes every other client waits. \
             Whether more cores were available depends on the pinning stated above."
        }
        "sleep" => {
            "Each request waits (without using CPU) before it is answered, like a call to \
             a slow database. Blocking models block a whole thread or process per waiting \
             request. `iterative` blocks its only one. A `pool` can have at most as many \
             requests waiting as it has workers. An event loop must set a timer and keep \
             serving other sockets while the timer runs."
        }
        "slow" => {
            "A few clients dribble their request a byte at a time while normal clients \
             want service. A server that gives a slow client its own thread or process \
             is unaffected. One whose workers block on the slow client's reads stalls \
             (`iterative` entirely, a `pool` once slow clients hold every worker). An \
             event loop reads whatever has arrived and moves on. The figures below are \
             the normal clients' numbers."
        }
        "chaos" => {
            "With the opt-in chaos flag, one request makes its handler crash. In a \
             process-per-client model the crash ends one child process and loses one \
             client. In a model where every client shares one process (threads, a pool, \
             an event loop, a runtime) the crash ends the whole server and every \
             connection it held. This is fault isolation, and it is the classic argument \
             for processes."
        }
        "udp" => {
            "Each request is one datagram and each reply one datagram: there is no \
             connection to accept, so the per-connection machinery that separates the \
             models over TCP has nothing to do. Differences here come from how each model \
             waits for and hands out datagrams."
        }
        "c100k" => {
            "The C10K problem, ten times over: 100,000 clients connected at once, mostly \
             idle — each sends one small request every ten seconds, 10,000 requests per \
             second in all, as the users of a chat or push service do. Throughput is not the \
             test; holding is. Every connection is a descriptor in some process, a socket in \
             the kernel, and whatever the model keeps per client: a slot in an event loop, a \
             task, a thread with its stacks, a process. So each model meets a limit, and which \
             one is the lesson. One process may hold only as many descriptors as its \
             `RLIMIT_NOFILE` allows, so a single-process model stops there however cheap its \
             connections are. A thread per client also needs memory mappings for its stacks \
             (`vm.max_map_count` per process) and a task of the machine's `kernel.pid_max`; \
             a one-client-per-worker design holds as many clients as it has workers. Going \
             past one process's descriptors takes several processes with tables of their own: \
             the load generator does exactly that, one process and one source address per \
             18,000 clients. Where a model stopped is read from what its server said \
             (`accept: Too many open files`, a thread it could not spawn) and from /proc as \
             the window closed, not guessed."
        }
        _ => return None,
    })
}

/// The design's predictions for one scenario and metric (`target`: a metric
/// name from [`crate::figures::Target::key`]). `multicore` says whether the
/// server could use more than one CPU in this run: predictions about spreading
/// CPU work over cores only hold then.
pub fn expectations(scenario: &str, target: &str, multicore: bool) -> Vec<Expect> {
    EXPECTATIONS
        .iter()
        .filter(|(s, t, needs_cores, _)| {
            *s == scenario && *t == target && (multicore || !needs_cores)
        })
        .map(|(_, _, _, e)| *e)
        .collect()
}

const fn expect(higher: &'static str, lower: &'static str, because: &'static str) -> Expect {
    Expect {
        higher,
        lower,
        because,
    }
}

const PAGE_TABLES: &str = "each process has its own page tables, kernel task and private copy \
     of every page it writes (copy-on-write), while a thread shares one address space and \
     costs little more than its stack";
const THREAD_VS_TASK: &str = "a thread needs a stack and a kernel task, while the event-driven \
     model keeps only a buffer and a small state machine per connection";
const TASK_BUFFER: &str = "each async connection's task owns a 16 KiB read buffer (and its \
     future's state) for as long as the connection lives, while the epoll loop reads every \
     connection into one buffer it shares among them";
const WAKEUPS: &str = "the kernel has to switch to whichever thread owns a ready socket, while \
     the event loop picks up many ready sockets per `epoll_wait` and sleeps only when none is ready";
const FORK_COST: &str = "`fork()` copies the parent's page tables for every connection and the \
     child must be reaped, while a thread's `clone()` shares the address space";
const PREFORKED: &str = "prefork's processes exist before the client connects: no `fork()` per \
     connection";
const ONE_AT_A_TIME: &str = "the iterative server sleeps with its only thread, so requests are \
     served one sleep at a time";
const TIMER: &str = "the event loop sets a timer for each sleeping request and serves other \
     sockets meanwhile";
const POOL_CAP: &str = "a pool of N workers can be asleep in at most N requests at once";
const SLOW_HOLDS: &str = "a slow client holds the iterative server's only loop until its \
     request is complete, and normal clients wait behind it";
const SLOW_READS: &str = "the event loop reads whatever bytes have arrived and moves on to other \
     sockets, where the iterative server waits for the slow client";
const POOL_HELD: &str = "each slow client occupies a pool worker while it dribbles, while the \
     thread model gives every client a thread of its own";
pub const CRASH: &str = "a crash in one thread ends the whole process and every connection it \
     holds, while a crashing child process takes only its own client";
pub const PARENT_SAFE: &str = "the forking server's parent never runs handler code, so a crashing \
     child cannot take it down";
pub const CORES: &str = "the kernel runs the threads on every CPU the server may use, while one \
     event loop uses one";

/// (scenario, target, needs more than one server CPU, prediction).
const EXPECTATIONS: &[(&str, &str, bool, Expect)] = &[
    (
        "scaling",
        "throughput",
        false,
        expect("nonblocking", "thread", WAKEUPS),
    ),
    (
        "scaling",
        "p99",
        false,
        expect("thread", "nonblocking", WAKEUPS),
    ),
    (
        "scaling",
        "pss_per_conn",
        false,
        expect("fork", "thread", PAGE_TABLES),
    ),
    (
        "scaling",
        "pss_per_conn",
        false,
        expect("async", "nonblocking", TASK_BUFFER),
    ),
    (
        "scaling",
        "pss_per_conn",
        false,
        expect("thread", "async", THREAD_VS_TASK),
    ),
    (
        "scaling",
        "pss_per_conn",
        false,
        expect("thread", "nonblocking", THREAD_VS_TASK),
    ),
    (
        "scaling",
        "cpu_per_request",
        false,
        expect("thread", "nonblocking", WAKEUPS),
    ),
    (
        "scaling",
        "ctx_per_request",
        false,
        expect("thread", "nonblocking", WAKEUPS),
    ),
    (
        "churn",
        "connects_per_s",
        false,
        expect("thread", "fork", FORK_COST),
    ),
    (
        "churn",
        "connects_per_s",
        false,
        expect("prefork", "fork", PREFORKED),
    ),
    (
        "churn",
        "connect_p50",
        false,
        expect("fork", "thread", FORK_COST),
    ),
    (
        "churn",
        "connect_p50",
        false,
        expect("fork", "prefork", PREFORKED),
    ),
    (
        "cpu",
        "throughput",
        true,
        expect("thread", "nonblocking", CORES),
    ),
    (
        "cpu",
        "throughput",
        true,
        expect("pool", "iterative", CORES),
    ),
    (
        "sleep",
        "throughput",
        false,
        expect("thread", "iterative", ONE_AT_A_TIME),
    ),
    (
        "sleep",
        "throughput",
        false,
        expect("nonblocking", "iterative", TIMER),
    ),
    (
        "sleep",
        "throughput",
        false,
        expect("thread", "pool", POOL_CAP),
    ),
    (
        "sleep",
        "p99",
        false,
        expect("iterative", "thread", ONE_AT_A_TIME),
    ),
    (
        "sleep",
        "p99",
        false,
        expect("iterative", "nonblocking", TIMER),
    ),
    (
        "slow",
        "normal_p99_us",
        false,
        expect("iterative", "thread", SLOW_HOLDS),
    ),
    (
        "slow",
        "normal_p99_us",
        false,
        expect("iterative", "nonblocking", SLOW_READS),
    ),
    (
        "slow",
        "normal_p99_us",
        false,
        expect("pool", "thread", POOL_HELD),
    ),
    (
        "slow",
        "p99",
        false,
        expect("iterative", "thread", SLOW_HOLDS),
    ),
    (
        "slow",
        "p99",
        false,
        expect("iterative", "nonblocking", SLOW_READS),
    ),
    (
        "slow",
        "throughput",
        false,
        expect("thread", "iterative", SLOW_HOLDS),
    ),
    (
        "chaos",
        "other_clients_lost",
        false,
        expect("thread", "fork", CRASH),
    ),
    (
        "chaos",
        "other_clients_lost",
        false,
        expect("pool", "prefork", CRASH),
    ),
];

/// How a scenario-specific figure (`Cell::extra`) is named and shown.
#[derive(Debug, Clone)]
pub struct ExtraInfo {
    pub words: Words,
    pub unit: Unit,
    /// 0/1 per repeat (e.g. `server_survived`): shown as "k/n repeats".
    pub flag: bool,
    /// An outcome that repeats exactly (clients lost in a crash): compared on one
    /// repeat, unlike a timed figure.
    pub counted: bool,
    /// One line for the report's notes under the table.
    pub explain: Cow<'static, str>,
    /// Which way it improves (fewer clients lost, more served); `None` for what
    /// only describes the scenario (how many slow clients it had) or an extra the
    /// report does not know.
    pub better: Option<Better>,
}

/// Names and units for the extras the report knows; anything else is shown under
/// its own name, with a unit guessed from its suffix (`_us`, `_rps`, `_bytes`).
pub fn extra_info(name: &str) -> ExtraInfo {
    let known =
        |header: &'static str, verb, comparative, noun, unit, flag, better, explain| ExtraInfo {
            counted: matches!(header, "other clients lost" | "server survived"),
            words: Words {
                header: Cow::Borrowed(header),
                axis: Cow::Borrowed(header),
                verb,
                comparative,
                noun: Cow::Borrowed(noun),
                // The header without its unit: "other clients lost ranged from ...".
                subject: Cow::Borrowed(header.split(" (").next().unwrap_or(header)),
            },
            unit,
            flag,
            explain: Cow::Borrowed(explain),
            better,
        };
    match name {
        "slow_clients" => known(
            "slow clients",
            "had",
            "more",
            "slow clients",
            Unit::Plain,
            false,
            None,
            "clients that dribble their request a byte at a time",
        ),
        "slow_bytes_answered" => known(
            "slow clients' bytes answered",
            "answered",
            "more",
            "bytes to slow clients",
            Unit::Plain,
            false,
            Some(Better::Higher),
            "uppercased bytes the slow clients got back during the cell: whether the server \
             served them too, not only the normal clients",
        ),
        "normal_p99_us" => known(
            "normal clients' p99 latency (µs)",
            "had",
            "higher",
            "normal clients' p99 latency",
            Unit::Micros,
            false,
            Some(Better::Lower),
            "p99 latency of the clients that send at full speed, while the slow ones dribble",
        ),
        "normal_p50_us" => known(
            "normal clients' p50 (µs)",
            "had",
            "higher",
            "normal clients' median latency",
            Unit::Micros,
            false,
            Some(Better::Lower),
            "median latency of the clients that send at full speed",
        ),
        "normal_throughput_rps" => known(
            "normal clients' throughput (req/s)",
            "served",
            "more",
            "requests per second to normal clients",
            Unit::Rate,
            false,
            Some(Better::Higher),
            "requests per second answered to the clients that send at full speed",
        ),
        "other_clients_lost" => known(
            "other clients lost",
            "lost",
            "more",
            "other clients",
            Unit::Plain,
            false,
            Some(Better::Lower),
            "connections, other than the one whose handler crashed, that were cut off",
        ),
        "server_survived" => known(
            "server survived",
            "survived",
            "more often",
            "the crash",
            Unit::Plain,
            true,
            Some(Better::Higher),
            "whether the server still answered new clients after the crash (repeats survived / repeats)",
        ),
        "server_usage_unread" => known(
            "server usage unread",
            "missed",
            "more often",
            "server usage",
            Unit::Plain,
            true,
            Some(Better::Lower),
            "repeats whose server CPU and counters could not be read at the window's edges \
             (the server died, or did not answer SIGUSR1 within 2 s): their server columns are \
             empty",
        ),
        _ => generic_extra(name),
    }
}

fn generic_extra(name: &str) -> ExtraInfo {
    let unit = if name.ends_with("_us") {
        Unit::Micros
    } else if name.ends_with("_rps") || name.ends_with("_per_s") {
        Unit::Rate
    } else if name.ends_with("_bytes") {
        Unit::Bytes
    } else {
        Unit::Plain
    };
    let suffix = match unit {
        Unit::Micros => " (µs)",
        Unit::Rate => " (/s)",
        Unit::Bytes => " (KiB)",
        Unit::Seconds => " (s)",
        Unit::Plain | Unit::Share => "",
    };
    ExtraInfo {
        counted: false,
        words: Words {
            header: Cow::Owned(format!("{name}{suffix}")),
            axis: Cow::Owned(format!("{name}{suffix}")),
            verb: "had",
            comparative: "higher",
            noun: Cow::Owned(format!("`{name}`")),
            subject: Cow::Owned(format!("`{name}`")),
        },
        unit,
        flag: false,
        explain: Cow::Owned(format!(
            "`{name}`: a scenario-specific figure recorded by the runner"
        )),
        better: None,
    }
}

/// Why io_uring needs fewer syscalls than an epoll loop.
pub const URING_BATCHES: &str = "with many connections busy, one `io_uring_enter` submits \
     the sends and reaps the completions of many requests at once, where the epoll loop makes \
     a `read` and a `write` for every request besides its `epoll_wait`";
/// At one connection there is nothing to batch: what io_uring saves is the
/// readiness call.
pub const URING_NO_READINESS: &str = "with one connection there is nothing to batch: an \
     io_uring loop asks for the completion of a receive and submits the send in the same \
     `io_uring_enter`, while the epoll loop first asks which socket is ready (`epoll_wait`), \
     then reads and writes it";

/// The counted-metrics lesson: what instructions, syscalls and context switches
/// per request teach side by side.
pub const COUNTED_INTRO: &str = "These numbers are counted, not timed, so they repeat \
     exactly and separate the models where timings on a small machine cannot. Syscalls \
     come from `strace -f -c` over a fixed number of requests (whole process tree), \
     context switches from /proc over an untraced pass, user-space instructions from \
     valgrind's callgrind (marginal: the difference between two run lengths, divided by \
     the extra requests). They are counted at one connection, where every model does one \
     request at a time and the differences are the design's fixed costs, and at 100, where \
     the usual trade appears: a blocked thread is woken by the kernel for every request (a \
     context switch each), an event loop finds many ready sockets per wake-up and schedules \
     them in user space (more instructions, fewer switches). Neither number alone is the \
     cost.";
