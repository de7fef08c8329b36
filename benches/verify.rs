//! What det-agent's verifier costs, beside rustls's stock `WebPkiServerVerifier` on the
//! same chain.
//!
//! `verify_server_cert/*`: one certificate decision. `handshake/*`: a full TLS 1.3
//! handshake in memory (client and server, resumption off on both sides), so the
//! verifier's share is seen against everything else a connection costs.
//!
//! Run: `cargo bench --bench verify`.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use det_agent::config::PinnedCerts;
use det_agent::dev_master::{fixtures, server_config};
use det_agent::tls::{self, MasterVerifier, NameSource};
use det_agent::Trust;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::{ServerName, UnixTime};

fn fixture_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(fixtures::certs("root-ca.pem").remove(0)).unwrap();
    roots
}

fn pinned(file: &str, keep: usize) -> MasterVerifier {
    let mut certs = fixtures::certs(file);
    certs.truncate(keep);
    let pinned = PinnedCerts { path: fixtures::path(file), certs };
    MasterVerifier::new(&Trust::Pinned(pinned), NameSource::DialedHost, tls::provider())
}

fn verifiers() -> Vec<(&'static str, Arc<dyn ServerCertVerifier>)> {
    let provider = tls::provider();
    let stock =
        WebPkiServerVerifier::builder_with_provider(Arc::new(fixture_roots()), provider.clone()).build().unwrap();
    vec![
        ("stock_webpki", stock),
        ("ca", Arc::new(MasterVerifier::with_roots(fixture_roots(), provider.clone()))),
        ("pinned_chain", Arc::new(pinned("root-ca.pem", 1))),
        ("pinned_exact", Arc::new(pinned("master.pem", 1))),
        ("skip_verify", Arc::new(MasterVerifier::dangerous_unverified(provider))),
    ]
}

fn verify_server_cert(c: &mut Criterion) {
    let chain = fixtures::certs("master.pem");
    let name = ServerName::try_from("localhost").unwrap();
    let now = UnixTime::now();
    let mut group = c.benchmark_group("verify_server_cert");
    for (label, verifier) in verifiers() {
        // skip_verify logs a warning per call; keep the subscriber out of the measurement.
        group.bench_function(label, |b| {
            b.iter(|| {
                verifier.verify_server_cert(black_box(&chain[0]), black_box(&chain[1..]), &name, &[], now).unwrap()
            })
        });
    }
    group.finish();
}

fn client(verifier: Arc<dyn ServerCertVerifier>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

fn server() -> Arc<ServerConfig> {
    let (chain, key) = fixtures::identity("master");
    let mut config = (*server_config(chain, key, None).unwrap()).clone();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

/// Moves TLS records between the two ends until both finish the handshake.
fn handshake(client_config: &Arc<ClientConfig>, server_config: &Arc<ServerConfig>) {
    let mut client = ClientConnection::new(client_config.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut server = ServerConnection::new(server_config.clone()).unwrap();
    let mut buf = Vec::with_capacity(8192);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        server.read_tls(&mut &buf[..]).unwrap();
        server.process_new_packets().unwrap();
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        client.read_tls(&mut &buf[..]).unwrap();
        client.process_new_packets().unwrap();
    }
}

fn full_handshake(c: &mut Criterion) {
    let server = server();
    let mut group = c.benchmark_group("handshake");
    for (label, verifier) in verifiers() {
        let client = client(verifier);
        group.bench_function(label, |b| b.iter(|| handshake(&client, &server)));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_secs(1)).measurement_time(std::time::Duration::from_secs(4));
    targets = verify_server_cert, full_handshake
}
criterion_main!(benches);
