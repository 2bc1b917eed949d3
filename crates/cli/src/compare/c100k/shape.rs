//! How a c100k cell sizes things from the model table alone: how many workers a
//! model needs to hold the target, and how many load processes hold the clients.
//!
//! No model is special-cased by name. A model's row says how its concurrency is
//! bounded (`Shape`), whether one process holds a descriptor per client
//! (`fd_per_client`), and whether it takes `--workers` (its compare arguments set
//! them). From that:
//!
//! - **one client per worker** (`Shape::PoolQueue`, `Shape::PoolAccept`: prefork's
//!   processes, pool's threads): holding N clients takes N workers. That is the
//!   model's lesson, so it gets one worker per client, up to
//!   [`MAX_ONE_CLIENT_WORKERS`]: measured here, 2,000 idle prefork workers took
//!   0.6 of a CPU (each wakes ten times a second in `accept()` to look for
//!   shutdown) and 300 MB of page tables, kernel stacks and private pages, and
//!   100,000 would be past `kernel.pid_max` (32,768 here) for the whole machine.
//! - **many clients per worker, a worker per process** (an `Elastic` model that
//!   takes `--workers` and whose single process does not hold every client's
//!   descriptor: N event loops in N processes): each process gets at most
//!   [`PER_PROCESS`] clients, under a 20,000-descriptor `RLIMIT_NOFILE` with room.
//! - **a process per client, made on demand** (an `Elastic` model that takes no
//!   `--workers` and holds no descriptor per client in one process: fork): capped
//!   with `--max-conns` at [`MAX_ONE_CLIENT_WORKERS`] for the same reasons. Left
//!   alone it would fork until `kernel.pid_max`, and every other program on the
//!   machine would find no PID to run in.
//! - everything else runs as it is: a single process (thread, the event loops) or
//!   a single client at a time (iterative) meets its own limit, which is the
//!   lesson.
//!
//! Every other model gets `--max-conns` at the target: the default cap of 10,000
//! would stop it before any limit of the machine's did.

use socklab_models::Model;

/// Clients one process of a process-sharded model is given: under this machine's
/// `RLIMIT_NOFILE` of 20,000 with room for its other descriptors.
pub const PER_PROCESS: usize = 15_000;

/// Most workers a model that holds one client per worker is given (see the module
/// docs for why not 100,000).
pub const MAX_ONE_CLIENT_WORKERS: usize = 1_000;

/// Connections one load process holds at most: below the ephemeral ports of one
/// source address (28,232) and a 20,000-descriptor `RLIMIT_NOFILE`, with room for
/// the process's own descriptors. Lowered to fit a smaller descriptor limit.
pub const PER_LOADER: usize = 18_000;

/// Source addresses the loaders take: 127.0.0.2, 127.0.0.3, … (any 127.0.0.0/8
/// address is a source on `lo` without configuration).
pub const MAX_LOADERS: usize = 250;

/// Whether the model takes `--workers` (its compare arguments set them).
fn takes_workers(model: &Model) -> bool {
    model.compare_args.contains(&"--workers")
}

/// Whether the model makes a process per client as clients come (fork): no
/// fixed workers, and no one process holding every client's descriptor.
pub fn process_per_client(model: &Model) -> bool {
    model.shape == socklab_models::Shape::Elastic && !model.fd_per_client && !takes_workers(model)
}

/// The `--max-conns` of a c100k cell: the target, or for a process per client
/// at most [`MAX_ONE_CLIENT_WORKERS`].
pub fn max_conns(model: &Model, conns: usize) -> usize {
    if process_per_client(model) {
        conns.min(MAX_ONE_CLIENT_WORKERS)
    } else {
        conns
    }
}

/// The worker count the c100k cell gives `model` for `conns` clients, and why;
/// `None` when the model takes no `--workers` or more would not help it.
pub fn workers(model: &Model, conns: usize) -> Option<(usize, &'static str)> {
    if !takes_workers(model) {
        return None;
    }
    if model.shape.pooled() {
        return Some((
            conns.clamp(1, MAX_ONE_CLIENT_WORKERS),
            "one client per worker, so one worker per client, up to 1,000",
        ));
    }
    (!model.fd_per_client).then(|| {
        (
            conns.div_ceil(PER_PROCESS).max(1),
            "each worker a process with its own descriptors: 15,000 clients each",
        )
    })
}

