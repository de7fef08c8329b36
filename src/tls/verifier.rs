//! The master certificate verifier: one [`ServerCertVerifier`] for the three trust modes.
//!
//! The trust decision is made here, once per handshake, and leaves as a value:
//! [`MasterVerifier::verify`] returns [`Verified`], which only this module can make,
//! after every check, or a [`Rejection`] that explains itself. Handshake signatures are
//! verified with the provider's algorithms in every mode, skip_verify included.
//!
//! Chains are validated by webpki, with each candidate path also held to its anchor's
//! own limits (validity, pathLen, extendedKeyUsage; see [`super::anchors`]) and to the
//! key pins. Key pins (`master_key_pins`) add one condition to any mode: a certificate
//! whose key is pinned must be on the path the verifier relied on. In CA and pinned mode
//! that is the validated path from the leaf to its anchor, so a pinned CA certificate
//! merely appended to an impostor's chain counts for nothing. Under skip_verify, where
//! nothing else is checked, it is the leaf (whose key the handshake signature proves), or
//! a presented CA certificate with a pinned key that the leaf is verified to chain to.
//!
//! A certificate trusted on first use (`det-agent trust`) authenticates exactly itself,
//! as OpenSSH's known_hosts does: the stored leaf is matched byte for byte, and a CA
//! certificate stored beside it vouches for nothing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_name;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::anchors::{AnchorSource, Anchors};
use super::path::{self, PathError};
use super::rejection::{Cause, Pinned, Rejection, Trusted};
use super::relied::{CertSource, ReliedOn, Role};
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

/// The verifier's acceptance of a certificate. Only [`MasterVerifier::verify`] makes one,
/// after every check has passed. It carries the certificates the acceptance rests on.
#[derive(Debug)]
pub struct Verified {
    relied_on: Vec<ReliedOn>,
}

impl Verified {
    /// The certificates the verifier relied on: the leaf, the intermediates of the
    /// validated path and its anchor; the pinned certificate alone for an exact match;
    /// the leaf (dates unchecked) or the path to a presented pinned CA under key-pin
    /// mode; nothing under bare skip_verify.
    pub fn relied_on(&self) -> &[ReliedOn] {
        &self.relied_on
    }

    /// The same, owned.
    pub fn into_relied_on(self) -> Vec<ReliedOn> {
        self.relied_on
    }
}

/// Verifies the master's certificate as the operator configured.
#[derive(Debug)]
pub struct MasterVerifier {
    anchoring: Anchoring,
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
/// certificates' validity windows and the anchor's, which lies inside the validated
/// path's. The handshake signature, proof that the peer holds the leaf's key, is still
/// verified on every handshake.
#[derive(Debug)]
struct VerifiedChain {
    key: [u8; 32],
    not_before: i64,
    not_after: i64,
    relied_on: Vec<ReliedOn>,
}

#[derive(Debug)]
enum Anchoring {
    /// CA mode: any chain to these anchors.
    Roots(Arc<Anchors>),
    /// Pinned mode: the presented leaf is one of `exact`, or chains to `roots` (the CA
    /// certificates of the same file; none for a chain trusted on first use).
    Pinned { path: PathBuf, store_entry: Option<String>, exact: Vec<ExactCert>, roots: Arc<Anchors> },
    /// skip_verify: no chain or name check.
    Unverified,
}

/// A certificate matched byte for byte, with what the exact-match path checks worked
/// out in advance so that a handshake costs a byte comparison and a name check.
#[derive(Debug)]
struct ExactCert {
    der: CertificateDer<'static>,
    summary: CertSummary,
    /// What an exact match relies on: this certificate, from the file or the store.
    relied_on: ReliedOn,
}

impl MasterVerifier {
    /// The verifier for a configured trust mode; `name_source` says which option a name
    /// mismatch should point at. CA mode loads the bundled Mozilla roots and the host's
    /// trust store now; call this again to pick up changes to either.
    pub fn new(trust: &Trust, name_source: NameSource, provider: Arc<CryptoProvider>) -> Self {
        let mut verifier = match trust {
            Trust::PublicRoots => Self::ca_mode(Anchors::public(), provider),
            Trust::Pinned(pinned) => Self::pinned(pinned, provider),
            Trust::SkipVerify => Self::dangerous_unverified(provider),
        };
        verifier.name_source = name_source;
        verifier
    }

