//! `protocol`: the sans-I/O core alone — `Session::feed` on one chunk, no sockets.
//!
//! This is the work every server model does identically per read; the socket
//! groups show how small it is beside a round trip. `raw` upper-cases bytes as they
//! come; `lines` also looks for the `\n` that ends a request. Each input is one
//! request: `raw` gets N bytes of text, `lines` one line of N bytes with its `\n`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use socklab_protocol::{Framing, Limits, Session};

/// Chunk sizes: a small request up to the `lines` limit (64 KiB with its `\n`).
const SIZES: [usize; 4] = [16, 256, 4 * 1024, 64 * 1024];

/// One request of `size` bytes in `framing`: lower-case text, `\n`-terminated for `lines`.
fn input(framing: Framing, size: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    if framing == Framing::Lines {
        bytes[size - 1] = b'\n';
    }
    bytes
}

fn protocol(c: &mut Criterion) {
    let mut group = c.benchmark_group("protocol");
    for framing in [Framing::Raw, Framing::Lines] {
        for size in SIZES {
            let input = input(framing, size);
            let mut session = Session::new(framing, Limits::default());
            let mut out = Vec::with_capacity(size);
            // Checked once, outside the timing: one request, answered upper-cased.
            let fed = session.feed(&input, &mut out);
            assert_eq!((fed.requests, fed.closing), (1, false), "{framing}/{size}");
            assert_eq!(out, input.to_ascii_uppercase(), "{framing}/{size}");

            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(framing.to_string(), size), |b| {
                b.iter(|| {
                    // The output buffer is reused, as every driver reuses its own:
                    // this times the framing, not the allocator.
                    out.clear();
                    black_box(session.feed(black_box(&input), &mut out))
                })
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Set here, not on the group, so the command line can override them. One
    // iteration takes nanoseconds to microseconds: 1 s gives millions of them.
    config = socklab_benches::criterion()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1));
    targets = protocol
}
criterion_main!(benches);
