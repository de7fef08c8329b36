//! A trust anchor's own limits bind like any certificate's: its validity window, its
//! basicConstraints (CA or not, pathLen) and its extendedKeyUsage. Each case is also
//! dialed with webpki's plain anchors (`Anchors::unlimited`), which accept it: proof that
//! the fixture exercises the limit rather than failing for another reason.

use det_agent::config::TlsConfig;
use det_agent::dev_master::{fixtures, DevMaster};
use det_agent::tls::{self, AnchorProblemKind, Anchors, MasterVerifier, RejectionKind, TlsClient};
use det_agent::Trust;

use crate::cli::{det_agent, text};
use crate::util::*;

/// CA mode with `file`'s first certificate as a plain webpki anchor, no limits.
fn webpki_alone(file: &str) -> TlsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(fixtures::certs(file).remove(0)).unwrap();
    let verifier = MasterVerifier::ca_mode(Anchors::unlimited(roots), tls::provider());
    TlsClient::with_verifier(verifier, None, tls::provider()).unwrap()
}

/// Dials the master serving `server` with `master_cert` pinned; returns the report.
async fn pinned_to(master_cert: &str, server: &str) -> det_agent::check::Report {
    let master = DevMaster::with_fixture(server).await.unwrap();
    dial(&config("localhost", master.addr(), TlsConfig::new(pinned(master_cert)))).await
}

async fn accepted_without_limits(anchor_file: &str, server: &str) -> bool {
    let master = DevMaster::with_fixture(server).await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));
    dial_with(&cfg, webpki_alone(anchor_file)).await.verdict.ok
}

#[tokio::test]
async fn an_expired_self_signed_pin_vouches_for_nothing_it_signed() {
    let report = pinned_to("expired-self-signed-ca.pem", "issued-by-expired-self-signed").await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::Expired), "{}", report.verdict.summary);
    let error = report.verdict.error.unwrap();
    assert!(error.contains("trust anchor O=det-agent tests, CN=det master (self-signed, expired)"), "{error}");
    assert!(error.contains("expired-self-signed-ca.pem") && error.contains("expired 2021-01-01T00:00:00Z"), "{error}");
    assert!(error.contains("An expired CA vouches for nothing"), "{error}");
    assert!(accepted_without_limits("expired-self-signed-ca.pem", "issued-by-expired-self-signed").await);
}

#[tokio::test]
async fn an_expired_intermediate_in_master_cert_is_no_anchor() {
    let report = pinned_to("expired-intermediate-and-root.pem", "issued-by-expired-intermediate").await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::Expired), "{}", report.verdict.summary);
    let error = report.verdict.error.unwrap();
    assert!(error.contains("Expired Intermediate") && error.contains("expired-intermediate-and-root.pem"), "{error}");
    // The root alone refuses it too: webpki checks the presented intermediate's dates.
    let report = pinned_to("root-ca.pem", "issued-by-expired-intermediate").await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::Expired), "{}", report.verdict.summary);
    assert!(accepted_without_limits("expired-intermediate-ca.pem", "issued-by-expired-intermediate").await);
}

#[tokio::test]
async fn a_path_length_of_zero_forbids_a_sub_ca() {
    let report = pinned_to("pathlen0-ca.pem", "issued-by-sub-ca-of-pathlen0").await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::InvalidChain), "{}", report.verdict.summary);
    let error = report.verdict.error.unwrap();
    assert!(error.contains("allows at most 0 intermediate CA certificate(s) below it (basicConstraints pathLen 0), but the master's chain puts 1"), "{error}");
    assert!(accepted_without_limits("pathlen0-ca.pem", "issued-by-sub-ca-of-pathlen0").await);
}

#[tokio::test]
async fn a_ca_limited_to_client_auth_vouches_for_no_server() {
    let report = pinned_to("client-auth-ca.pem", "issued-by-client-auth-ca").await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::NotForServerAuth), "{}", report.verdict.summary);
    let error = report.verdict.error.unwrap();
    assert!(error.contains("extendedKeyUsage (clientAuth)") && error.contains("client-auth-ca.pem"), "{error}");
    assert!(accepted_without_limits("client-auth-ca.pem", "issued-by-client-auth-ca").await);
}

