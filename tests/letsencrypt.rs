//! The README's walk-through "A master with a Let's Encrypt certificate", run: a dev
//! master serving certbot's fullchain.pem and privkey.pem, the agent in CA mode dialing
//! an IP address with `master_cert_name` set to the certificate's domain, at times
//! injected inside the certificates' 90 days. The README's agent.yaml is loaded as
//! written, and what it quotes of `det-agent check` and `det-agent fluent-bit` must
//! appear in their output exactly.
//!
//! The PKI (fixtures/pki/letsencrypt) is certbot's live layout for a test root standing
//! in for ISRG Root X1 and an R10 stand-in. The test root is made one of the "bundled"
//! roots with `Anchors::unlimited`, which is how the real ISRG Root X1 reaches the
//! verifier: from the bundled Mozilla roots (webpki-roots), as a name and a key without
//! a certificate. (`Anchors::add`, as `util::ca_with_host_roots` does, would model a
//! root installed in the host's trust store instead.)

use std::net::SocketAddr;
use std::path::Path;

use det_agent::check::{Check, Report};
use det_agent::config::{PinnedCerts, TlsConfig};
use det_agent::dev_master::{fixtures, server_config, DevMaster};
use det_agent::fluent_bit::{CaFile, Format, HostStore, Pipeline};
use det_agent::tls::{self, Anchors, CertSource, MasterVerifier, RejectionKind, Role, TlsClient};
use det_agent::x509::KeyPin;
use det_agent::{Config, ConfigArgs, Host, Trust};

use crate::relied_on::at;
use crate::util::TIMEOUT;

/// 2030-03-31T23:59:59Z, the first leaf's notAfter.
const NOT_AFTER: u64 = 1_901_231_999;
const DAY: u64 = 86_400;
/// 2030-02-17T00:00:00Z: 42 days (and 23:59:59) before it ends.
const FEB_17: u64 = 1_897_516_800;
/// 2030-03-15T00:00:00Z: inside both the first leaf's window and its renewals'.
const MAR_15: u64 = 1_899_763_200;
/// How the README writes the address the test dials on loopback (no traffic may leave
/// this machine, so the walk-through's private IP is 127.0.0.1 here).
const README_ADDRESS: &str = "10.0.0.5:8443";

fn le(file: &str) -> String {
    format!("letsencrypt/{file}")
}

/// The test ISRG Root X1 as one of the bundled public roots.
fn public_roots() -> Anchors {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(fixtures::certs(&le("test-isrg-root-x1.pem")).remove(0)).unwrap();
    Anchors::unlimited(roots)
}

/// The agent's TLS client for `tls` at `secs`: CA mode's anchors are the bundled-style
/// test root (see the module documentation); pinned mode as configured.
fn client(tls: &TlsConfig, secs: u64) -> TlsClient {
    let client = match tls.trust {
        Trust::PublicRoots => {
            let verifier =
                MasterVerifier::ca_mode(public_roots(), tls::provider()).with_key_pins(tls.master_key_pins.clone());
            TlsClient::with_verifier(verifier, None, tls::provider()).unwrap()
        }
        _ => TlsClient::new(tls).unwrap(),
    };
    client.with_time(at(secs))
}

/// A dev master serving certbot's files from `dir` (`""`: the first issue).
async fn master(dir: &str) -> DevMaster {
    let chain = fixtures::certs(&le(&format!("{dir}fullchain.pem")));
    let key_dir = if dir == "renewed-new-key/" { dir } else { "" };
    let key = fixtures::key(&le(&format!("{key_dir}privkey.pem")));
    DevMaster::start("127.0.0.1:0".parse().unwrap(), server_config(chain, key, None).unwrap()).await.unwrap()
}

/// The README's section, from its heading to the next.
fn section() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("\n## A master with a Let's Encrypt certificate\n").expect("the README has the section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_owned()
}

