//! `throughput`: N connections (1, 16, 128) each doing 64 B round trips at once.
//!
//! Requests per second with N clients in flight, measured with `iter_custom`: the
//! work is done by the server's threads or processes, so the bench times the wall
//! clock from the first request to the last reply of a batch and reports
//! `Throughput::Elements` (round trips). All N connections are open, and each has
//! completed one checked round trip, before any timing. One client thread drives
//! them all over epoll (`socklab_benches::Clients`): the client is event-driven, so
//! the difference between models is the server's.
//!
//! iterative is benched at N = 1 only: it serves one connection until that client
//! leaves, so the other N − 1 persistent connections would wait forever. prefork
//! and pool run with `--workers 128` for the same reason (see `socklab_benches::Model`).

use std::time::Duration;

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use socklab_benches::{for_each_server, Clients, MAX_CLIENTS};

/// Concurrent connections per benchmark.
const CLIENTS: [usize; 3] = [1, 16, MAX_CLIENTS];

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput");
    // Every sample runs the same number of round trips. Criterion's default (linear)
    // sampling starts with small samples, too few round trips to keep 128
    // connections busy at once.
    group.sampling_mode(SamplingMode::Flat);
    // One iteration is one round trip: criterion reports round trips per second.
    group.throughput(Throughput::Elements(1));
    for_each_server("throughput", |model, server| {
        for n in CLIENTS {
            if model.one_at_a_time && n > 1 {
                eprintln!(
                    "throughput/{}/{n}: skipped: {} serves one connection at a time, so {} of \
                     {n} persistent connections would wait forever",
                    model.name,
                    model.name,
                    n - 1
                );
                continue;
            }
            // Opened on the first call, so a benchmark that a filter skips opens
            // nothing; iter_custom times only what `run` returns.
            let mut clients: Option<Clients> = None;
            group.bench_function(BenchmarkId::new(model.name, n), |b| {
                let clients = clients.get_or_insert_with(|| {
                    Clients::open(server.addr, n)
                        .unwrap_or_else(|e| panic!("{}: opening {n} connections: {e}", model.name))
                });
                b.iter_custom(|iters| {
                    clients
                        .run(iters)
                        .unwrap_or_else(|e| panic!("{} with {n} clients: {e}", model.name))
                })
            });
            // The N connections close here, before the next N or the next model.
        }
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Set here, not on the group, so the command line can override them. 22
    // benchmarks: 2 s each keeps the group near a minute of measurement.
    config = socklab_benches::criterion()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = throughput
}
criterion_main!(benches);
