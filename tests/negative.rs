//! The refusals that matter most, mutual TLS, SNI, address fallback, and that a new trust
//! configuration never resumes an old session.

use std::sync::Arc;

use det_agent::config::{ClientIdentity, TlsConfig};
use det_agent::dev_master::{fixtures, server_config, DevMaster, Event};
use det_agent::tls::{self, RejectionKind};
use det_agent::Trust;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

/// Presents one certificate but signs the handshake with another key: a server that
/// copied the master's certificate without its private key.
#[derive(Debug)]
struct Impostor(Arc<CertifiedKey>);

impl ResolvesServerCert for Impostor {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

pub(crate) async fn impostor(versions: &[&'static rustls::SupportedProtocolVersion]) -> DevMaster {
    let provider = tls::provider();
    let key = provider.key_provider.load_private_key(fixtures::key("unrelated.key")).unwrap();
    let stolen = CertifiedKey::new(fixtures::certs("self-signed-leaf.pem"), key);
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Impostor(Arc::new(stolen))));
    DevMaster::start(([127, 0, 0, 1], 0).into(), Arc::new(config)).await.unwrap()
}

#[tokio::test]
async fn skip_verify_still_requires_proof_of_the_key() {
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let master = impostor(versions).await;
        let report = dial(&config("127.0.0.1", master.addr(), TlsConfig::new(Trust::SkipVerify))).await;
        assert!(!report.verdict.ok, "{versions:?}: accepted a server without the certificate's key");
        let error = report.verdict.error.unwrap();
        assert!(error.contains("BadSignature") || error.contains("signature"), "{versions:?}: {error}");
        // Pinning the very certificate the impostor shows does not help it either.
        let report = dial(&config("127.0.0.1", master.addr(), TlsConfig::new(pinned("self-signed-leaf.pem")))).await;
        assert!(!report.verdict.ok, "{versions:?}: pinned mode accepted a server without the key");
    }
}

#[tokio::test]
async fn a_pinned_subject_with_another_key_is_refused() {
    let master = DevMaster::with_fixture("self-signed-ca-other-key").await.unwrap();
    let report = dial(&config("localhost", master.addr(), TlsConfig::new(pinned("self-signed-ca.pem")))).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::UnknownIssuer));
    let error = report.verdict.error.unwrap();
    assert!(error.contains("not the one pinned") && error.contains("same subject"), "{error}");
    assert!(!error.contains("pin it"), "must not advise trusting the impostor: {error}");
}

#[tokio::test]
async fn a_non_ca_pin_cannot_vouch_for_other_certificates() {
    // signed-by-leaf.pem is signed with the master leaf's key (a CA:FALSE certificate) and
    // served together with that leaf.
    let master = DevMaster::with_fixture("signed-by-leaf").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(pinned("master-leaf.pem")));
    let report = dial(&cfg).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::UnknownIssuer), "{}", report.verdict.summary);
    // It reuses the master's subject, so the explanation is that it is not the pinned one.
    let error = report.verdict.error.unwrap();
    assert!(error.contains("not the one pinned") && error.contains("master-leaf.pem"), "{error}");

    // What makes the difference: webpki alone, given that leaf as a trust anchor, would
    // have accepted the forged certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(fixtures::certs("master-leaf.pem").remove(0)).unwrap();
    let verifier = tls::MasterVerifier::ca_mode(tls::Anchors::unlimited(roots), tls::provider());
    let plain_anchor = tls::TlsClient::with_verifier(verifier, None, tls::provider()).unwrap();
    assert!(dial_with(&cfg, plain_anchor).await.verdict.ok, "the fixture no longer exercises the anchor filter");
}

#[tokio::test]
async fn ca_mode_does_not_trust_the_fixture_root_unless_installed() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));
    let report = dial(&cfg).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::UnknownIssuer));
    let error = report.verdict.error.unwrap();
    assert!(error.contains("Intermediate CA is not trusted") && error.contains("security.tls.master_cert"), "{error}");
    assert!(dial_with(&cfg, ca_with_fixture_root()).await.verdict.ok);
}

