//! `round_trip`: one connection, one 64 B request and its 64 B reply, over and over.
//!
//! The latency floor of each model: with one client nobody waits for anybody, so
//! what differs is the path one request takes through the server — a blocking
//! `read()` in a thread or process, a wake-up from `epoll_wait`, a tokio task poll,
//! an io_uring completion. On loopback most of the time is the kernel's TCP path,
//! which every model shares.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use socklab_benches::client::{self, check_reply};
use socklab_benches::{for_each_server, REQUEST_LEN};

fn round_trip(c: &mut Criterion) {
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    let request = client::request();
    for_each_server("round_trip", |model, server| {
        let mut stream = client::connect(server.addr).expect("connect");
        let mut reply = [0u8; REQUEST_LEN];
        // Checked once, outside the timing: the server upper-cases.
        client::round_trip(&mut stream, &request, &mut reply).expect("first round trip");
        check_reply(&reply).unwrap_or_else(|e| panic!("{}: {e}", model.name));

        group.bench_function(BenchmarkId::new(model.name, REQUEST_LEN), |b| {
            b.iter(|| {
                client::round_trip(&mut stream, &request, &mut reply)
                    .unwrap_or_else(|e| panic!("{}: round trip: {e}", model.name));
                black_box(&reply);
            })
        });
        // The connection closes before the server is stopped.
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Set here, not on the group, so the command line can override them. A round
    // trip on loopback takes tens of microseconds: 50 samples in 2 s are plenty.
    config = socklab_benches::criterion()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = round_trip
}
criterion_main!(benches);
