//! What the verifier relied on reaches the caller of a real handshake: the validated
//! path (never a certificate merely appended to it) with each certificate's source, in
//! every trust mode; a resumed session reports what its full handshake relied on; and
//! `det-agent check` prints the days each has left.

use std::sync::Arc;
use std::time::Duration;

use det_agent::config::{PinnedCerts, TlsConfig};
use det_agent::dev_master::{fixtures, server_config, DevMaster};
use det_agent::tls::{self, Anchors, CertSource, MasterVerifier, ReliedOn, Role, TimeProvider, TlsClient};
use det_agent::x509::KeyPin;
use det_agent::Trust;
use rustls_pki_types::{ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cli::{det_agent, pki, text, write_config};
use crate::util::*;

const ROOT: &str = "O=det-agent tests, CN=det-agent Test Root CA";
const INTERMEDIATE: &str = "O=det-agent tests, CN=det-agent Test Intermediate CA";
const MASTER: &str = "O=det-agent tests, CN=master.det.test";

/// A clock stopped at one instant.
#[derive(Debug)]
pub struct FixedTime(pub UnixTime);

impl TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(self.0)
    }
}

pub fn at(secs: u64) -> Arc<FixedTime> {
    Arc::new(FixedTime(UnixTime::since_unix_epoch(Duration::from_secs(secs))))
}

/// (role, subject, source) of each certificate relied on.
fn described(relied: &[ReliedOn]) -> Vec<(Role, String, String)> {
    relied.iter().map(|c| (c.role, c.subject.raw().to_owned(), c.source.to_string())).collect()
}

/// The certificates a check of `cfg` with `client` relied on (the client certificate
/// aside).
async fn relied_on(cfg: &det_agent::Config, client: TlsClient) -> Vec<ReliedOn> {
    let report = dial_with(cfg, client).await;
    assert!(report.verdict.ok, "{}", report.verdict.error.unwrap_or_default());
    report.relied_on.into_iter().map(|s| s.cert).collect()
}

/// A master serving `chain` with `key_file`'s key.
async fn serving(chain: Vec<rustls_pki_types::CertificateDer<'static>>, key_file: &str) -> DevMaster {
    let config = server_config(chain, fixtures::key(key_file), None).unwrap();
    DevMaster::start("127.0.0.1:0".parse().unwrap(), config).await.unwrap()
}

#[tokio::test]
async fn ca_mode_relies_on_the_validated_path_not_on_what_is_merely_appended() {
    // The master appends an unrelated CA certificate to its chain: not on the path.
    let chain = [fixtures::certs("master.pem"), fixtures::certs("unrelated-ca.pem")].concat();
    let master = serving(chain, "master.key").await;
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));
    let relied = relied_on(&cfg, ca_with_host_roots(&["root-ca.pem"])).await;
    let host = "from this host's trust store (test: root-ca.pem)".to_owned();
    assert_eq!(
        described(&relied),
        [
            (Role::Master, MASTER.to_owned(), "presented by the master".to_owned()),
            (Role::Intermediate, INTERMEDIATE.to_owned(), "presented by the master".to_owned()),
            (Role::Anchor, ROOT.to_owned(), host),
        ]
    );
    let root = det_agent::x509::CertSummary::parse(&fixtures::certs("root-ca.pem")[0]).unwrap();
    assert_eq!((relied[2].not_after, relied[2].sha256), (Some(root.not_after), Some(root.sha256)));
    assert!(relied.iter().all(|c| c.dates_checked));
}

#[tokio::test]
async fn a_bundled_style_root_has_a_name_but_no_dates() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(fixtures::certs("root-ca.pem").remove(0)).unwrap();
    let client = TlsClient::with_verifier(
        MasterVerifier::ca_mode(Anchors::unlimited(roots), tls::provider()),
        None,
        tls::provider(),
    )
    .unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::PublicRoots));
    let relied = relied_on(&cfg, client).await;
    let anchor = relied.last().unwrap();
    assert_eq!((anchor.role, anchor.subject.raw(), &anchor.source), (Role::Anchor, ROOT, &CertSource::Bundled));
    assert_eq!((anchor.not_before, anchor.not_after, anchor.sha256), (None, None, None));
}