/// The section's code blocks fenced as ```LANG, in order.
fn blocks(lang: &str) -> Vec<String> {
    let section = section();
    let mut found = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line == format!("```{lang}") {
            found.push(lines.by_ref().take_while(|l| *l != "```").collect::<Vec<_>>().join("\n"));
        }
    }
    found
}

/// The first block of `lang` that contains `marker`.
fn block(lang: &str, marker: &str) -> String {
    blocks(lang).into_iter().find(|b| b.contains(marker)).unwrap_or_else(|| panic!("no ```{lang} block with {marker}"))
}

/// Every line of `quoted` appears in `output`, in order: exactly, or as a prefix when it
/// ends with `…`; a line that is `…` alone stands for lines left out.
fn assert_quotes(quoted: &str, output: &str) {
    let mut out = output.lines();
    for line in quoted.lines().filter(|l| *l != "…") {
        let found = match line.strip_suffix('…') {
            Some(prefix) => out.any(|o| o.starts_with(prefix)),
            None => out.any(|o| o == line),
        };
        assert!(found, "the README quotes\n{line}\nwhich is not (in this order) in the output:\n{output}");
    }
}

/// The README's agent.yaml, loaded as written, then dialed on loopback at `addr`.
fn readme_config(addr: SocketAddr) -> Config {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, block("yaml", "master_cert_name")).unwrap();
    let mut config = ConfigArgs { config: vec![path], ..ConfigArgs::default() }.load(&|_| None).unwrap();
    assert_eq!(config.master_host.to_string(), "10.0.0.5");
    assert_eq!(config.master_port, 8443);
    config.master_host = Host::parse("127.0.0.1").unwrap();
    config.master_port = addr.port();
    config
}

async fn check(config: &Config, secs: u64) -> (Report, String) {
    let client = client(config.tls.as_ref().unwrap(), secs);
    let report = Check::new(config).client(client).public_roots(public_roots()).timeout(TIMEOUT).run().await;
    let text = report.to_string().replace(&format!("127.0.0.1:{}", config.master_port), README_ADDRESS);
    (report, text)
}

#[tokio::test]
async fn the_walkthrough_verifies_a_lets_encrypt_master_in_ca_mode() {
    let master = master("").await;
    let config = readme_config(master.addr());
    assert_eq!(config.mode_name(), "ca");
    let (report, text) = check(&config, FEB_17).await;
    assert!(report.verdict.ok, "{text}");
    assert_eq!(report.master.as_ref().map(|m| m.cluster_name.raw()), Some("det-agent dev master"));
    assert_quotes(&block("text", "relied on      master certificate"), &text);
    let relied: Vec<(Role, &CertSource)> = report.relied_on.iter().map(|s| (s.cert.role, &s.cert.source)).collect();
    assert_eq!(
        relied,
        [
            (Role::Master, &CertSource::Presented),
            (Role::Intermediate, &CertSource::Presented),
            (Role::Anchor, &CertSource::Bundled)
        ]
    );
    assert!(report.verdict.warnings.is_empty() && report.renewal_advice.is_none(), "{text}");
}

#[tokio::test]
async fn expiry_warnings_come_29_6_and_0_days_before_the_end() {
    let master = master("").await;
    let config = readme_config(master.addr());
    let (report, text) = check(&config, NOT_AFTER - 29 * DAY).await;
    assert!(report.verdict.ok, "{text}");
    assert_quotes(&block("text", "WARNING"), &text);
    assert_eq!(report.verdict.warnings.len(), 1, "only the leaf ends within 30 days: {text}");

    let (report, text) = check(&config, NOT_AFTER - 6 * DAY).await;
    assert!(report.verdict.ok, "{text}");
    assert!(text.contains("\n  ERROR        master certificate CN=master.example.com (presented by the master) expires in 6 days, on 2030-03-31T23:59:59Z: renew"), "{text}");

    let (report, text) = check(&config, NOT_AFTER).await;
    assert!(report.verdict.ok, "{text}");
    assert!(text.contains("\n  ERROR        master certificate CN=master.example.com (presented by the master) expires in less than a day, on 2030-03-31T23:59:59Z"), "{text}");

    // A second later the verifier refuses it: expiry has bitten.
    let (report, _) = check(&config, NOT_AFTER + 1).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::Expired));
}

