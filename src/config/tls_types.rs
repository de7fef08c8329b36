//! The trust settings, checked and loaded: the trust mode with its certificates, the name
//! to verify, the client identity and the key pins. Their assembly from the layered
//! options is in `tls.rs`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, DnsName, PrivateKeyDer};

use crate::x509::KeyPin;

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

    /// Whether the master's certificate is checked against a name: not under
    /// skip_verify, with or without key pins (a pin authenticates the key, not a name).
    pub fn checks_names(&self) -> bool {
        !matches!(self.trust, Trust::SkipVerify)
    }

    /// Whether nothing authenticates the master: skip_verify without key pins.
    pub fn unauthenticated(&self) -> bool {
        matches!(self.trust, Trust::SkipVerify) && self.master_key_pins.is_empty()
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
        super::tls::load_client_identity(cert_path, key_path, crate::error::Origin::Api, crate::error::Origin::Api)
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