#[tokio::test]
async fn pinned_mode_relies_on_the_file_or_the_store() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    // The chain leads to the root in the file.
    let cfg = config("localhost", master.addr(), TlsConfig::new(pinned("root-ca.pem")));
    let relied = relied_on(&cfg, TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap()).await;
    let file = format!("from {}", fixtures::path("root-ca.pem").display());
    assert_eq!(described(&relied)[2], (Role::Anchor, ROOT.to_owned(), file));
    assert_eq!(relied.len(), 3);

    // An exact match relies on the pinned certificate alone.
    let master = DevMaster::with_fixture("self-signed-leaf").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(pinned("self-signed-leaf.pem")));
    let relied = relied_on(&cfg, TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap()).await;
    let file = format!("from {}", fixtures::path("self-signed-leaf.pem").display());
    assert_eq!(described(&relied), [(Role::Master, "O=det-agent tests, CN=det master (self-signed)".to_owned(), file)]);

    // So does a certificate trusted on first use, from the store.
    let stored = Trust::Pinned(PinnedCerts {
        path: "/home/u/.config/determined/certs.json".into(),
        certs: fixtures::certs("self-signed-leaf.pem"),
        store_entry: Some("https://localhost:8443".to_owned()),
    });
    let cfg = config("localhost", master.addr(), TlsConfig::new(stored));
    let relied = relied_on(&cfg, TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap()).await;
    assert_eq!(
        relied[0].source.to_string(),
        "trusted on first use for https://localhost:8443, stored in /home/u/.config/determined/certs.json"
    );
}

#[tokio::test]
async fn skip_verify_relies_on_nothing_and_a_key_pin_on_its_key() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(Trust::SkipVerify));
    assert!(relied_on(&cfg, TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap()).await.is_empty());

    // The leaf's key pinned: the leaf, whose dates stop nothing.
    let mut tls = TlsConfig::new(Trust::SkipVerify);
    tls.master_key_pins = vec![KeyPin::of_cert(&fixtures::certs("master.pem")[0]).unwrap()];
    let cfg = config("localhost", master.addr(), tls);
    let relied = relied_on(&cfg, TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap()).await;
    assert_eq!(described(&relied), [(Role::Master, MASTER.to_owned(), "presented by the master".to_owned())]);
    assert!(!relied[0].dates_checked);

    // The presented intermediate's key pinned: the path to it, dates checked.
    let mut tls = TlsConfig::new(Trust::SkipVerify);
    tls.master_key_pins = vec![KeyPin::of_cert(&fixtures::certs("intermediate-ca.pem")[0]).unwrap()];
    let cfg = config("localhost", master.addr(), tls);
    let relied = relied_on(&cfg, TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap()).await;
    let pinned_ca = "presented by the master, trusted for its pinned key".to_owned();
    assert_eq!(described(&relied)[1], (Role::Anchor, INTERMEDIATE.to_owned(), pinned_ca));
    assert!(relied.iter().all(|c| c.dates_checked));
}

/// One handshake with `client`; returns whether it resumed and what it relied on.
async fn handshake(client: &TlsClient, addr: std::net::SocketAddr) -> (rustls::HandshakeKind, Vec<ReliedOn>) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut tls, relied) = client.handshake(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    // Read to the end so the session ticket sent after the handshake is stored.
    tls.shutdown().await.unwrap();
    let _ = tls.read_to_end(&mut Vec::new()).await;
    (kind, relied)
}

#[tokio::test]
async fn a_resumed_session_relies_on_what_its_full_handshake_did() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let client = TlsClient::new(&TlsConfig::new(pinned("root-ca.pem"))).unwrap();
    let (kind, full) = handshake(&client, master.addr()).await;
    assert_eq!((kind, full.len()), (rustls::HandshakeKind::Full, 3));
    let (kind, resumed) = handshake(&client.clone(), master.addr()).await;
    assert_eq!(kind, rustls::HandshakeKind::Resumed, "the verifier did not see this one");
    assert_eq!(resumed, full);
}

#[tokio::test]
async fn check_prints_the_days_left_and_warns_in_the_verdict() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let cfg = config("localhost", master.addr(), TlsConfig::new(pinned("root-ca.pem")));
    // The fixtures end on 2124-01-01T00:00:00Z (4_859_740_800 s): judge them 42 and then
    // 6 days earlier.
    let end: u64 = 4_859_740_800;
    let client = TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap().with_time(at(end - 42 * 86_400));
    let report = dial_with(&cfg, client).await;
    let text = report.to_string();
    let file = fixtures::path("root-ca.pem").display().to_string();
    for line in [
        format!("relied on      master certificate {MASTER} (presented by the master): expires in 42 days (2124-01-01T00:00:00Z)"),
        format!("relied on      intermediate CA {INTERMEDIATE} (presented by the master): expires in 42 days (2124-01-01T00:00:00Z)"),
        format!("relied on      trust anchor {ROOT} (from {file}): expires in 42 days (2124-01-01T00:00:00Z)"),
    ] {
        assert!(text.lines().any(|l| l == line), "{line}\nnot in\n{text}");
    }
    assert!(report.verdict.ok && report.verdict.warnings.is_empty(), "{text}");
    assert!(!text.contains("WARNING") && !text.contains("advice"), "{text}");

    let client = TlsClient::new(cfg.tls.as_ref().unwrap()).unwrap().with_time(at(end - 6 * 86_400));
    let report = dial_with(&cfg, client).await;
    let text = report.to_string();
    assert!(report.verdict.ok, "{text}");
    assert_eq!(report.verdict.warnings.len(), 3, "{text}");
    let verdict = text.lines().position(|l| l.starts_with("verdict        OK")).unwrap();
    let after: Vec<&str> = text.lines().skip(verdict + 1).collect();
    assert_eq!(after.len(), 3, "{text}");
    assert_eq!(
        after[0],
        format!("  ERROR        master certificate {MASTER} (presented by the master) expires in 6 days, on 2124-01-01T00:00:00Z: renew the master's certificate and have the master serve the new one (where certbot or another ACME client renews it, check that renewal runs and that the master reloads the certificate)")
    );
    assert!(after[2].starts_with(&format!("  ERROR        trust anchor {ROOT} (from {file}) expires in 6 days")));
    assert!(after[2].ends_with(&format!(
        "replace the CA certificate in {file} (security.tls.master_cert) with the CA's renewed certificate"
    )));
}

