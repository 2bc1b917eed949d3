//! The table of server models: one row per model, the only place the CLI lists them.

/// One server model as the CLI presents it.
pub struct ModelInfo {
    pub name: &'static str,
    pub summary: &'static str,
    /// Whether the model has a UDP server. Per-client models (fork, thread) do not:
    /// UDP has no connections, so there is no client to hand a process or thread.
    pub udp: bool,
}

pub const MODELS: &[ModelInfo] = &[
    ModelInfo {
        name: "iterative",
        summary: "one client at a time in one thread (the tutorial's first server; the natural UDP server)",
        udp: true,
    },
    ModelInfo {
        name: "fork",
        summary: "fork() a process per client (the tutorial's multi-process server), children reaped and capped",
        udp: false,
    },
    ModelInfo {
        name: "prefork",
        summary: "N processes forked up front sharing one listener (no lock, flock, or fd passing)",
        udp: true,
    },
    ModelInfo {
        name: "thread",
        summary: "one OS thread per client (the tutorial's multi-thread server), capped",
        udp: false,
    },
    ModelInfo {
        name: "pool",
        summary: "a fixed pool of worker threads fed by a bounded crossbeam channel (or accepting themselves)",
        udp: true,
    },
    ModelInfo {
        name: "nonblocking",
        summary: "one thread, one epoll loop (mio): readiness, partial writes, timers, backpressure",
        udp: true,
    },
    ModelInfo {
        name: "async",
        summary: "tokio tasks, one per connection (multi-thread or current-thread runtime)",
        udp: true,
    },
    ModelInfo {
        name: "uring",
        summary: "a completion loop over io_uring: submit accept/recv/send, react to completions",
        udp: true,
    },
];

pub fn info(name: &str) -> &'static ModelInfo {
    MODELS
        .iter()
        .find(|m| m.name == name)
        .expect("every ServeModel variant has a row in MODELS")
}

pub fn print_table() {
    let width = MODELS.iter().map(|m| m.name.len()).max().unwrap_or(0);
    for model in MODELS {
        let udp = if model.udp { "tcp+udp" } else { "tcp    " };
        println!("{:width$}  {udp}  {}", model.name, model.summary);
    }
}