#[tokio::test]
async fn ca_mode_refuses_an_expired_root_of_the_host_store() {
    let master = DevMaster::with_fixture("issued-by-expired-root").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));
    let report = dial_with(&cfg, ca_with_host_roots(&["expired-root-ca.pem"])).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::Expired), "{}", report.verdict.summary);
    assert!(report.verdict.error.unwrap().contains("this host's trust store"));
    assert!(accepted_without_limits("expired-root-ca.pem", "issued-by-expired-root").await);

    // The binary, with the root in SSL_CERT_FILE as an operator would install it.
    let root = crate::cli::pki("expired-root-ca.pem");
    let port = master.addr().port().to_string();
    let args = ["check", "--master-host", "localhost", "--master-port", &port, "--security-tls-enabled"];
    let out = det_agent(&args, &[("SSL_CERT_FILE", root.to_str().unwrap())]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("Expired Root CA") && stdout.contains(&format!("SSL_CERT_FILE={}", root.display())),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_host_store_certificate_that_is_no_ca_vouches_only_for_itself() {
    // An operator installed the master's own self-signed leaf in the host's store: fine.
    let master = DevMaster::with_fixture("self-signed-leaf").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));
    let report = dial_with(&cfg, ca_with_host_roots(&["self-signed-leaf.pem"])).await;
    assert!(report.verdict.ok, "{}", report.verdict.error.unwrap_or_default());
    // A certificate signed with that CA:FALSE leaf's key is not vouched for.
    let master = DevMaster::with_fixture("signed-by-leaf").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));
    let report = dial_with(&cfg, ca_with_host_roots(&["master-leaf.pem"])).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::InvalidChain), "{}", report.verdict.summary);
    assert!(report.verdict.error.unwrap().contains("is not a CA (basicConstraints CA:FALSE)"));
    assert!(accepted_without_limits("master-leaf.pem", "signed-by-leaf").await);
}

#[tokio::test]
async fn a_pinned_key_does_not_revive_an_expired_presented_ca() {
    // Key-pin mode: the master presents the expired intermediate whose key is pinned.
    let master = DevMaster::with_fixture("issued-by-expired-intermediate").await.unwrap();
    let mut tls = TlsConfig::new(Trust::SkipVerify);
    tls.master_key_pins =
        vec![det_agent::x509::KeyPin::of_cert(&fixtures::certs("expired-intermediate-ca.pem")[0]).unwrap()];
    let report = dial(&config("localhost", master.addr(), tls)).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::Expired), "{}", report.verdict.summary);
    assert!(report.verdict.error.unwrap().contains("presented by the master, trusted for its pinned key"));
}

#[test]
fn the_anchor_problem_is_a_value_the_caller_can_match() {
    // The verifier's decision, without any network: the rejection names the anchor.
    let pinned = det_agent::config::PinnedCerts {
        path: fixtures::path("pathlen0-ca.pem"),
        certs: fixtures::certs("pathlen0-ca.pem"),
        store_entry: None,
    };
    let verifier = MasterVerifier::pinned(&pinned, tls::provider());
    let chain = fixtures::certs("issued-by-sub-ca-of-pathlen0.pem");
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let rejection = verifier.verify(&chain[0], &chain[1..], &name, rustls_pki_types::UnixTime::now()).unwrap_err();
    let problem = rejection.anchor_problem().expect("an anchor problem");
    assert_eq!(problem.kind, AnchorProblemKind::PathLen { allowed: 0, found: 1 });
    assert_eq!(problem.anchor.source, tls::AnchorSource::File(fixtures::path("pathlen0-ca.pem")));
}

#[tokio::test]
async fn a_host_store_certificate_that_is_no_ca_vouches_not_even_for_its_own_key() {
    // Whoever holds the key of a self-signed CA:FALSE certificate in the host's store
    // (another service's) signs a new certificate with it: the same key and subject, the
    // master's names. It chains to that anchor by key and name, yet it is not the
    // certificate the store holds, so it vouches for nothing. openssl makes it, as an
    // attacker would.
    let dir = tempfile::tempdir().unwrap();
    let forged = dir.path().join("forged.pem");
    let key = crate::cli::pki("self-signed-leaf.key");
    let status = std::process::Command::new("openssl")
        .args(["req", "-new", "-x509", "-days", "3650", "-key"])
        .arg(&key)
        .args(["-subj", "/O=det-agent tests/CN=det master (self-signed)"])
        .args(["-addext", "subjectAltName=DNS:localhost,DNS:impostor.det.test"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-out")
        .arg(&forged)
        .status()
        .expect("openssl runs (install Debian's openssl package)");
    assert!(status.success());
    let chain = det_agent::pem::load_certs(&forged).unwrap();
    let key = det_agent::pem::load_private_key(&key).unwrap();
    let config = det_agent::dev_master::server_config(chain, key, None).unwrap();
    let master = DevMaster::start(([127, 0, 0, 1], 0).into(), config).await.unwrap();
    let cfg = config_for(master.addr());
    let report = dial_with(&cfg, ca_with_host_roots(&["self-signed-leaf.pem"])).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::InvalidChain), "{}", report.verdict.summary);
    assert!(report.verdict.error.unwrap().contains("is not a CA (basicConstraints CA:FALSE)"));
    // webpki alone accepts it: the same key signed it, under the anchor's name.
    assert!(dial_with(&cfg, webpki_alone("self-signed-leaf.pem")).await.verdict.ok);
}

fn config_for(addr: std::net::SocketAddr) -> det_agent::Config {
    config("localhost", addr, TlsConfig::new(Trust::PublicRoots))
}