#[tokio::test]
async fn the_binary_prints_days_left_with_the_client_certificate_in_text_and_json() {
    let (chain, key) = fixtures::identity("master");
    let server = server_config(chain, key, Some(fixtures::certs("root-ca.pem"))).unwrap();
    let master = DevMaster::start("127.0.0.1:0".parse().unwrap(), server).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Copies with the modes an operator gives them, in a 0700 folder (the checkout's
    // modes follow git and the umask, and so does tempdir's), so that no warning about who
    // can change them joins the expiry warnings.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let copy = |name: &str, mode: u32| {
        let path = dir.path().join(name);
        std::fs::copy(pki(name), &path).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
        path
    };
    let (root, client_cert, client_key) =
        (copy("root-ca.pem", 0o644), copy("client.pem", 0o644), copy("client.key", 0o600));
    let yaml = format!(
        "master_host: localhost\nmaster_port: {}\nsecurity:\n  tls:\n    enabled: true\n    master_cert: {}\n    client_cert: {}\n    client_key: {}\n",
        master.addr().port(),
        root.display(),
        client_cert.display(),
        client_key.display(),
    );
    let path = write_config(&dir, &yaml);
    let out = det_agent(&["check", "--config", path.to_str().unwrap()], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let days = (4_859_740_800 - det_agent::x509::Timestamp::now().0) / 86_400;
    let client = format!(
        "client cert    client certificate O=det-agent tests, CN=det-agent node-1 (from {}): expires in ",
        client_cert.display()
    );
    let line = stdout.lines().find(|l| l.starts_with(&client)).unwrap_or_else(|| panic!("{client}\nnot in\n{stdout}"));
    // The day may turn between the two clocks.
    assert!([days, days - 1].iter().any(|d| line.ends_with(&format!("in {d} days (2124-01-01T00:00:00Z)"))), "{line}");
    assert_eq!(stdout.lines().filter(|l| l.starts_with("relied on      ")).count(), 3, "{stdout}");

    let out = det_agent(&["check", "--json", "--config", path.to_str().unwrap()], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let relied = json["relied_on"].as_array().unwrap();
    let roles: Vec<&str> = relied.iter().map(|c| c["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["master", "intermediate", "anchor", "client"]);
    assert_eq!(relied[3]["not_after"], "2124-01-01T00:00:00Z");
    assert_eq!(relied[3]["level"], "ok");
    assert!(relied[3]["days_left"].as_i64().is_some_and(|d| d == days || d == days - 1), "{}", relied[3]);
    assert_eq!(relied[2]["source"], format!("from {}", root.display()));
    assert_eq!(json["verdict"]["warnings"], serde_json::json!([]));
    assert_eq!(json["renewal_advice"], serde_json::Value::Null);
}

#[tokio::test]
async fn a_hostile_subject_is_shown_escaped_in_the_relied_on_lines() {
    let master = DevMaster::with_fixture("hostile-text").await.unwrap();
    let mut tls = TlsConfig::new(Trust::SkipVerify);
    tls.master_key_pins = vec![KeyPin::of_cert(&fixtures::certs("hostile-text.pem")[0]).unwrap()];
    let cfg = config("localhost", master.addr(), tls);
    let report = dial(&cfg).await;
    assert!(report.verdict.ok, "{}", report.verdict.error.unwrap_or_default());
    let text = report.to_string();
    let line = text.lines().find(|l| l.starts_with("relied on")).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("det-agent tests \\u202etxt.exe, CN=hostile\\x1b]0;pwned\\x07\\x9b31m"), "{line}");
    assert!(line.contains("not enforced: the pinned key authenticates the master"), "{line}");
    assert!(!text.chars().any(|c| c == '\x1b' || c == '\u{202e}' || c == '\u{9b}'), "{}", text.escape_debug());
}
