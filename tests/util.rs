//! Shared setup: configs for each trust mode, and dialing a dev master.

use std::net::SocketAddr;
use std::time::Duration;

use det_agent::check::{self, Report};
use det_agent::config::{PinnedCerts, TlsConfig};
use det_agent::dev_master::{fixtures, DevMaster, Event};
use det_agent::tls::{self, AnchorSource, Anchors, MasterVerifier, TlsClient};
use det_agent::{Config, Host, Trust};
use rustls_pki_types::DnsName;

pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Trust from a fixture file, as if named in security.tls.master_cert.
pub fn pinned(file: &str) -> Trust {
    Trust::Pinned(PinnedCerts { path: fixtures::path(file), certs: fixtures::certs(file), store_entry: None })
}

/// A TLS config dialing `host` at `addr`'s port.
pub fn config(host: &str, addr: SocketAddr, tls: TlsConfig) -> Config {
    let mut cfg = Config::new(Host::parse(host).unwrap(), Some(tls));
    cfg.master_port = addr.port();
    cfg
}

pub fn with_name(mut tls: TlsConfig, name: &str) -> TlsConfig {
    tls.master_cert_name = Some(DnsName::try_from(name).unwrap().to_owned());
    tls
}

/// CA mode whose "host trust store" holds the fixture root, as if an operator had
/// installed it.
pub fn ca_with_fixture_root() -> TlsClient {
    ca_with_host_roots(&["root-ca.pem"])
}

/// CA mode whose "host trust store" holds the first certificate of each fixture file.
pub fn ca_with_host_roots(files: &[&str]) -> TlsClient {
    let mut anchors = Anchors::empty();
    for file in files {
        assert!(anchors.add(&fixtures::certs(file)[0], AnchorSource::HostStore(format!("test: {file}"))), "{file}");
    }
    TlsClient::with_verifier(MasterVerifier::ca_mode(anchors, tls::provider()), None, tls::provider()).unwrap()
}

/// Dials through the same code as `det-agent check`, up to the TLS handshake (without
/// `GET /info`): the peers in these tests are not all Determined masters.
pub async fn dial(cfg: &Config) -> Report {
    check::Check::new(cfg).timeout(TIMEOUT).ask_info(false).run().await
}

pub async fn dial_with(cfg: &Config, client: TlsClient) -> Report {
    check::Check::new(cfg).client(client).timeout(TIMEOUT).ask_info(false).run().await
}

/// The dev master's next event. The bound only turns a bug into a failure instead of a
/// hung CI run; every event a test waits for is caused by a dial that already returned.
pub async fn event(master: &mut DevMaster) -> Event {
    match tokio::time::timeout(Duration::from_secs(30), master.next_event()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("dev master stopped"),
        Err(_) => panic!("no dev master event within 30 s"),
    }
}

/// Clears from `cmd` what det-agent would read from this process's environment (DET_*,
/// SSL_CERT_*, RUST_LOG, systemd's NOTIFY_*/WATCHDOG_*, *_VISIBLE_DEVICES, proxies) and
/// points it at no trust store, so a test sees only what it sets.
pub fn clear_det_agent_env(cmd: &mut tokio::process::Command) {
    for (key, _) in std::env::vars() {
        let lower = key.to_ascii_lowercase();
        if key.starts_with("DET_")
            || key.starts_with("SSL_CERT")
            || key == "RUST_LOG"
            || key.starts_with("NOTIFY_")
            || key.starts_with("WATCHDOG_")
            || key.ends_with("_VISIBLE_DEVICES")
            || lower.ends_with("_proxy")
        {
            cmd.env_remove(key);
        }
    }
    cmd.env("XDG_CONFIG_HOME", "/nonexistent/det-agent-tests");
}
