//! The master certificate verifier: one [`ServerCertVerifier`] for the three trust modes.
//!
//! The trust decision is made here, once per handshake, and leaves as a value: rustls's
//! `ServerCertVerified` assertion, returned last after every check, or a [`Rejection`]
//! that explains itself. Handshake signatures are verified with the provider's algorithms
//! in every mode, skip_verify included.
//!
//! Key pins (`master_key_pins`) add one condition to any mode: a certificate whose key is
//! pinned must be on the path the verifier relied on. In CA and pinned mode that is the
//! validated path from the leaf to its anchor, so a pinned CA certificate merely appended
//! to an impostor's chain counts for nothing. Under skip_verify, where nothing else is
//! checked, it is the leaf (whose key the handshake signature proves), or a presented CA
//! certificate with a pinned key that the leaf is verified to chain to.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::rejection::{KeyPinMismatch, Pinned, Rejection, Trusted};
use crate::config::{PinnedCerts, Trust};
use crate::x509::{CertSummary, Fingerprint, KeyPin};

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
    pins: Vec<KeyPin>,
    last_chain: Mutex<Option<VerifiedChain>>,
    remember: bool,
}

/// The last chain this verifier validated in full, key pins included. A reconnect to the
/// same master (a new full handshake, e.g. after a master restart, when no session can be
/// resumed) then skips the chain's signature checks, which are most of a handshake's
/// client CPU.
///
/// Sound because chain and name validation are a pure function of the chain's bytes, the
/// name, the anchors, the pins and the time: anchors and pins are fixed for the
/// verifier's life (a reload builds a new verifier), the key covers the bytes and the
/// name, and the time is checked on every use against the intersection of the presented
/// certificates' validity windows, which lies inside the validated path's. The handshake signature,
/// proof that the peer holds the leaf's key, is still verified on every handshake.
#[derive(Debug)]
struct VerifiedChain {
    key: [u8; 32],
    not_before: i64,
    not_after: i64,
}

