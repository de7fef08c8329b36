//! The agent's configuration: raw sources (YAML file, environment, flags) layered in
//! [`sources`], then checked into a [`Config`] whose types cannot express a contradiction
//! (pinned *and* unverified, a client certificate without its key).

mod sources;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer, ServerName};

pub use crate::host::{authority, Host, HostError};
use crate::x509::KeyPin;

pub use sources::{ConfigArgs, DEFAULT_CONFIG_PATH, MAX_CONFIG_SIZE, MAX_FLOW_BRACKETS};

/// The master's TLS port when TLS is on (the master's own default).
pub const DEFAULT_TLS_PORT: u16 = 8443;
/// The master's port when TLS is off.
pub const DEFAULT_PLAIN_PORT: u16 = 8080;

/// A checked agent configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Host dialed over TCP.
    pub master_host: Host,
    /// Port dialed over TCP.
    pub master_port: u16,
    /// This agent's ID (default: the hostname).
    pub agent_id: String,
    /// The resource pool the agent joins.
    pub resource_pool: String,
    /// The master's address as seen from inside task containers, when it differs.
    pub container_master_host: Option<Host>,
    /// The master's port as seen from inside task containers, when it differs.
    pub container_master_port: Option<u16>,
    /// Consecutive failed reconnects before giving up; 0 means never give up.
    pub agent_reconnect_attempts: u32,
    /// Base delay between reconnects (see [`crate::backoff`]).
    pub agent_reconnect_backoff: Duration,
    /// Cap on one reconnect delay.
    pub agent_reconnect_backoff_max: Duration,
    /// Largest message accepted from the master, in bytes.
    pub max_message_size: usize,
    /// TLS settings; `None` when TLS is off.
    pub tls: Option<TlsConfig>,
    /// The Fluent Bit configuration det-agent writes (the `fluent` section).
    pub fluent: FluentConfig,
}

impl Config {
    /// A configuration with every default, for the given master, TLS as given.
    pub fn new(master_host: Host, tls: Option<TlsConfig>) -> Self {
        let master_port = if tls.is_some() { DEFAULT_TLS_PORT } else { DEFAULT_PLAIN_PORT };
        Config {
            master_host,
            master_port,
            agent_id: sources::default_agent_id(),
            resource_pool: "default".to_owned(),
            container_master_host: None,
            container_master_port: None,
            agent_reconnect_attempts: 0,
            agent_reconnect_backoff: Duration::from_secs(5),
            agent_reconnect_backoff_max: crate::backoff::DEFAULT_CAP,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            tls,
            fluent: FluentConfig::default(),
        }
    }

    /// The trust mode's short name (`ca`, `pinned`, `skip-verify`, `key-pin`), or `plain`
    /// when TLS is off.
    pub fn mode_name(&self) -> &'static str {
        self.tls.as_ref().map_or("plain", TlsConfig::mode_name)
    }

    /// The name the master's certificate is verified against (and sent as SNI when it is
    /// a DNS name): `master_cert_name` when set, else the dialed host.
    pub fn server_name(&self) -> ServerName<'static> {
        match self.tls.as_ref().and_then(|t| t.master_cert_name.as_ref()) {
            Some(name) => ServerName::DnsName(name.clone()),
            None => self.master_host.server_name(),
        }
    }
}

/// The `fluent` section: where `det-agent run` keeps a Fluent Bit configuration that
/// follows the agent's trust settings, and the log input it describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluentConfig {
    /// When set, `det-agent run` writes the Fluent Bit configuration here at start and
    /// after every SIGHUP reload.
    pub config_dir: Option<PathBuf>,
    /// The configuration format written.
    pub format: FluentFormat,
    /// Address of Fluent Bit's `forward` input, where tasks send their logs.
    pub listen: IpAddr,
    /// Port of the `forward` input (Determined's `fluent.port`).
    pub port: u16,
    /// Seconds between Fluent Bit's flushes to the master.
    pub flush_secs: u32,
}

/// Fluent Bit's two configuration formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FluentFormat {
    /// `[SECTION]` blocks of `Key value` lines (`fluent-bit.conf`).
    Classic,
    /// YAML (`fluent-bit.yaml`; Fluent Bit needs the .yaml extension to read it as YAML).
    Yaml,
}

impl FluentFormat {
    /// The file name this format is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            FluentFormat::Classic => "fluent-bit.conf",
            FluentFormat::Yaml => "fluent-bit.yaml",
        }
    }
}

impl std::str::FromStr for FluentFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "classic" => Ok(FluentFormat::Classic),
            "yaml" => Ok(FluentFormat::Yaml),
            _ => Err("expected classic or yaml".to_owned()),
        }
    }
}

/// The largest message accepted from the master by default: the master's own limit
/// (Determined's master/pkg/ws/ws.go `maxMessageSize`, 128 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 << 20;

/// Fluent Bit's own default for the `forward` input.
pub const DEFAULT_FLUENT_PORT: u16 = 24224;

impl Default for FluentConfig {
    fn default() -> Self {
        FluentConfig {
            config_dir: None,
            format: FluentFormat::Classic,
            listen: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port: DEFAULT_FLUENT_PORT,
            flush_secs: 1,
        }
    }
}

