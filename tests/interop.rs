//! det-agent against a master that is not rustls: Debian's `openssl s_server` serving
//! the fixture PKI (`.ci/run` installs openssl when it is missing).

use std::net::SocketAddr;
use std::process::Stdio;

use det_agent::config::TlsConfig;
use det_agent::tls::RejectionKind;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::util::*;

/// Starts `openssl s_server` for one connection on a free loopback port and returns once
/// it prints the address it listens on.
async fn s_server(stem: &str, extra: &[&str]) -> (Child, SocketAddr) {
    let pki = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pki");
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
        .args(["-cert", &format!("{pki}/{stem}.pem"), "-key", &format!("{pki}/{stem}.key")])
        .args(["-cert_chain", &format!("{pki}/intermediate-ca.pem")])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl runs (install Debian's openssl package)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(addr) = line.strip_prefix("ACCEPT ") {
            // Keep draining its output so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (child, addr.parse().unwrap());
        }
    }
    panic!("openssl s_server exited before listening");
}

#[tokio::test]
async fn openssl_master_tls13_ecdsa_is_verified_by_name() {
    let (_server, addr) = s_server("master", &[]).await;
    let report = dial(&config("localhost", addr, TlsConfig::new(pinned("root-ca.pem")))).await;
    assert!(report.verdict.ok, "{}", report.verdict.error.unwrap_or_default());
    assert_eq!(report.tls_version.as_deref(), Some("TLSv1_3"));
    assert_eq!(report.chain.len(), 2, "leaf and intermediate");
}

#[tokio::test]
async fn openssl_master_tls12_rsa_is_verified_by_ip() {
    let (_server, addr) = s_server("master-rsa", &["-tls1_2"]).await;
    let report = dial(&config("127.0.0.1", addr, TlsConfig::new(pinned("chain-to-root.pem")))).await;
    assert!(report.verdict.ok, "{}", report.verdict.error.unwrap_or_default());
    assert_eq!(report.tls_version.as_deref(), Some("TLSv1_2"));
}

#[tokio::test]
async fn openssl_master_with_an_unpinned_chain_is_refused() {
    let (_server, addr) = s_server("master", &[]).await;
    let report = dial(&config("localhost", addr, TlsConfig::new(pinned("other-root-ca.pem")))).await;
    assert_eq!(report.verdict.rejection, Some(RejectionKind::UnknownIssuer));
}

/// A pin as kubeadm's documentation computes one, with the openssl command line.
fn openssl_pin(file: &str) -> det_agent::x509::KeyPin {
    let pki = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pki");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -in {pki}/{file} -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -r"
        ))
        .output()
        .expect("sh runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hex = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", hex.split_whitespace().next().unwrap()).parse().unwrap()
}

#[tokio::test]
async fn key_pins_equal_the_ones_openssl_computes() {
    use det_agent::dev_master::fixtures;
    use det_agent::x509::KeyPin;
    for file in ["master.pem", "master-rsa.pem", "intermediate-ca.pem", "root-ca.pem", "self-signed-ca.pem"] {
        assert_eq!(KeyPin::of_cert(&fixtures::certs(file)[0]).unwrap(), openssl_pin(file), "{file}");
    }
    // And an openssl master (TLS 1.2, RSA) is authenticated under skip_verify by the
    // pin openssl computed.
    let (_server, addr) = s_server("master-rsa", &["-tls1_2"]).await;
    let mut tls = TlsConfig::new(det_agent::Trust::SkipVerify);
    tls.master_key_pins = vec![openssl_pin("master-rsa.pem")];
    let report = dial(&config("127.0.0.1", addr, tls)).await;
    assert!(report.verdict.ok, "{}", report.verdict.error.unwrap_or_default());
    assert_eq!(report.mode, "key-pin");
    assert_eq!(report.chain[0].key_pin, openssl_pin("master-rsa.pem"));
}

/// Dials an `openssl s_server` serving `stem` with `tls`, and returns what the server
/// printed on stderr about the connection: the alert det-agent sent, as the master's log
/// would show it.
async fn alert_seen_by_openssl(stem: &str, host: &str, tls: TlsConfig) -> String {
    let pki = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/pki");
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-naccept", "1"])
        .args(["-cert", &format!("{pki}/{stem}.pem"), "-key", &format!("{pki}/{stem}.key")])
        .args(["-cert_chain", &format!("{pki}/intermediate-ca.pem")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl runs (install Debian's openssl package)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next_line().await.unwrap().expect("openssl s_server printed ACCEPT");
        if let Some(addr) = line.strip_prefix("ACCEPT ") {
            break addr.parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let report = dial(&config(host, addr, tls)).await;
    assert!(!report.verdict.ok, "the dial was meant to be refused");
    // -naccept 1: the server exits after this one connection, closing its stderr.
    let mut stderr = String::new();
    let mut pipe = child.stderr.take().unwrap();
    tokio::io::AsyncReadExt::read_to_string(&mut pipe, &mut stderr).await.unwrap();
    stderr
}

#[tokio::test]
async fn the_master_is_told_why_with_the_matching_tls_alert() {
    use det_agent::x509::KeyPin;
    let unknown = alert_seen_by_openssl("master", "localhost", TlsConfig::new(pinned("other-root-ca.pem"))).await;
    assert!(unknown.contains("alert unknown ca") && unknown.contains("SSL alert number 48"), "{unknown}");
    let expired = alert_seen_by_openssl("expired", "localhost", TlsConfig::new(pinned("root-ca.pem"))).await;
    assert!(expired.contains("alert certificate expired") && expired.contains("number 45"), "{expired}");
    let name = with_name(TlsConfig::new(pinned("root-ca.pem")), "other.det.test");
    let wrong_name = alert_seen_by_openssl("master", "127.0.0.1", name).await;
    assert!(wrong_name.contains("alert bad certificate") && wrong_name.contains("number 42"), "{wrong_name}");
    let mut pins = TlsConfig::new(pinned("root-ca.pem"));
    pins.master_key_pins = vec![KeyPin([7; 32])];
    let pin = alert_seen_by_openssl("master", "localhost", pins).await;
    assert!(pin.contains("alert bad certificate") && pin.contains("number 42"), "{pin}");
}
