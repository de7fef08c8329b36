//! Trust anchors, and the limits their own certificates put on them.
//!
//! webpki turns a certificate into a trust anchor by keeping only its subject, its key
//! and its name constraints: an anchor's validity window, its basicConstraints (CA or
//! not, pathLen) and its extendedKeyUsage are forgotten. OpenSSL and Go honour them, and
//! an operator expects them to hold: an expired CA pinned in `master_cert` must not keep
//! vouching for fresh certificates signed with its key. So every anchor whose certificate
//! we have (from `master_cert`, from the host's trust store, or presented by the master
//! under key-pin mode) keeps its [`AnchorLimits`], and every path webpki builds to it is
//! checked against them exactly as if the anchor were one more intermediate:
//!
//! - the time must be inside the anchor's validity window;
//! - a pathLen of N allows at most N intermediates between the anchor and the leaf;
//! - an extendedKeyUsage without serverAuth (or anyExtendedKeyUsage) vouches for no
//!   server;
//! - a certificate that says CA:FALSE vouches only for itself (a self-signed leaf that
//!   an operator installed in the host's store), never for another certificate.
//!
//! The bundled Mozilla roots (webpki-roots) carry no certificate, only name and key:
//! Mozilla's programme removes a root before it expires, so they bind no further limits.

use std::fmt;
use std::path::PathBuf;

use rustls::RootCertStore;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::VerifiedPath;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::text::Untrusted;
use crate::x509::{Fingerprint, Timestamp};

/// Where an anchor came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorSource {
    /// A file named by an option (`security.tls.master_cert`).
    File(PathBuf),
    /// The host's trust store, as `rustls-native-certs` reads it; the text names what
    /// was read (`SSL_CERT_FILE=…`, or the system store).
    HostStore(String),
    /// A CA certificate the master presented, trusted because its key is pinned.
    Presented,
}

impl fmt::Display for AnchorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnchorSource::File(path) => write!(f, "from {}", path.display()),
            AnchorSource::HostStore(what) => write!(f, "from this host's trust store ({what})"),
            AnchorSource::Presented => f.write_str("presented by the master, trusted for its pinned key"),
        }
    }
}

/// What an anchor's own certificate says about what it may vouch for.
#[derive(Clone, Debug)]
pub struct AnchorLimits {
    /// Its subject.
    pub subject: Untrusted,
    /// SHA-256 of its certificate.
    pub sha256: Fingerprint,
    /// Where it came from.
    pub source: AnchorSource,
    /// Start of its validity window.
    pub not_before: Timestamp,
    /// End of its validity window.
    pub not_after: Timestamp,
    /// basicConstraints pathLen: the most intermediates allowed below it.
    pub path_len: Option<u32>,
    /// basicConstraints CA:TRUE, or a v1 certificate (which predates the extension).
    pub is_ca: bool,
    /// The extendedKeyUsage it lists when it limits the certificate's purposes, in words;
    /// `None` when serverAuth is allowed (no extension, serverAuth, or any usage).
    pub eku_without_server_auth: Option<String>,
}

impl AnchorLimits {
    /// Reads the limits of an anchor's certificate; `None` when x509-parser cannot read
    /// what webpki accepted (the anchor is then not used: a limit we cannot read could
    /// be one that binds).
    pub fn parse(der: &[u8], source: AnchorSource) -> Option<AnchorLimits> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let bc = cert.basic_constraints().ok()?.map(|ext| ext.value);
        let eku = cert.extended_key_usage().ok()?.map(|ext| ext.value);
        let eku_without_server_auth = eku.filter(|e| !e.server_auth && !e.any).map(|e| {
            let mut named = Vec::new();
            for (set, name) in [
                (e.client_auth, "clientAuth"),
                (e.code_signing, "codeSigning"),
                (e.email_protection, "emailProtection"),
                (e.time_stamping, "timeStamping"),
                (e.ocsp_signing, "OCSPSigning"),
            ] {
                if set {
                    named.push(name.to_owned());
                }
            }
            named.extend(e.other.iter().map(|oid| oid.to_id_string()));
            if named.is_empty() {
                "no usage at all".to_owned()
            } else {
                named.join(", ")
            }
        });
        Some(AnchorLimits {
            subject: Untrusted::new(cert.subject().to_string()),
            sha256: Fingerprint::of(der),
            source,
            not_before: Timestamp(cert.validity().not_before.timestamp()),
            not_after: Timestamp(cert.validity().not_after.timestamp()),
            path_len: bc.as_ref().and_then(|b| b.path_len_constraint),
            is_ca: bc.as_ref().is_some_and(|b| b.ca) || cert.version().0 == 0,
            eku_without_server_auth,
        })
    }

    /// Whether this anchor may end `path` at `now`.
    fn check(&self, path: &VerifiedPath<'_>, now: UnixTime) -> Result<(), AnchorProblemKind> {
        let time = now.as_secs() as i64;
        if time < self.not_before.0 {
            return Err(AnchorProblemKind::NotYetValid);
        }
        if time > self.not_after.0 {
            return Err(AnchorProblemKind::Expired);
        }
        let below = path.intermediate_certificates().count();
        if !self.is_ca {
            // Only itself: the leaf is this very certificate, byte for byte. The same key
            // is not enough: whoever holds it could sign another certificate (other names,
            // the anchor's subject as issuer) that chains to this anchor.
            if below > 0 || Fingerprint::of(&path.end_entity().der()) != self.sha256 {
                return Err(AnchorProblemKind::NotACa);
            }
        }
        if let Some(allowed) = self.path_len {
            if below > allowed as usize {
                return Err(AnchorProblemKind::PathLen { allowed, found: below });
            }
        }
        if let Some(usages) = &self.eku_without_server_auth {
            return Err(AnchorProblemKind::NotForServerAuth { usages: usages.clone() });
        }
        Ok(())
    }
}