/// How the agent trusts the master, with the files it needs already loaded.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// Which certificates may vouch for the master.
    pub trust: Trust,
    /// Name to verify and send as SNI instead of the dialed host.
    pub master_cert_name: Option<DnsName<'static>>,
    /// Client certificate and key for mutual TLS.
    pub client_identity: Option<ClientIdentity>,
    /// `master_key_pins`: when not empty, a certificate with one of these keys must be on
    /// the path the verifier relies on, in addition to the trust mode's checks. Under
    /// skip_verify they are what authenticates the master.
    pub master_key_pins: Vec<KeyPin>,
}

impl TlsConfig {
    /// TLS with the given trust, no name override, no client certificate, no key pins.
    pub fn new(trust: Trust) -> Self {
        TlsConfig { trust, master_cert_name: None, client_identity: None, master_key_pins: Vec::new() }
    }

    /// The trust mode's short name, `key-pin` for skip_verify with pins.
    pub fn mode_name(&self) -> &'static str {
        match (&self.trust, self.master_key_pins.is_empty()) {
            (Trust::SkipVerify, false) => "key-pin",
            (trust, _) => trust.mode_name(),
        }
    }
}

/// The trust mode and the key pins, in words.
impl fmt::Display for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pins: Vec<String> = self.master_key_pins.iter().map(KeyPin::to_string).collect();
        match (&self.trust, pins.is_empty()) {
            (trust, true) => trust.fmt(f),
            (Trust::SkipVerify, false) => write!(
                f,
                "key-pin mode (skip_verify with master_key_pins: the pinned key authenticates the master; no name check): {}",
                pins.join(", ")
            ),
            (trust, false) => write!(f, "{trust}, with master_key_pins {}", pins.join(", ")),
        }
    }
}

/// The trust mode. Exactly one applies; the type makes "pinned and unverified" impossible.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The master's chain must lead to a public CA (Mozilla's list) or a CA in the
    /// host's trust store.
    PublicRoots,
    /// The certificates of `master_cert` are the only anchors.
    Pinned(PinnedCerts),
    /// Encrypted but unauthenticated: no chain or name check. Handshake signatures are
    /// still verified.
    SkipVerify,
}

impl Trust {
    /// A short name for tables and logs: `ca`, `pinned` or `skip-verify`.
    pub fn mode_name(&self) -> &'static str {
        match self {
            Trust::PublicRoots => "ca",
            Trust::Pinned(_) => "pinned",
            Trust::SkipVerify => "skip-verify",
        }
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::PublicRoots => f.write_str("CA mode (public roots and the host's trust store)"),
            Trust::Pinned(p) => p.fmt(f),
            Trust::SkipVerify => f.write_str("skip_verify mode (master identity NOT verified)"),
        }
    }
}

/// The certificates from `security.tls.master_cert`, and the file they came from.
#[derive(Clone, Debug)]
pub struct PinnedCerts {
    /// The file, for messages.
    pub path: PathBuf,
    /// Its certificates, in file order; never empty.
    pub certs: Vec<CertificateDer<'static>>,
    /// Set when the certificates were trusted on first use (`det-agent trust`): the
    /// entry's URL in the shared store, and `path` is the store file.
    pub store_entry: Option<String>,
}

impl fmt::Display for PinnedCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.certs.len();
        let s = if n == 1 { "" } else { "s" };
        match &self.store_entry {
            Some(url) => {
                write!(f, "trusted-on-first-use mode ({n} certificate{s} stored for {url} in {})", self.path.display())
            }
            None => write!(f, "pinned mode ({n} certificate{s} from {})", self.path.display()),
        }
    }
}

/// A client certificate chain and its private key, checked to belong together.
#[derive(Clone)]
pub struct ClientIdentity {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl ClientIdentity {
    /// Pairs a chain with its key. Callers outside config should go through
    /// [`ClientIdentity::load`], which checks that they match.
    pub(crate) fn new(
        cert_path: PathBuf,
        key_path: PathBuf,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        ClientIdentity { cert_path, key_path, chain, key: Arc::new(key) }
    }

    /// Loads and checks a client certificate and key.
    ///
    /// # Errors
    /// Either file cannot be used, or the key does not belong to the certificate.
    pub fn load(cert_path: &std::path::Path, key_path: &std::path::Path) -> Result<Self, crate::error::ConfigError> {
        sources::load_client_identity(cert_path, key_path, crate::error::Origin::Api, crate::error::Origin::Api)
    }

    /// A copy of the private key.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_override_wins_over_dialed_ip() {
        let mut tls = TlsConfig::new(Trust::PublicRoots);
        tls.master_cert_name = Some(DnsName::try_from("master.example.com").unwrap().to_owned());
        let cfg = Config::new(Host::parse("10.0.0.5").unwrap(), Some(tls));
        assert_eq!(cfg.server_name(), ServerName::try_from("master.example.com").unwrap());
        assert_eq!(cfg.master_port, DEFAULT_TLS_PORT);
    }
}
