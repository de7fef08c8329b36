//! Every trust mode × every fixture × dialing by name and by IP, against a real TLS
//! server, with the exact expected outcome of each.
//!
//! The expectations follow from what each certificate is (see fixtures/generator) and
//! from the order of checks: webpki checks the presented leaf's validity window, then
//! its basicConstraints (a CA as end entity), then looks for an issuer; the name is
//! checked only after the chain. The pinned exact-match path checks validity, then
//! purpose, then name.

use det_agent::config::TlsConfig;
use det_agent::dev_master::{DevMaster, Event};
use det_agent::tls::RejectionKind::{self, *};
use det_agent::Trust;

use crate::util::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// CA mode with the real public and host roots: the private PKI is unknown there.
    CaPublic,
    /// CA mode with the fixture root installed in the trust store.
    CaFixtureRoot,
    /// master_cert = the root CA.
    PinnedRoot,
    /// master_cert = intermediate + root.
    PinnedChain,
    /// master_cert = the presented leaf itself.
    PinnedLeaf,
    SkipVerify,
}

const MODES: [Mode; 6] =
    [Mode::CaPublic, Mode::CaFixtureRoot, Mode::PinnedRoot, Mode::PinnedChain, Mode::PinnedLeaf, Mode::SkipVerify];

#[derive(Clone, Copy, PartialEq)]
enum Window {
    Valid,
    Expired,
    NotYetValid,
}

#[derive(Clone, Copy, PartialEq)]
enum Issued {
    /// Root -> intermediate -> leaf.
    FixturePki,
    /// By an unrelated CA.
    Unrelated,
    /// Self-signed with CA:TRUE.
    SelfCa,
    /// Self-signed with CA:FALSE.
    SelfLeaf,
}

struct Fixture {
    stem: &'static str,
    window: Window,
    issued: Issued,
    by_name: bool,
    by_ip: bool,
}

const fn f(stem: &'static str, window: Window, issued: Issued, by_name: bool, by_ip: bool) -> Fixture {
    Fixture { stem, window, issued, by_name, by_ip }
}

const FIXTURES: &[Fixture] = &[
    f("master", Window::Valid, Issued::FixturePki, true, true),
    f("master-rsa", Window::Valid, Issued::FixturePki, true, true),
    f("ip-only", Window::Valid, Issued::FixturePki, false, true),
    f("dns-only", Window::Valid, Issued::FixturePki, true, false),
    f("expired", Window::Expired, Issued::FixturePki, true, true),
    f("not-yet-valid", Window::NotYetValid, Issued::FixturePki, true, true),
    f("wrong-name", Window::Valid, Issued::FixturePki, false, false),
    f("no-san", Window::Valid, Issued::FixturePki, false, false),
    f("unrelated-ca", Window::Valid, Issued::Unrelated, true, true),
    f("self-signed-ca", Window::Valid, Issued::SelfCa, true, true),
    f("self-signed-leaf", Window::Valid, Issued::SelfLeaf, true, true),
];

fn expected(mode: Mode, fx: &Fixture, by_ip: bool) -> Result<(), RejectionKind> {
    let name_ok = if by_ip { fx.by_ip } else { fx.by_name };
    let window = match fx.window {
        Window::Valid => Ok(()),
        Window::Expired => Err(Expired),
        Window::NotYetValid => Err(NotYetValid),
    };
    let name = if name_ok { Ok(()) } else { Err(NotValidForName) };
    match mode {
        Mode::SkipVerify => Ok(()),
        Mode::PinnedLeaf => window.and(name),
        Mode::CaPublic | Mode::CaFixtureRoot | Mode::PinnedRoot | Mode::PinnedChain => {
            window?;
            match fx.issued {
                // webpki refuses a CA as end entity before it looks for an issuer; when
                // pinned, that certificate simply is not the pinned one.
                Issued::SelfCa if matches!(mode, Mode::CaPublic | Mode::CaFixtureRoot) => Err(CaUsedAsEndEntity),
                Issued::SelfCa | Issued::SelfLeaf | Issued::Unrelated => Err(UnknownIssuer),
                Issued::FixturePki if mode == Mode::CaPublic => Err(UnknownIssuer),
                Issued::FixturePki => name,
            }
        }
    }
}

fn trust(mode: Mode, fx: &Fixture) -> Option<Trust> {
    match mode {
        Mode::CaPublic => Some(Trust::PublicRoots),
        Mode::CaFixtureRoot => None,
        Mode::PinnedRoot => Some(pinned("root-ca.pem")),
        Mode::PinnedChain => Some(pinned("chain-to-root.pem")),
        Mode::PinnedLeaf => {
            // Only the leaf, not the intermediate it is served with.
            let Trust::Pinned(mut p) = pinned(&format!("{}.pem", fx.stem)) else { unreachable!() };
            p.certs.truncate(1);
            Some(Trust::Pinned(p))
        }
        Mode::SkipVerify => Some(Trust::SkipVerify),
    }
}

#[tokio::test]
async fn every_mode_every_fixture_by_name_and_by_ip() {
    let mut failures = Vec::new();
    let mut cases = 0;
    for fx in FIXTURES {
        let mut master = DevMaster::with_fixture(fx.stem).await.unwrap();
        for mode in MODES {
            for (host, by_ip) in [("localhost", false), ("127.0.0.1", true)] {
                cases += 1;
                let report = match trust(mode, fx) {
                    Some(t) => dial(&config(host, master.addr(), TlsConfig::new(t))).await,
                    None => {
                        dial_with(
                            &config(host, master.addr(), TlsConfig::new(Trust::PublicRoots)),
                            ca_with_fixture_root(),
                        )
                        .await
                    }
                };
                let got = if report.verdict.ok { Ok(()) } else { Err(report.verdict.rejection) };
                let want = expected(mode, fx, by_ip);
                if got != want.map_err(Some) {
                    failures.push(format!(
                        "{} {mode:?} dial {host}: want {want:?}, got {got:?}: {}",
                        fx.stem, report.verdict.summary
                    ));
                }
                // The server saw the same thing: a handshake with the right SNI, or the
                // client's alert.
                let event = event(&mut master).await;
                match (&got, event) {
                    (Ok(()), Event::Handshake { sni, .. }) => {
                        let want_sni = (!by_ip).then(|| "localhost".to_owned());
                        if sni != want_sni {
                            failures.push(format!("{} {mode:?} dial {host}: server saw SNI {sni:?}", fx.stem));
                        }
                    }
                    (Err(_), Event::HandshakeFailed { .. }) => {}
                    (_, event) => failures.push(format!("{} {mode:?} dial {host}: server saw {event:?}", fx.stem)),
                }
            }
        }
        master.stop().await;
    }
    assert_eq!(cases, FIXTURES.len() * MODES.len() * 2);
    assert!(failures.is_empty(), "{} of {cases} cases wrong:\n{}", failures.len(), failures.join("\n"));
}