    /// CA mode with the given anchors instead of the public and host ones.
    pub fn ca_mode(anchors: Anchors, provider: Arc<CryptoProvider>) -> Self {
        let mode = format!("CA mode ({} trusted roots)", anchors.len());
        Self::build(Anchoring::Roots(Arc::new(anchors)), mode, provider)
    }

    /// Pinned mode: the certificates of `master_cert` are the only anchors.
    ///
    /// The presented leaf is accepted when it is byte-identical to a certificate of the
    /// file (this is how a self-signed `openssl req -x509` certificate, CA:TRUE, works as
    /// a pin), or when the presented chain leads to a CA certificate of the file, within
    /// that CA's own validity, pathLen and extendedKeyUsage. A file certificate that is
    /// not a CA (basicConstraints CA:FALSE, or a v3 certificate without the extension) is
    /// only ever matched exactly: its key may not vouch for other certificates. Validity
    /// and name are checked on both paths.
    ///
    /// A chain trusted on first use (`store_entry` set) authenticates only its first
    /// certificate, the leaf the operator saw and accepted, matched exactly.
    pub fn pinned(pinned: &PinnedCerts, provider: Arc<CryptoProvider>) -> Self {
        let mut exact = Vec::with_capacity(pinned.certs.len());
        let mut roots = Anchors::empty();
        let trusted_on_first_use = pinned.store_entry.is_some();
        let certs = if trusted_on_first_use { &pinned.certs[..pinned.certs.len().min(1)] } else { &pinned.certs[..] };
        for der in certs {
            // The config loader has parsed every certificate already; one that fails here
            // can simply never match.
            let Ok(summary) = CertSummary::parse(der) else {
                continue;
            };
            if !trusted_on_first_use && (summary.is_ca == Some(true) || summary.version == 1) {
                // A certificate webpki cannot use as an anchor is still matched exactly.
                roots.add(der, AnchorSource::File(pinned.path.clone()));
            }
            let source = match &pinned.store_entry {
                Some(url) => CertSource::TrustStore { path: pinned.path.clone(), url: url.clone() },
                None => CertSource::File(pinned.path.clone()),
            };
            let relied_on = ReliedOn::from_summary(Role::Master, &summary, source);
            exact.push(ExactCert { der: der.clone(), summary, relied_on });
        }
        let anchoring = Anchoring::Pinned {
            path: pinned.path.clone(),
            store_entry: pinned.store_entry.clone(),
            exact,
            roots: Arc::new(roots),
        };
        Self::build(anchoring, pinned.to_string(), provider)
    }

    /// skip_verify: accepts any certificate whose key signs the handshake, without
    /// checking who issued it or whom it names. Each accepted connection logs a warning
    /// with the presented fingerprint.
    pub fn dangerous_unverified(provider: Arc<CryptoProvider>) -> Self {
        Self::build(Anchoring::Unverified, Trust::SkipVerify.to_string(), provider)
    }