fn pinned_leaf() -> TlsConfig {
    let file = le("cert.pem");
    let trust =
        Trust::Pinned(PinnedCerts { path: fixtures::path(&file), certs: fixtures::certs(&file), store_entry: None });
    let mut tls = TlsConfig::new(trust);
    tls.master_cert_name = Some(rustls_pki_types::DnsName::try_from("master.example.com").unwrap().to_owned());
    tls
}

fn key_pinned(tls: &TlsConfig) -> TlsConfig {
    let mut tls = tls.clone();
    tls.master_key_pins = vec![KeyPin::of_cert(&fixtures::certs(&le("cert.pem"))[0]).unwrap()];
    tls
}

#[tokio::test]
async fn a_renewal_breaks_a_pinned_leaf_and_keeps_a_key_pin_while_the_key_stays() {
    let first = master("").await;
    let same_key = master("renewed-same-key/").await;
    let new_key = master("renewed-new-key/").await;
    let ca = readme_config(first.addr()).tls.unwrap();
    let with = |tls: &TlsConfig, m: &DevMaster| {
        let mut config = readme_config(m.addr());
        config.tls = Some(tls.clone());
        config
    };

    // The leaf pinned: verified until the renewal, then refused; check explains why.
    let (report, text) = check(&with(&pinned_leaf(), &first), MAR_15).await;
    assert!(report.verdict.ok, "{text}");
    let readme_path = "/etc/letsencrypt/live/master.example.com/cert.pem";
    let text = text.replace(&fixtures::path(&le("cert.pem")).display().to_string(), readme_path);
    assert_quotes(&block("text", "advice         "), &text);
    let advice = report.renewal_advice.unwrap();
    assert!(advice.contains("certbot's --reuse-key") && advice.contains("Let's Encrypt's live 90 days"), "{advice}");
    let (report, text) = check(&with(&pinned_leaf(), &same_key), MAR_15).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::UnknownIssuer), "{text}");
    assert!(report.renewal_advice.is_some_and(|a| a.contains("this pin breaks at the master's next renewal")));

    // The key pinned in CA mode: the renewal with the same key passes, a new key does not.
    for (master, ok) in [(&first, true), (&same_key, true), (&new_key, false)] {
        let (report, text) = check(&with(&key_pinned(&ca), master), MAR_15).await;
        assert_eq!(report.verdict.ok, ok, "{text}");
        if !ok {
            assert_eq!(report.verdict.rejection, Some(RejectionKind::KeyPinMismatch), "{text}");
        }
        assert!(report.renewal_advice.is_none(), "CA mode needs no advice: {text}");
    }
    // CA mode alone takes every renewal in its stride.
    for master in [&first, &same_key, &new_key] {
        let (report, text) = check(&with(&ca, master), MAR_15).await;
        assert!(report.verdict.ok, "{text}");
    }
}

#[test]
fn fluent_bit_verifies_the_master_by_its_domain_with_the_system_store() {
    let config = readme_config("127.0.0.1:8443".parse().unwrap());
    let mut config_as_written = config.clone();
    config_as_written.master_host = Host::parse("10.0.0.5").unwrap();
    // The system store, as on a node where neither SSL_CERT_FILE nor SSL_CERT_DIR is set.
    let pipeline = Pipeline::build_with(&config_as_written, CaFile::Original, None, &HostStore::system()).unwrap();
    let text = pipeline.render(Format::Classic).unwrap();
    assert_quotes(&block("ini", "tls.vhost"), &text);
    assert!(!text.contains("tls.ca_file"), "{text}");
    assert!(pipeline.warnings().is_empty(), "{:?}", pipeline.warnings());
}