#[tokio::test]
async fn master_cert_name_never_lets_the_dialed_ip_bypass_the_name_check() {
    // The certificate is valid for the dialed IP, but the operator asked for another name.
    let mut master = DevMaster::with_fixture("ip-only").await.unwrap();
    let tls = with_name(TlsConfig::new(pinned("root-ca.pem")), "master.det.test");
    let report = dial(&config("127.0.0.1", master.addr(), tls)).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::NotValidForName));
    let error = report.verdict.error.unwrap();
    assert!(
        error.contains("not valid for master.det.test") && error.contains("from security.tls.master_cert_name"),
        "{error}"
    );
    assert!(matches!(event(&mut master).await, Event::HandshakeFailed { .. }));

    // With a name the certificate carries, the name is sent as SNI and verified.
    let mut master = DevMaster::with_fixture("dns-only").await.unwrap();
    let tls = with_name(TlsConfig::new(pinned("root-ca.pem")), "master.det.test");
    let report = dial(&config("127.0.0.1", master.addr(), tls)).await;
    assert!(report.verdict.ok, "{}", report.verdict.summary);
    assert_eq!(report.attempts[0].address, master.addr(), "TCP goes to master_host");
    match event(&mut master).await {
        Event::Handshake { sni, .. } => assert_eq!(sni.as_deref(), Some("master.det.test")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn dialing_an_ip_without_a_name_explains_the_fix() {
    let master = DevMaster::with_fixture("dns-only").await.unwrap();
    let report = dial(&config("127.0.0.1", master.addr(), TlsConfig::new(pinned("root-ca.pem")))).await;
    let error = report.verdict.error.unwrap();
    assert!(
        error.contains("certificate has no IP SAN for 127.0.0.1")
            && error.contains("set security.tls.master_cert_name to one of: master.det.test, localhost"),
        "{error}"
    );
}

#[tokio::test]
async fn ipv6_literals_are_verified_against_ip_sans() {
    let Ok(mut master) = DevMaster::with_fixture_at("[::1]:0".parse().unwrap(), "master").await else {
        eprintln!("skipped: this host has no IPv6 loopback");
        return;
    };
    let report = dial(&config("::1", master.addr(), TlsConfig::new(pinned("root-ca.pem")))).await;
    assert!(report.verdict.ok, "{}", report.verdict.summary);
    assert_eq!(report.verified_name.as_deref(), Some("::1"));
    match event(&mut master).await {
        Event::Handshake { sni, .. } => assert_eq!(sni, None, "no SNI for an IP"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn localhost_reaches_a_master_on_any_loopback_it_resolves_to() {
    // Whichever loopback the master listens on, dialing "localhost" finds it, as long as
    // this host's resolver maps localhost to that family (the fallback loop itself is
    // unit-tested in check.rs, independent of /etc/hosts).
    let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host(("localhost", 0)).await.unwrap().collect();
    let mut tried = 0;
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        let bind: std::net::SocketAddr = bind.parse().unwrap();
        if !resolved.iter().any(|a| a.ip() == bind.ip()) {
            eprintln!("localhost does not resolve to {} here; not testing that family", bind.ip());
            continue;
        }
        let Ok(master) = DevMaster::with_fixture_at(bind, "master").await else {
            continue;
        };
        tried += 1;
        let report = dial(&config("localhost", master.addr(), TlsConfig::new(pinned("root-ca.pem")))).await;
        assert!(report.verdict.ok, "bound {bind}: {}", report.verdict.summary);
        assert_eq!(report.attempts.last().unwrap().address.ip(), master.addr().ip());
    }
    assert!(tried > 0, "localhost resolves to no loopback address: {resolved:?}");
}

#[tokio::test]
async fn mutual_tls_presents_the_client_certificate() {
    let (chain, key) = fixtures::identity("master");
    let config_ = server_config(chain, key, Some(fixtures::certs("root-ca.pem"))).unwrap();
    let mut master = DevMaster::start(([127, 0, 0, 1], 0).into(), config_).await.unwrap();

    // Without a client certificate: under TLS 1.3 the client finishes its side of the
    // handshake before the master refuses, so the refusal shows on the master's side.
    let _ = dial(&config("localhost", master.addr(), TlsConfig::new(pinned("root-ca.pem")))).await;
    match event(&mut master).await {
        Event::HandshakeFailed { error } => assert!(error.contains("no certificates"), "{error}"),
        other => panic!("{other:?}"),
    }

    let dir = env!("CARGO_MANIFEST_DIR");
    let identity = ClientIdentity::load(
        format!("{dir}/fixtures/pki/client.pem").as_ref(),
        format!("{dir}/fixtures/pki/client.key").as_ref(),
    )
    .unwrap();
    let mut tls = TlsConfig::new(pinned("root-ca.pem"));
    tls.client_identity = Some(identity);
    let report = dial(&config("localhost", master.addr(), tls)).await;
    assert!(report.verdict.ok, "{}", report.verdict.summary);
    let client_fp = det_agent::x509::Fingerprint::of(&fixtures::certs("client.pem")[0]);
    match event(&mut master).await {
        Event::Handshake { client_cert, .. } => assert_eq!(client_cert, Some(client_fp)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_new_trust_configuration_never_resumes_an_old_session() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let first = tls::TlsClient::new(&TlsConfig::new(pinned("root-ca.pem"))).unwrap();
    assert_eq!(handshake_kind(&first, master.addr()).await, rustls::HandshakeKind::Full);
    // The same configuration resumes: proof that this test can see resumption.
    assert_eq!(handshake_kind(&first, master.addr()).await, rustls::HandshakeKind::Resumed);
    // New trust settings, new configuration: a full handshake, verified afresh.
    let second = tls::TlsClient::new(&TlsConfig::new(pinned("chain-to-root.pem"))).unwrap();
    assert_eq!(handshake_kind(&second, master.addr()).await, rustls::HandshakeKind::Full);
}

async fn handshake_kind(client: &tls::TlsClient, addr: std::net::SocketAddr) -> rustls::HandshakeKind {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = client.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    // Close our side and read to the end, so the session ticket the server sent after
    // the handshake is processed and stored.
    tls.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest).await;
    kind
}

#[tokio::test]
async fn tls_1_2_is_the_minimum_and_still_verified() {
    let (chain, key) = fixtures::identity("master-rsa");
    let config_ = ServerConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let master = DevMaster::start(([127, 0, 0, 1], 0).into(), Arc::new(config_)).await.unwrap();
    let report = dial(&config("localhost", master.addr(), TlsConfig::new(pinned("root-ca.pem")))).await;
    assert!(report.verdict.ok, "{}", report.verdict.summary);
    assert_eq!(report.tls_version.as_deref(), Some("TLSv1_2"));
    let report = dial(&config("localhost", master.addr(), TlsConfig::new(pinned("other-root-ca.pem")))).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::UnknownIssuer));
}