#[derive(Debug)]
enum Anchors {
    /// CA mode: any chain to these roots.
    Roots(Arc<RootCertStore>),
    /// Pinned mode: the presented leaf is one of `exact`, or chains to `roots` (the CA
    /// certificates of the same file).
    Pinned { path: PathBuf, store_entry: Option<String>, exact: Vec<ExactCert>, roots: Arc<RootCertStore> },
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
        MasterVerifier {
            anchors: Anchors::Roots(Arc::new(roots)),
            mode,
            name_source: NameSource::DialedHost,
            provider,
            pins: Vec::new(),
            last_chain: Mutex::new(None),
            remember: true,
        }
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
            anchors: Anchors::Pinned {
                path: pinned.path.clone(),
                store_entry: pinned.store_entry.clone(),
                exact,
                roots: Arc::new(roots),
            },
            name_source: NameSource::DialedHost,
            provider,
            pins: Vec::new(),
            last_chain: Mutex::new(None),
            remember: true,
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
            pins: Vec::new(),
            last_chain: Mutex::new(None),
            remember: true,
        }
    }

    /// Adds key pins (`security.tls.master_key_pins`) to the mode's own checks: a
    /// certificate with one of these keys must be on the path the verifier relies on (see
    /// the module documentation). Any pin of the list may match. Under skip_verify the
    /// pins are what authenticates the master. An empty list changes nothing.
    pub fn with_key_pins(mut self, pins: Vec<KeyPin>) -> Self {
        if !pins.is_empty() {
            let n = pins.len();
            let s = if n == 1 { "" } else { "s" };
            self.mode = match self.anchors {
                Anchors::Unverified => format!(
                    "key-pin mode (skip_verify with {n} key pin{s}: the pinned key authenticates the master; no name check)"
                ),
                _ => format!("{} with {n} key pin{s}", self.mode),
            };
        }
        self.pins = pins;
        self
    }

    /// Whether to remember the last validated chain (on by default). Benchmarks turn it
    /// off to measure full chain validation on every call.
    pub fn remembering(mut self, remember: bool) -> Self {
        self.remember = remember;
        self
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
        let key = self.remember.then(|| chain_key(end_entity, intermediates, server_name));
        let time = now.as_secs() as i64;
        let memo = self.last_chain.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if memo.as_ref().is_some_and(|m| Some(m.key) == key && (m.not_before..=m.not_after).contains(&time)) {
            return Ok(());
        }
        drop(memo);
        let cert = ParsedCertificate::try_from(end_entity)?;
        let validate = || {
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )
        };
        if self.pins.is_empty() {
            validate()?;
        } else if self.pinned_path(roots, end_entity, intermediates, now).is_err() {
            // No valid path carries a pinned key. Whether any valid path exists decides
            // which explanation applies: the chain's own fault, or the pins.
            validate()?;
            return Err(pin_mismatch());
        }
        verify_server_name(&cert, server_name)?;
        let Some(key) = key else { return Ok(()) };
        let windows: Option<Vec<(i64, i64)>> =
            std::iter::once(end_entity).chain(intermediates).map(|c| crate::x509::validity_window(c)).collect();
        if let Some(windows) = windows {
            let not_before = windows.iter().map(|w| w.0).max().unwrap_or(i64::MAX);
            let not_after = windows.iter().map(|w| w.1).min().unwrap_or(i64::MIN);
            *self.last_chain.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some(VerifiedChain { key, not_before, not_after });
        }
        Ok(())
    }

    /// A valid path from `end_entity` to one of `roots` with a pinned key on it: the leaf,
    /// an intermediate the path uses, or the anchor. webpki calls the check for every
    /// candidate path and tries the next one when it fails.
    fn pinned_path(
        &self,
        roots: &RootCertStore,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), webpki::Error> {
        let leaf = webpki::EndEntityCert::try_from(end_entity)?;
        let carries_pin = |path: &webpki::VerifiedPath<'_>| {
            let on_path = std::iter::once(path.end_entity().subject_public_key_info())
                .chain(path.intermediate_certificates().map(|c| c.subject_public_key_info()))
                .any(|spki| self.pins.contains(&KeyPin::of_spki(&spki)));
            if on_path || self.pins.contains(&KeyPin::of_spki_contents(&path.anchor().subject_public_key_info)) {
                Ok(())
            } else {
                Err(webpki::Error::UnknownIssuer)
            }
        };
        leaf.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&carries_pin),
        )
        .map(|_| ())
    }

    /// Whether the key of `der` is pinned.
    fn key_is_pinned(&self, der: &CertificateDer<'_>) -> bool {
        webpki::EndEntityCert::try_from(der)
            .is_ok_and(|cert| self.pins.contains(&KeyPin::of_spki(&cert.subject_public_key_info())))
    }

    /// skip_verify: nothing is checked unless there are pins. With pins, the leaf's key
    /// may be pinned (the handshake signature, verified next, proves the master holds it),
    /// or the leaf must chain, with valid signatures and dates, to a presented CA
    /// certificate whose key is pinned. Names are not checked.
    fn verify_unverified(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<(), Error> {
        // Nothing about the certificate is trusted, but it must parse: its public key is
        // what the handshake signature is verified against.
        let cert = ParsedCertificate::try_from(end_entity)?;
        if self.pins.is_empty() {
            tracing::warn!(
                fingerprint = %Fingerprint::of(end_entity),
                name = %server_name.to_str(),
                "master identity NOT verified (security.tls.skip_verify): the connection is encrypted, but anyone could be at the other end; pin this certificate with security.tls.master_cert, or its key with security.tls.master_key_pins"
            );
            return Ok(());
        }
        if self.key_is_pinned(end_entity) {
            return Ok(());
        }
        let mut anchors = RootCertStore::empty();
        for ca in intermediates.iter().filter(|c| self.key_is_pinned(c)) {
            // A pinned certificate webpki cannot use as an anchor simply never matches.
            let _ = anchors.add(ca.clone().into_owned());
        }
        if anchors.is_empty() {
            return Err(pin_mismatch());
        }
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &anchors,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| match e {
            // The pinned CA did not issue this leaf: the pins are what failed.
            Error::InvalidCertificate(CertificateError::UnknownIssuer) => pin_mismatch(),
            other => other,
        })
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
            Anchors::Pinned { path, store_entry, exact, .. } => Some(Pinned {
                path: path.clone(),
                store_entry: store_entry.clone(),
                certs: exact.iter().map(|e| e.summary.clone()).collect(),
            }),
            _ => None,
        };
        let trusted =
            Trusted { mode: self.mode.clone(), name_source: self.name_source, pinned, pins: self.pins.clone() };
        let rejection = Rejection::new(cause, trusted, server_name.to_owned(), presented, now);
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
                    // An exact match relies on no path, so only the leaf's key may match a pin.
                    Some(pin) => self.verify_exact(pin, server_name, now).and_then(|()| {
                        match self.pins.is_empty() || self.pins.contains(&pin.summary.key_pin) {
                            true => Ok(()),
                            false => Err(pin_mismatch()),
                        }
                    }),
                    None => self.verify_chain(roots, end_entity, intermediates, server_name, now),
                }
            }
            Anchors::Unverified => self.verify_unverified(end_entity, intermediates, server_name, now),
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

