//! What det-agent's verifier costs, beside rustls's stock `WebPkiServerVerifier` on the
//! same chain.
//!
//! `verify_server_cert/*`: one certificate decision. `handshake/*`: a full TLS 1.3
//! handshake in memory (client and server, resumption off on both sides), so the
//! verifier's share is seen against everything else a connection costs.
//!
//! Run: `cargo bench --bench verify`. On a shared machine, where wall-clock ratios drift
//! by more than the few per cent compared here, count instructions instead with the
//! `verify_cost` example (see its header).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use det_agent::dev_master::{fixtures, in_memory};
use rustls_pki_types::{ServerName, UnixTime};

fn verify_server_cert(c: &mut Criterion) {
    let chain = fixtures::certs("master.pem");
    let name = ServerName::try_from("localhost").unwrap();
    let now = UnixTime::now();
    let mut group = c.benchmark_group("verify_server_cert");
    for (label, verifier) in in_memory::verifiers() {
        group.bench_function(label, |b| {
            b.iter(|| {
                verifier.verify_server_cert(black_box(&chain[0]), black_box(&chain[1..]), &name, &[], now).unwrap()
            })
        });
    }
    group.finish();
}

fn full_handshake(c: &mut Criterion) {
    let server = in_memory::server();
    let mut group = c.benchmark_group("handshake");
    for (label, verifier) in in_memory::verifiers() {
        let client = in_memory::client(verifier);
        group.bench_function(label, |b| b.iter(|| in_memory::handshake(&client, &server).unwrap()));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(8));
    targets = verify_server_cert, full_handshake
}
criterion_main!(benches);