/// Why an anchor could not end a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorProblemKind {
    /// The anchor's certificate has expired.
    Expired,
    /// The anchor's certificate is not valid yet.
    NotYetValid,
    /// More intermediates below the anchor than its pathLen allows.
    PathLen {
        /// Its pathLen.
        allowed: u32,
        /// Intermediates on the path.
        found: usize,
    },
    /// Its extendedKeyUsage does not allow TLS servers.
    NotForServerAuth {
        /// The usages it does allow, in words.
        usages: String,
    },
    /// It says CA:FALSE but would vouch for another certificate.
    NotACa,
}

/// An anchor that could not end a path, and why.
#[derive(Clone, Debug)]
pub struct AnchorProblem {
    /// The anchor.
    pub anchor: AnchorLimits,
    /// The problem.
    pub kind: AnchorProblemKind,
}

impl AnchorProblem {
    /// The webpki error this problem counts as while webpki ranks the paths it tried:
    /// the one webpki would give for the same fault in an intermediate.
    pub(super) fn as_webpki(&self, now: UnixTime) -> webpki::Error {
        let at = |t: Timestamp| UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.0.max(0) as u64));
        match self.kind {
            AnchorProblemKind::Expired => {
                webpki::Error::CertExpired { time: now, not_after: at(self.anchor.not_after) }
            }
            AnchorProblemKind::NotYetValid => {
                webpki::Error::CertNotValidYet { time: now, not_before: at(self.anchor.not_before) }
            }
            AnchorProblemKind::PathLen { .. } => webpki::Error::PathLenConstraintViolated,
            #[allow(deprecated)]
            AnchorProblemKind::NotForServerAuth { .. } => webpki::Error::RequiredEkuNotFound,
            AnchorProblemKind::NotACa => webpki::Error::EndEntityUsedAsCa,
        }
    }
}

/// Trust anchors for webpki, each with its limits when its certificate is known.
#[derive(Debug)]
pub struct Anchors {
    roots: RootCertStore,
    /// Parallel to `roots.roots`.
    limits: Vec<Option<AnchorLimits>>,
}

impl Anchors {
    /// No anchors.
    pub fn empty() -> Anchors {
        Anchors { roots: RootCertStore::empty(), limits: Vec::new() }
    }

    /// The bundled Mozilla roots, which bind no further limits (see the module docs).
    pub fn bundled() -> Anchors {
        Anchors::unlimited(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
    }

    /// CA mode's anchors: the bundled Mozilla roots, then the host's trust store
    /// (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured), each host certificate with its
    /// limits. A host store that cannot be read is logged and skipped, so a scratch
    /// container still trusts the public CAs.
    pub fn public() -> Anchors {
        let mut anchors = Anchors::bundled();
        let native = rustls_native_certs::load_native_certs();
        for err in &native.errors {
            tracing::debug!(%err, "skipping part of the host trust store");
        }
        let what = ["SSL_CERT_FILE", "SSL_CERT_DIR"]
            .iter()
            .filter_map(|var| std::env::var_os(var).map(|v| format!("{var}={}", v.to_string_lossy())))
            .collect::<Vec<_>>();
        let source =
            AnchorSource::HostStore(if what.is_empty() { "the system store".to_owned() } else { what.join(", ") });
        let (mut added, mut ignored) = (0usize, 0usize);
        for cert in &native.certs {
            if anchors.add(cert, source.clone()) {
                added += 1;
            } else {
                ignored += 1;
            }
        }
        tracing::debug!(added, ignored, "loaded the host trust store");
        anchors
    }

    /// Adds a certificate as an anchor with its limits. Returns false (adding nothing)
    /// when webpki or x509-parser cannot use it.
    pub fn add(&mut self, der: &CertificateDer<'_>, source: AnchorSource) -> bool {
        let Some(limits) = AnchorLimits::parse(der, source) else { return false };
        let before = self.roots.roots.len();
        if self.roots.add(der.clone().into_owned()).is_err() || self.roots.roots.len() != before + 1 {
            return false;
        }
        self.limits.push(Some(limits));
        true
    }

    /// `roots` as webpki alone would use them, with no limits beyond name constraints:
    /// what the bundled roots get (they carry no certificate), and what tests compare with.
    pub fn unlimited(roots: RootCertStore) -> Anchors {
        let limits = vec![None; roots.roots.len()];
        Anchors { roots, limits }
    }

    /// How many anchors.
    pub fn len(&self) -> usize {
        self.roots.roots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.roots.roots.is_empty()
    }

    /// The anchors, for webpki.
    pub fn trust_anchors(&self) -> &[rustls_pki_types::TrustAnchor<'static>] {
        &self.roots.roots
    }

    /// The limits of the anchor that ends `path`, if its certificate is known.
    pub fn limits_for(&self, path: &VerifiedPath<'_>) -> Option<&AnchorLimits> {
        let anchor = path.anchor();
        let index = self.roots.roots.iter().position(|a| std::ptr::eq(a, anchor))?;
        self.limits.get(index)?.as_ref()
    }

    /// Why the anchor that ends `path` may not end it at `now`; `None` when it may.
    pub fn problem(&self, path: &VerifiedPath<'_>, now: UnixTime) -> Option<AnchorProblem> {
        let limits = self.limits_for(path)?;
        limits.check(path, now).err().map(|kind| AnchorProblem { anchor: limits.clone(), kind })
    }
}
