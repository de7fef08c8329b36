//! What the verifier relied on when it accepted the master: the certificates whose
//! expiry would stop the agent connecting, each with its role, its validity window and
//! where it came from. The expiry module (`det_agent::expiry`) turns these into
//! warnings before they bite.
//!
//! Only certificates on the path the verifier actually validated count: an
//! intermediate the master appends but the path does not use is not relied on, and
//! neither is anything under bare skip_verify.

use std::fmt;
use std::path::PathBuf;

use rustls_pki_types::{CertificateDer, UnixTime};
use serde::{Serialize, Serializer};
use webpki::VerifiedPath;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::anchors::{AnchorSource, Anchors};
use crate::text::Untrusted;
use crate::x509::{CertSummary, Fingerprint, Timestamp};

/// What a certificate does for the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The master's own certificate (the leaf), presented or pinned.
    Master,
    /// A CA certificate between the leaf and the anchor.
    Intermediate,
    /// The trust anchor that ends the validated path.
    Anchor,
    /// The agent's own client certificate (`security.tls.client_cert`), which the
    /// master checks; never produced by the verifier.
    Client,
}

impl Role {
    /// The role in words: `master certificate`, `intermediate CA`, `trust anchor`,
    /// `client certificate`.
    pub fn words(self) -> &'static str {
        match self {
            Role::Master => "master certificate",
            Role::Intermediate => "intermediate CA",
            Role::Anchor => "trust anchor",
            Role::Client => "client certificate",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.words())
    }
}

/// Where a certificate relied on came from, which says who can renew or replace it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CertSource {
    /// The master presented it in the handshake.
    Presented,
    /// A file named by an option: `security.tls.master_cert` (a pinned certificate or
    /// an anchor) or `security.tls.client_cert`.
    File(PathBuf),
    /// The host's trust store; the text names what was read.
    HostStore(String),
    /// A CA certificate the master presented, trusted because its key is pinned.
    PresentedPinnedKey,
    /// One of the bundled Mozilla roots, whose certificate is not bundled (only its name
    /// and key): its validity is not known, and Mozilla removes a root before it expires.
    Bundled,
    /// The trust-on-first-use store (`det-agent trust`).
    TrustStore {
        /// The store file.
        path: PathBuf,
        /// The master's entry.
        url: String,
    },
}

impl From<&AnchorSource> for CertSource {
    fn from(source: &AnchorSource) -> Self {
        match source {
            AnchorSource::File(path) => CertSource::File(path.clone()),
            AnchorSource::HostStore(what) => CertSource::HostStore(what.clone()),
            AnchorSource::Presented => CertSource::PresentedPinnedKey,
        }
    }
}

impl fmt::Display for CertSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertSource::Presented => f.write_str("presented by the master"),
            CertSource::File(path) => write!(f, "from {}", path.display()),
            CertSource::HostStore(what) => write!(f, "from this host's trust store ({what})"),
            CertSource::PresentedPinnedKey => f.write_str("presented by the master, trusted for its pinned key"),
            CertSource::Bundled => f.write_str("one of the bundled Mozilla roots"),
            CertSource::TrustStore { path, url } => {
                write!(f, "trusted on first use for {url}, stored in {}", path.display())
            }
        }
    }
}

impl Serialize for CertSource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One certificate the agent relies on to reach the master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReliedOn {
    /// What it does for the connection.
    pub role: Role,
    /// Its subject, as the certificate spells it (shown escaped).
    pub subject: Untrusted,
    /// Start of its validity window; `None` when its certificate is not known (a
    /// bundled root).
    pub not_before: Option<Timestamp>,
    /// End of its validity window; `None` as for `not_before`.
    pub not_after: Option<Timestamp>,
    /// SHA-256 of its certificate, when known.
    pub sha256: Option<Fingerprint>,
    /// Where it came from.
    pub source: CertSource,
    /// Whether its dates are checked on every connection. False only for the leaf under
    /// skip_verify with its key pinned: there the key authenticates the master and the
    /// certificate's expiry stops nothing.
    pub dates_checked: bool,
}

impl ReliedOn {
    /// A certificate whose summary is known.
    pub fn from_summary(role: Role, cert: &CertSummary, source: CertSource) -> ReliedOn {
        ReliedOn {
            role,
            subject: cert.subject.clone(),
            not_before: Some(cert.not_before),
            not_after: Some(cert.not_after),
            sha256: Some(cert.sha256),
            source,
            dates_checked: true,
        }
    }

    /// A DER certificate; `None` when it does not parse. Reads only what a `ReliedOn`
    /// holds, since every full validation makes these.
    pub fn from_der(role: Role, der: &[u8], source: CertSource) -> Option<ReliedOn> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(ReliedOn {
            role,
            subject: Untrusted::new(cert.subject().to_string()),
            not_before: Some(Timestamp(cert.validity().not_before.timestamp())),
            not_after: Some(Timestamp(cert.validity().not_after.timestamp())),
            sha256: Some(Fingerprint::of(der)),
            source,
            dates_checked: true,
        })
    }
}

/// The certificates of a validated path, leaf first, then the intermediates the path
/// uses (from the leaf up), then its anchor: with its own certificate's dates and source
/// when the anchor has limits, else as a bundled root named by the issuer of the
/// certificate below it.
pub(super) fn of_path(path: &VerifiedPath<'_>, anchors: &Anchors) -> Vec<ReliedOn> {
    let leaf = path.end_entity().der();
    let intermediates: Vec<_> = path.intermediate_certificates().map(|c| c.der()).collect();
    let mut relied = Vec::with_capacity(intermediates.len() + 2);
    relied.extend(ReliedOn::from_der(Role::Master, &leaf, CertSource::Presented));
    relied
        .extend(intermediates.iter().filter_map(|c| ReliedOn::from_der(Role::Intermediate, c, CertSource::Presented)));
    let anchor = match anchors.limits_for(path) {
        Some(limits) => ReliedOn {
            role: Role::Anchor,
            subject: limits.subject.clone(),
            not_before: Some(limits.not_before),
            not_after: Some(limits.not_after),
            sha256: Some(limits.sha256),
            source: CertSource::from(&limits.source),
            dates_checked: true,
        },
        None => {
            // The anchor's name is the issuer of the topmost certificate of the path.
            let top = intermediates.last().unwrap_or(&leaf);
            let issuer = X509Certificate::from_der(top).map(|(_, c)| c.issuer().to_string()).unwrap_or_default();
            ReliedOn {
                role: Role::Anchor,
                subject: Untrusted::new(issuer),
                not_before: None,
                not_after: None,
                sha256: None,
                source: CertSource::Bundled,
                dates_checked: true,
            }
        }
    };
    relied.push(anchor);
    relied
}

/// The certificates a path from `end_entity` through `intermediates` to one of
/// `anchors` relies on, when one is valid at `at` for TLS server authentication within
/// its anchor's limits; `None` when there is none. No name is checked: this tells who
/// issued a certificate (for `det_agent::expiry::renewal_advice`), and never decides
/// whether to trust a connection.
pub fn issued_under(
    anchors: &Anchors,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    at: UnixTime,
) -> Option<Vec<ReliedOn>> {
    let algorithms = crate::crypto::provider().signature_verification_algorithms.all;
    super::path::validate(anchors, &[], end_entity, intermediates, at, algorithms).ok().map(|a| a.relied_on)
}
