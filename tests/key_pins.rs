//! `security.tls.master_key_pins`: a pinned key must be on the path the verifier relied
//! on, in every mode; any pin of the list may match; with skip_verify the pin alone
//! authenticates the master.

use det_agent::config::TlsConfig;
use det_agent::dev_master::{fixtures, server_config, DevMaster};
use det_agent::tls::{self, Anchors, MasterVerifier, RejectionKind, TlsClient};
use det_agent::x509::KeyPin;
use det_agent::Trust;

use crate::util::*;

fn pin(file: &str, index: usize) -> KeyPin {
    KeyPin::of_cert(&fixtures::certs(file)[index]).unwrap()
}

/// Keys that are nowhere in the fixture master's chain.
fn decoys() -> [KeyPin; 2] {
    [pin("unrelated-ca.pem", 0), pin("other-root-ca.pem", 0)]
}

/// The pin of `target` at every position of a list with two decoys.
fn lists_with(target: KeyPin) -> Vec<Vec<KeyPin>> {
    (0..=2)
        .map(|at| {
            let mut list = decoys().to_vec();
            list.insert(at, target);
            list
        })
        .collect()
}

fn with_pins(trust: Trust, pins: Vec<KeyPin>) -> TlsConfig {
    let mut tls = TlsConfig::new(trust);
    tls.master_key_pins = pins;
    tls
}

/// CA mode whose roots are the fixture root and the unrelated one, as if both were
/// public CAs, with pins.
fn ca_mode(pins: Vec<KeyPin>) -> TlsClient {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(fixtures::certs("root-ca.pem").remove(0)).unwrap();
    roots.add(fixtures::certs("other-root-ca.pem").remove(0)).unwrap();
    let verifier = MasterVerifier::ca_mode(Anchors::unlimited(roots), tls::provider()).with_key_pins(pins);
    TlsClient::with_verifier(verifier, None, tls::provider()).unwrap()
}

#[tokio::test]
async fn a_pin_matches_the_leaf_an_intermediate_or_the_anchor_in_any_list_position() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let leaf = pin("master.pem", 0);
    let intermediate = pin("master.pem", 1);
    let root = pin("root-ca.pem", 0);
    for (what, target) in [("leaf", leaf), ("intermediate", intermediate), ("root", root)] {
        for pins in lists_with(target) {
            let position = pins.iter().position(|p| *p == target).unwrap();
            let cfg = config("localhost", master.addr(), with_pins(pinned("root-ca.pem"), pins.clone()));
            let report = dial(&cfg).await;
            assert!(report.verdict.ok, "pinned mode, {what} pin at {position}: {}", report.verdict.summary);
            assert_eq!(report.mode, "pinned");
            let shown = if what == "root" { "trust anchor".to_owned() } else { target.to_string() };
            assert!(report.verdict.summary.contains(&shown), "{}", report.verdict.summary);

            let report = dial_with(&cfg, ca_mode(pins)).await;
            assert!(report.verdict.ok, "CA mode, {what} pin at {position}: {}", report.verdict.summary);
        }
    }
}

#[tokio::test]
async fn no_matching_pin_is_refused_and_the_presented_pins_are_shown() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let cfg = config("localhost", master.addr(), with_pins(pinned("root-ca.pem"), decoys().to_vec()));
    for report in [dial(&cfg).await, dial_with(&cfg, ca_mode(decoys().to_vec())).await] {
        assert_eq!(report.verdict.rejection, Some(RejectionKind::KeyPinMismatch), "{}", report.verdict.summary);
        let error = report.verdict.error.unwrap();
        for shown in [decoys()[0], decoys()[1], pin("master.pem", 0), pin("master.pem", 1)] {
            assert!(error.contains(&shown.to_string()), "{shown} missing from: {error}");
        }
        assert!(error.contains("security.tls.master_key_pins") && error.contains("posing as the master"), "{error}");
        assert!(!error.contains("not on a valid path"), "{error}");
    }
}