    fn build(anchoring: Anchoring, mode: String, provider: Arc<CryptoProvider>) -> Self {
        MasterVerifier {
            anchoring,
            mode,
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
            self.mode = match self.anchoring {
                Anchoring::Unverified => format!(
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

    /// The trust decision for the certificate a master presented: [`Verified`] after
    /// every check of the configured mode has passed, else the explained refusal.
    ///
    /// # Errors
    /// The [`Rejection`]: what is wrong, what was presented and how to fix it.
    pub fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<Verified, Box<Rejection>> {
        let outcome = match &self.anchoring {
            Anchoring::Roots(roots) => self.verify_chain(roots, end_entity, intermediates, server_name, now),
            Anchoring::Pinned { exact, roots, .. } => {
                match exact.iter().find(|pin| pin.der.as_ref() == end_entity.as_ref()) {
                    // An exact match relies on no path, so only the leaf's key may match a pin.
                    Some(pin) => self.verify_exact(pin, server_name, now).and_then(|()| {
                        match self.pins.is_empty() || self.pins.contains(&pin.summary.key_pin) {
                            true => Ok(vec![pin.relied_on.clone()]),
                            false => Err(Cause::KeyPins),
                        }
                    }),
                    None => self.verify_chain(roots, end_entity, intermediates, server_name, now),
                }
            }
            Anchoring::Unverified => self.verify_unverified(end_entity, intermediates, server_name, now),
        };
        match outcome {
            Ok(relied_on) => Ok(Verified { relied_on }),
            Err(cause) => Err(Box::new(self.reject(cause, end_entity, intermediates, server_name, now))),
        }
    }

    fn verify_chain(
        &self,
        anchors: &Anchors,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<Vec<ReliedOn>, Cause> {
        let key = self.remember.then(|| chain_key(end_entity, intermediates, server_name));
        let time = now.as_secs() as i64;
        let memo = self.last_chain.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(m) = memo.as_ref() {
            if Some(m.key) == key && (m.not_before..=m.not_after).contains(&time) {
                return Ok(m.relied_on.clone());
            }
        }
        drop(memo);
        let algorithms = self.provider.signature_verification_algorithms.all;
        let accepted =
            path::validate(anchors, &self.pins, end_entity, intermediates, now, algorithms).map_err(Cause::from)?;
        let cert = ParsedCertificate::try_from(end_entity).map_err(Cause::from_rustls)?;
        verify_server_name(&cert, server_name).map_err(Cause::from_rustls)?;
        let Some(key) = key else { return Ok(accepted.relied_on) };
        let windows: Option<Vec<(i64, i64)>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| crate::x509::validity_window(c))
            .chain(accepted.anchor_window.map(Some))
            .collect();
        if let Some(windows) = windows {
            let not_before = windows.iter().map(|w| w.0).max().unwrap_or(i64::MAX);
            let not_after = windows.iter().map(|w| w.1).min().unwrap_or(i64::MIN);
            *self.last_chain.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some(VerifiedChain { key, not_before, not_after, relied_on: accepted.relied_on.clone() });
        }
        Ok(accepted.relied_on)
    }

    /// Whether the key of `der` is pinned.
    fn key_is_pinned(&self, der: &CertificateDer<'_>) -> bool {
        webpki::EndEntityCert::try_from(der)
            .is_ok_and(|cert| self.pins.contains(&KeyPin::of_spki(&cert.subject_public_key_info())))
    }

    /// skip_verify: nothing is checked unless there are pins. With pins, the leaf's key
    /// may be pinned (the handshake signature, verified next, proves the master holds it),
    /// or the leaf must chain, with valid signatures and dates, to a presented CA
    /// certificate whose key is pinned, within that CA's own limits. Names are not checked.
    fn verify_unverified(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<Vec<ReliedOn>, Cause> {
        // Nothing about the certificate is trusted, but it must parse: its public key is
        // what the handshake signature is verified against.
        ParsedCertificate::try_from(end_entity).map_err(Cause::from_rustls)?;
        if self.pins.is_empty() {
            tracing::warn!(
                fingerprint = %Fingerprint::of(end_entity),
                name = %crate::text::escape(&server_name.to_str()),
                "master identity NOT verified (security.tls.skip_verify): the connection is encrypted, but anyone could be at the other end; pin this certificate with security.tls.master_cert, or its key with security.tls.master_key_pins"
            );
            return Ok(Vec::new());
        }
        if self.key_is_pinned(end_entity) {
            // The key authenticates the master; the certificate's dates are not checked.
            let leaf = ReliedOn::from_der(Role::Master, end_entity, CertSource::Presented);
            return Ok(leaf.into_iter().map(|l| ReliedOn { dates_checked: false, ..l }).collect());
        }
        let mut anchors = Anchors::empty();
        for ca in intermediates.iter().filter(|c| self.key_is_pinned(c)) {
            // A pinned certificate webpki cannot use as an anchor simply never matches.
            anchors.add(ca, AnchorSource::Presented);
        }
        if anchors.is_empty() {
            return Err(Cause::KeyPins);
        }
        let algorithms = self.provider.signature_verification_algorithms.all;
        match path::validate(&anchors, &[], end_entity, intermediates, now, algorithms) {
            Ok(accepted) => Ok(accepted.relied_on),
            // The pinned CA did not issue this leaf: the pins are what failed.
            Err(PathError::Pki(CertificateError::UnknownIssuer)) => Err(Cause::KeyPins),
            Err(other) => Err(Cause::from(other)),
        }
    }

    fn verify_exact(&self, pin: &ExactCert, server_name: &ServerName<'_>, now: UnixTime) -> Result<(), Cause> {
        let time = now.as_secs() as i64;
        if time < pin.summary.not_before.0 {
            return Err(Cause::Certificate(CertificateError::NotValidYetContext {
                time: now,
                not_before: unix(pin.summary.not_before.0),
            }));
        }
        if time > pin.summary.not_after.0 {
            return Err(Cause::Certificate(CertificateError::ExpiredContext {
                time: now,
                not_after: unix(pin.summary.not_after.0),
            }));
        }
        if !pin.summary.server_auth {
            return Err(Cause::Certificate(CertificateError::InvalidPurpose));
        }
        let cert = ParsedCertificate::try_from(&pin.der).map_err(Cause::from_rustls)?;
        verify_server_name(&cert, server_name).map_err(Cause::from_rustls)
    }

    fn reject(
        &self,
        cause: Cause,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Rejection {
        let presented = std::iter::once(end_entity).chain(intermediates).map(|der| der.clone().into_owned()).collect();
        let pinned = match &self.anchoring {
            Anchoring::Pinned { path, store_entry, exact, .. } => Some(Pinned {
                path: path.clone(),
                store_entry: store_entry.clone(),
                certs: exact.iter().map(|e| e.summary.clone()).collect(),
            }),
            _ => None,
        };
        let trusted =
            Trusted { mode: self.mode.clone(), name_source: self.name_source, pinned, pins: self.pins.clone() };
        Rejection::new(cause, trusted, server_name.to_owned(), presented, now)
    }

    pub(super) fn tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> SigResult {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    pub(super) fn tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> SigResult {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }
}

pub(super) type SigResult = Result<HandshakeSignatureValid, Error>;

/// Used directly, a refusal reaches rustls as the [`CertificateError`] that sends the
/// matching TLS alert, without the explanation; [`super::TlsClient`] keeps the
/// explanation for its caller.
impl ServerCertVerifier for MasterVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.verify(end_entity, intermediates, server_name, now) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(rejection) => Err(Error::InvalidCertificate(rejection.certificate_error())),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> SigResult {
        self.tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> SigResult {
        self.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
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

fn unix(secs: i64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::dev_master::fixtures;

    fn verify(
        v: &MasterVerifier,
        chain: &[CertificateDer<'static>],
        name: &str,
        secs: u64,
    ) -> Result<(), Box<Rejection>> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(secs));
        v.verify(&chain[0], &chain[1..], &name, now).map(|_| ())
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
        // A remembered chain relies on what its full validation relied on.
        let relied = |v: &MasterVerifier| {
            let name = ServerName::try_from("master.det.test").unwrap();
            let now = UnixTime::since_unix_epoch(Duration::from_secs(in_2027));
            v.verify(&chain[0], &chain[1..], &name, now).unwrap().into_relied_on()
        };
        let fresh = MasterVerifier::pinned(&pinned, crate::tls::provider()).remembering(false);
        assert_eq!(relied(&v), relied(&fresh));
        assert_eq!(relied(&v).len(), 3, "leaf, intermediate, root");
        let expired = verify(&v, &chain, "master.det.test", in_2128).unwrap_err();
        assert!(expired.to_string().contains("expired"), "{expired}");
        assert!(verify(&v, &chain, "other.det.test", in_2027).is_err(), "the name is part of the key");
        // Without the intermediate the chain is another key, and does not validate.
        assert!(verify(&v, &chain[..1], "master.det.test", in_2027).is_err());
        assert!(verify(&v, &chain, "master.det.test", in_2027).is_ok());
    }
}
