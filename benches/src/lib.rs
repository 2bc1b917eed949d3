//! What socklab's criterion groups share: the server models, the server processes,
//! and the clients that time them.
//!
//! # Layout
//!
//! - [`server`]: runs `socklab serve <model> --tcp 127.0.0.1:0` as a child process —
//!   the very code the comparison measures, no bench-only copy — reads the address
//!   it announces, and stops it by PID (SIGTERM, then wait) when dropped.
//! - [`client`]: the timed client side: one blocking round trip, one
//!   connect-request-close, and [`client::Clients`], a small mio loop that keeps N
//!   connections busy from one thread.
//! - [`models`]: the models every socket group benches, one `BenchmarkId` each,
//!   read from the one model table.
//!
//! The bench targets (`protocol.rs`, `round_trip.rs`, `connect.rs`, `throughput.rs`,
//! beside `Cargo.toml`) hold only the criterion groups. `benches/README.md` says what
//! each group measures and how to run one.

pub mod client;
pub mod server;

pub use client::{Clients, REQUEST_LEN};
pub use server::Server;

use criterion::{Criterion, PlottingBackend};

/// Bootstrap resamples per benchmark (criterion's default is 100,000). On a 2-core
/// machine the default spends seconds of analysis per benchmark; 10,000 gives
/// confidence intervals as wide as this machine's noise allows, in a fraction.
pub const RESAMPLES: usize = 10_000;

/// The criterion settings every group starts from; each bench target adds its own
/// times. Set on the `Criterion` (not on the group) so the command line's
/// `--warm-up-time`, `--measurement-time`, `--sample-size` and `--nresamples` win.
/// Plots are drawn with plotters (pure Rust), gnuplot installed or not, so every
/// machine's HTML report looks the same.
pub fn criterion() -> Criterion {
    Criterion::default()
        .nresamples(RESAMPLES)
        .plotting_backend(PlottingBackend::Plotters)
}

/// The most concurrent client connections any group opens (the `throughput`
/// group's largest N). Models with a fixed number of workers get this many, so no
/// client waits for a worker that another client holds.
pub const MAX_CLIENTS: usize = 128;

/// One server model as the benches start it: a default row of the one model table
/// (`socklab models` lists the variants; `socklab compare` measures them).
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// The name in every `BenchmarkId` and the `socklab serve` subcommand.
    pub name: &'static str,
    /// Serves one connection at a time: a second persistent connection would wait
    /// in the listen backlog until the first one closes.
    pub one_at_a_time: bool,
    /// Has a fixed set of workers (`--workers N`); started with [`MAX_CLIENTS`]
    /// of them. With the default (one per CPU) a client beyond the workers would
    /// wait for one to come free, which on a persistent connection is never.
    pub fixed_workers: bool,
}

/// Every model, each with its default variant.
pub fn models() -> impl Iterator<Item = Model> {
    socklab_models::defaults().map(|m| Model {
        name: m.name,
        one_at_a_time: m.shape == socklab_models::Shape::Serial,
        fixed_workers: m.shape.pooled(),
    })
}

impl Model {
    /// The arguments after `socklab serve`, without the addresses.
    pub fn serve_args(&self) -> Vec<String> {
        let mut args = vec![self.name.to_string()];
        if self.fixed_workers {
            args.extend(["--workers".to_string(), MAX_CLIENTS.to_string()]);
        }
        args
    }
}

/// Starts each model's server in turn and hands it to `bench`; a model whose server
/// does not start (io_uring refused by the kernel, say) is skipped with a note on
/// stderr, so one missing feature does not stop the whole group.
///
/// The server is stopped (SIGTERM, wait) as soon as `bench` returns.
pub fn for_each_server(group: &str, mut bench: impl FnMut(&Model, &Server)) {
    for model in models() {
        match Server::start(&model) {
            Ok(server) => bench(&model, &server),
            Err(err) => eprintln!(
                "{group}/{}: skipped, server did not start: {err}",
                model.name
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Models with a fixed worker count get one worker per possible client.
    #[test]
    fn fixed_worker_models_get_max_clients_workers() {
        let pool = models().find(|m| m.name == "pool").unwrap();
        assert_eq!(pool.serve_args(), ["pool", "--workers", "128"]);
        let thread = models().find(|m| m.name == "thread").unwrap();
        assert_eq!(thread.serve_args(), ["thread"]);
    }
}
