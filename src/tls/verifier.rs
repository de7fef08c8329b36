//! The master certificate verifier: one [`ServerCertVerifier`] for the three trust modes.
//!
//! The trust decision is made here, once per handshake, and leaves as a value: rustls's
//! `ServerCertVerified` assertion, returned last after every check, or a [`Rejection`]
//! that explains itself. Handshake signatures are verified with the provider's algorithms
//! in every mode, skip_verify included.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::rejection::Rejection;
use crate::config::{PinnedCerts, Trust};
use crate::x509::{CertSummary, Fingerprint};

/// Where the name being verified came from, so a rejection can name the option to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameSource {
    /// The dialed `master_host`.
    DialedHost,
    /// `security.tls.master_cert_name`.
    MasterCertName,
}

/// Verifies the master's certificate as the operator configured.
#[derive(Debug)]
pub struct MasterVerifier {
    anchors: Anchors,
    mode: String,
    name_source: NameSource,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
enum Anchors {
    /// CA mode: any chain to these roots.
    Roots(Arc<RootCertStore>),
    /// Pinned mode: the presented leaf is one of `exact`, or chains to `roots` (the CA
    /// certificates of the same file).
    Pinned { path: PathBuf, exact: Vec<ExactCert>, roots: Arc<RootCertStore> },
    /// skip_verify: no chain or name check.
    Unverified,
}

/// A certificate from `master_cert`, with what the exact-match path checks worked out in
/// advance so that a handshake costs a byte comparison and a name check.
#[derive(Debug)]
struct ExactCert {
    der: CertificateDer<'static>,
    summary: CertSummary,
}

impl MasterVerifier {
    /// The verifier for a configured trust mode; `name_source` says which option a name
    /// mismatch should point at. CA mode loads the bundled Mozilla roots and the host's
    /// trust store now; call this again to pick up changes to either.
    pub fn new(trust: &Trust, name_source: NameSource, provider: Arc<CryptoProvider>) -> Self {
        let mut verifier = match trust {
            Trust::PublicRoots => Self::with_roots(public_roots(), provider),
            Trust::Pinned(pinned) => Self::pinned(pinned, provider),
            Trust::SkipVerify => Self::dangerous_unverified(provider),
        };
        verifier.name_source = name_source;
        verifier
    }

    /// CA mode with the given roots instead of the public and system ones.
    pub fn with_roots(roots: RootCertStore, provider: Arc<CryptoProvider>) -> Self {
        let mode = format!("CA mode ({} trusted roots)", roots.len());
        MasterVerifier { anchors: Anchors::Roots(Arc::new(roots)), mode, name_source: NameSource::DialedHost, provider }
    }

    /// Pinned mode: the certificates of `master_cert` are the only anchors.
    ///
    /// The presented leaf is accepted when it is byte-identical to a certificate of the
    /// file (this is how a self-signed `openssl req -x509` certificate, CA:TRUE, works as
    /// a pin), or when the presented chain leads to a CA certificate of the file. A file
    /// certificate that is not a CA (basicConstraints CA:FALSE, or a v3 certificate
    /// without the extension) is only ever matched exactly: its key may not vouch for
    /// other certificates. Validity and name are checked on both paths.
    pub fn pinned(pinned: &PinnedCerts, provider: Arc<CryptoProvider>) -> Self {
        let mut exact = Vec::with_capacity(pinned.certs.len());
        let mut roots = RootCertStore::empty();
        for der in &pinned.certs {
            // The config loader has parsed every certificate already; one that fails here
            // can simply never match.
            let Ok(summary) = CertSummary::parse(der) else {
                continue;
            };
            if summary.is_ca == Some(true) || summary.version == 1 {
                // A certificate webpki cannot use as an anchor is still matched exactly.
                let _ = roots.add(der.clone());
            }
            exact.push(ExactCert { der: der.clone(), summary });
        }
        MasterVerifier {
            mode: pinned.to_string(),
            anchors: Anchors::Pinned { path: pinned.path.clone(), exact, roots: Arc::new(roots) },
            name_source: NameSource::DialedHost,
            provider,
        }
    }

    /// skip_verify: accepts any certificate whose key signs the handshake, without
    /// checking who issued it or whom it names. Each accepted connection logs a warning
    /// with the presented fingerprint.
    pub fn dangerous_unverified(provider: Arc<CryptoProvider>) -> Self {
        MasterVerifier {
            anchors: Anchors::Unverified,
            mode: Trust::SkipVerify.to_string(),
            name_source: NameSource::DialedHost,
            provider,
        }
    }

    /// A one-line description of the mode, as used in rejections.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    fn verify_chain(
        &self,
        roots: &RootCertStore,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        verify_server_name(&cert, server_name)
    }

    fn verify_exact(&self, pin: &ExactCert, server_name: &ServerName<'_>, now: UnixTime) -> Result<(), Error> {
        let time = now.as_secs() as i64;
        if time < pin.summary.not_before.0 {
            return Err(
                CertificateError::NotValidYetContext { time: now, not_before: unix(pin.summary.not_before.0) }.into()
            );
        }
        if time > pin.summary.not_after.0 {
            return Err(CertificateError::ExpiredContext { time: now, not_after: unix(pin.summary.not_after.0) }.into());
        }
        if !pin.summary.server_auth {
            return Err(CertificateError::InvalidPurpose.into());
        }
        verify_server_name(&ParsedCertificate::try_from(&pin.der)?, server_name)
    }

    fn reject(
        &self,
        cause: Error,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Error {
        let presented =
            std::iter::once(end_entity).chain(intermediates).map(|der| CertSummary::parse(der).ok()).collect();
        let pinned = match &self.anchors {
            Anchors::Pinned { path, exact, .. } => {
                Some((path.clone(), exact.iter().map(|e| e.summary.clone()).collect()))
            }
            _ => None,
        };
        let rejection =
            Rejection::new(cause, self.mode.clone(), server_name.to_owned(), self.name_source, presented, pinned, now);
        CertificateError::Other(rustls::OtherError(Arc::new(rejection))).into()
    }
}

impl ServerCertVerifier for MasterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let outcome = match &self.anchors {
            Anchors::Roots(roots) => self.verify_chain(roots, end_entity, intermediates, server_name, now),
            Anchors::Pinned { exact, roots, .. } => {
                match exact.iter().find(|pin| pin.der.as_ref() == end_entity.as_ref()) {
                    Some(pin) => self.verify_exact(pin, server_name, now),
                    None => self.verify_chain(roots, end_entity, intermediates, server_name, now),
                }
            }
            Anchors::Unverified => {
                // Nothing about the certificate is trusted, but it must parse: its public
                // key is what the handshake signature is verified against.
                ParsedCertificate::try_from(end_entity).map(|_| {
                    tracing::warn!(
                        fingerprint = %Fingerprint::of(end_entity),
                        name = %server_name.to_str(),
                        "master identity NOT verified (security.tls.skip_verify): the connection is encrypted, but anyone could be at the other end; pin this certificate with security.tls.master_cert instead"
                    );
                })
            }
        };
        match outcome {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(cause) => Err(self.reject(cause, end_entity, intermediates, server_name, now)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The bundled Mozilla roots plus the host's trust store (`SSL_CERT_FILE` and
/// `SSL_CERT_DIR` are honoured). A host store that cannot be read is logged and skipped,
/// so a scratch container still trusts the public CAs.
pub(crate) fn public_roots() -> RootCertStore {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let native = rustls_native_certs::load_native_certs();
    for err in &native.errors {
        tracing::debug!(%err, "skipping part of the host trust store");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded the host trust store");
    roots
}

fn unix(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64))
}