/// The `socklab serve` arguments of a c100k cell: the model's row, its worker
/// count from [`workers`] in place of compare's usual one, and `--max-conns` at
/// the target.
pub fn serve_args(model: &Model, conns: usize) -> Vec<String> {
    let mut args: Vec<String> = model
        .serve
        .iter()
        .chain(model.compare_args)
        .map(|s| s.to_string())
        .collect();
    if let Some((n, _)) = workers(model, conns) {
        if let Some(i) = args.iter().position(|a| a == "--workers") {
            args[i + 1] = n.to_string();
        }
    }
    args.extend([
        "--max-conns".to_string(),
        max_conns(model, conns).to_string(),
    ]);
    args
}

/// Connections per load process: [`PER_LOADER`], or fewer where this process
/// may open fewer descriptors (children inherit its limit).
pub fn per_loader(nofile_hard: u64) -> usize {
    const OWN: u64 = 1_000;
    PER_LOADER.min(nofile_hard.saturating_sub(OWN).max(1) as usize)
}

/// How `conns` clients and `rate` requests per second split over `loaders` load
/// processes: each one's connections and rate, as even as whole numbers allow.
pub fn split(conns: usize, rate: f64, loaders: usize) -> Vec<(usize, f64)> {
    let loaders = loaders.clamp(1, conns.max(1));
    (0..loaders)
        .map(|k| {
            let n = conns / loaders + usize::from(k < conns % loaders);
            (n, rate * n as f64 / conns as f64)
        })
        .collect()
}

/// The source address of loader `k`: 127.0.0.(2 + k).
pub fn source(k: usize) -> std::net::IpAddr {
    std::net::Ipv4Addr::new(127, 0, 0, (2 + k).min(255) as u8).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use socklab_models::{find, Shape};

    /// prefork gets one worker per client, capped; a process-sharded event loop
    /// (a row as the workers model's will be) gets a process per 15,000; single
    /// processes keep their arguments; every one gets --max-conns at the target.
    #[test]
    fn workers_follow_the_shape() {
        let prefork = find("prefork").unwrap();
        assert_eq!(workers(prefork, 100_000).unwrap().0, 1_000);
        assert_eq!(workers(prefork, 400).unwrap().0, 400);
        assert_eq!(
            serve_args(prefork, 400),
            ["prefork", "--workers", "400", "--max-conns", "400"]
        );
        let sharded = Model {
            name: "loops-in-processes",
            serve: &["loops-in-processes"],
            compare_args: &["--workers", "2"],
            shape: Shape::Elastic,
            fd_per_client: false,
            ..*find("nonblocking").unwrap()
        };
        assert_eq!(workers(&sharded, 100_000).unwrap().0, 7);
        assert_eq!(workers(&sharded, 400).unwrap().0, 1);
        assert_eq!(
            serve_args(&sharded, 100_000),
            [
                "loops-in-processes",
                "--workers",
                "7",
                "--max-conns",
                "100000"
            ]
        );
        let fork = find("fork").unwrap();
        assert!(process_per_client(fork) && !process_per_client(prefork));
        assert_eq!(workers(fork, 100_000), None);
        assert_eq!(serve_args(fork, 100_000), ["fork", "--max-conns", "1000"]);
        assert_eq!(serve_args(fork, 400), ["fork", "--max-conns", "400"]);
        assert!(!process_per_client(&sharded));
        for name in ["nonblocking", "thread", "iterative", "uring-2loops"] {
            let m = find(name).unwrap();
            assert_eq!(workers(m, 100_000), None, "{name}");
            assert_eq!(
                serve_args(m, 100_000).last().map(String::as_str),
                Some("100000")
            );
        }
    }

    /// Loaders split connections and rate evenly, each from its own address.
    #[test]
    fn loaders_split_evenly_from_their_own_addresses() {
        assert_eq!(
            split(100_000, 10_000.0, 6)
                .iter()
                .map(|p| p.0)
                .collect::<Vec<_>>(),
            [16_667, 16_667, 16_667, 16_667, 16_666, 16_666]
        );
        let parts = split(400, 400.0, 2);
        assert_eq!(parts, [(200, 200.0), (200, 200.0)]);
        assert_eq!(source(0).to_string(), "127.0.0.2");
        assert_eq!(per_loader(20_000), 18_000);
        assert_eq!(per_loader(4_096), 3_096);
    }
}
