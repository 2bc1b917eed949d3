//! `connect`: a whole short-lived client — connect, one 64 B request, its reply, close.
//!
//! What a new connection costs each model beyond the TCP handshake: `fork()` a
//! process (fork), `clone()` a thread (thread), hand the socket to a waiting worker
//! (pool's queue, prefork's accept), register it with epoll (nonblocking), spawn a
//! tokio task (async), or submit its first read to the ring (uring). The client
//! closes first with `SO_LINGER 0` (a RST), so no iteration leaves a socket in
//! TIME_WAIT; see `socklab_benches::client::connect_request_close`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use socklab_benches::client::{self, check_reply};
use socklab_benches::{for_each_server, REQUEST_LEN};

fn connect(c: &mut Criterion) {
    let mut group = c.benchmark_group("connect");
    group.throughput(Throughput::Elements(1));
    let request = client::request();
    for_each_server("connect", |model, server| {
        let mut reply = [0u8; REQUEST_LEN];
        // Checked once, outside the timing: the server upper-cases.
        client::connect_request_close(server.addr, &request, &mut reply)
            .unwrap_or_else(|e| panic!("{}: first connection: {e}", model.name));
        check_reply(&reply).unwrap_or_else(|e| panic!("{}: {e}", model.name));

        group.bench_function(BenchmarkId::new(model.name, REQUEST_LEN), |b| {
            b.iter(|| {
                client::connect_request_close(server.addr, &request, &mut reply)
                    .unwrap_or_else(|e| panic!("{}: connect, request, close: {e}", model.name));
                black_box(&reply);
            })
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Set here, not on the group, so the command line can override them. An
    // iteration is a handshake plus a round trip (plus a fork, for fork): 30
    // samples in 2 s.
    config = socklab_benches::criterion()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = connect
}
criterion_main!(benches);