/// The attack a naive "does any presented certificate match" check falls for: a
/// certificate for the master's name from another CA, with the pinned intermediate
/// appended to the chain it does not belong to.
#[tokio::test]
async fn a_pinned_ca_appended_to_an_impostors_chain_counts_for_nothing() {
    let mut chain = fixtures::certs("unrelated-ca.pem");
    chain.push(fixtures::certs("intermediate-ca.pem").remove(0));
    let server = server_config(chain, fixtures::key("unrelated-ca.key"), None).unwrap();
    let master = DevMaster::start(([127, 0, 0, 1], 0).into(), server).await.unwrap();
    let pins = vec![pin("intermediate-ca.pem", 0)];
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));

    // The impostor's chain is valid in CA mode: only the pin can stop it.
    assert!(dial_with(&cfg, ca_mode(Vec::new())).await.verdict.ok, "the fixture no longer exercises the attack");
    let report = dial_with(&cfg, ca_mode(pins.clone())).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::KeyPinMismatch), "{}", report.verdict.summary);
    let error = report.verdict.error.unwrap();
    assert!(error.contains("Certificate [1] has a pinned key but is not on a valid path"), "{error}");

    // Under skip_verify the appended certificate must have issued the leaf, and did not.
    let report = dial(&config("127.0.0.1", master.addr(), with_pins(Trust::SkipVerify, pins))).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::KeyPinMismatch), "{}", report.verdict.summary);
}

#[tokio::test]
async fn with_skip_verify_the_pin_alone_authenticates_the_master() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dial_pinned = |pins: Vec<KeyPin>| {
        // Dialed by a name the certificate does not carry: names are not checked here.
        let cfg = config("127.0.0.1", master.addr(), with_pins(Trust::SkipVerify, pins));
        async move { dial(&cfg).await }
    };
    for (what, target) in [("leaf", pin("master.pem", 0)), ("intermediate", pin("master.pem", 1))] {
        for pins in lists_with(target) {
            let report = dial_pinned(pins).await;
            assert!(report.verdict.ok, "{what}: {}", report.verdict.summary);
            assert_eq!(report.mode, "key-pin");
            assert!(
                report.verdict.summary.starts_with("master authenticated by its pinned key"),
                "{}",
                report.verdict.summary
            );
        }
    }
    // The root is not presented, so nothing proves the leaf chains to it.
    let report = dial_pinned(vec![pin("root-ca.pem", 0)]).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::KeyPinMismatch), "{}", report.verdict.summary);
    let report = dial_pinned(decoys().to_vec()).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::KeyPinMismatch), "{}", report.verdict.summary);
    assert!(report.verdict.summary.contains("key-pin mode"), "{}", report.verdict.summary);
}

#[tokio::test]
async fn a_pinned_key_needs_its_private_half() {
    // The impostor serves the fixture leaf without its key; the leaf's pin does not help it.
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let master = crate::negative::impostor(versions).await;
        let cfg =
            config("127.0.0.1", master.addr(), with_pins(Trust::SkipVerify, vec![pin("self-signed-leaf.pem", 0)]));
        let report = dial(&cfg).await;
        assert!(!report.verdict.ok, "{versions:?}: a copied certificate passed as the pinned master");
        let error = report.verdict.error.unwrap();
        assert!(error.contains("signature"), "{versions:?}: {error}");
    }
}

#[tokio::test]
async fn an_exactly_pinned_certificate_must_also_carry_a_pinned_key() {
    let master = DevMaster::with_fixture("self-signed-leaf").await.unwrap();
    let exact = pinned("self-signed-leaf.pem");
    let report =
        dial(&config("localhost", master.addr(), with_pins(exact.clone(), vec![pin("self-signed-leaf.pem", 0)]))).await;
    assert!(report.verdict.ok, "{}", report.verdict.summary);
    let report = dial(&config("localhost", master.addr(), with_pins(exact, decoys().to_vec()))).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::KeyPinMismatch), "{}", report.verdict.summary);
}