fn pin_mismatch() -> Error {
    CertificateError::Other(rustls::OtherError(Arc::new(KeyPinMismatch))).into()
}

/// SHA-256 over the name and each certificate, length-prefixed so no two different
/// inputs share an encoding.
fn chain_key(end_entity: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], name: &ServerName<'_>) -> [u8; 32] {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let name = name.to_str();
    for part in std::iter::once(name.as_bytes())
        .chain(std::iter::once(end_entity.as_ref()))
        .chain(intermediates.iter().map(|c| c.as_ref()))
    {
        hash.update(&(part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(hash.finish().as_ref());
    key
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dev_master::fixtures;

    fn verify(v: &MasterVerifier, chain: &[CertificateDer<'static>], name: &str, secs: u64) -> Result<(), Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        v.verify_server_cert(&chain[0], &chain[1..], &name, &[], now).map(|_| ())
    }

    #[test]
    fn a_remembered_chain_is_still_checked_for_time_and_name() {
        let pinned = PinnedCerts {
            path: fixtures::path("root-ca.pem"),
            certs: fixtures::certs("root-ca.pem"),
            store_entry: None,
        };
        let v = MasterVerifier::pinned(&pinned, crate::tls::provider());
        let chain = fixtures::certs("master.pem");
        let in_2027 = 1_800_000_000;
        let in_2128 = 5_000_000_000; // the fixtures expire on 2124-01-01
        assert!(verify(&v, &chain, "master.det.test", in_2027).is_ok());
        assert!(v.last_chain.lock().unwrap().is_some(), "a validated chain is remembered");
        assert!(verify(&v, &chain, "master.det.test", in_2027).is_ok());
        let expired = verify(&v, &chain, "master.det.test", in_2128).unwrap_err();
        assert!(rejection_of_error(&expired).contains("expired"), "{expired}");
        assert!(verify(&v, &chain, "other.det.test", in_2027).is_err(), "the name is part of the key");
        // Without the intermediate the chain is another key, and does not validate.
        assert!(verify(&v, &chain[..1], "master.det.test", in_2027).is_err());
        assert!(verify(&v, &chain, "master.det.test", in_2027).is_ok());
    }

    fn rejection_of_error(err: &Error) -> String {
        crate::tls::rejection_of(err).map(|r| r.to_string()).unwrap_or_else(|| err.to_string())
    }
}
