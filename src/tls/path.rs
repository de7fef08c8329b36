//! Validating the master's chain: webpki builds candidate paths from the leaf to an
//! anchor, and each candidate must also pass its anchor's own limits and, when key pins
//! are configured, carry a pinned key. webpki tries the next candidate when one fails,
//! so a chain is accepted exactly when some path passes every check.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use rustls::CertificateError;
use webpki::VerifiedPath;

use super::anchors::{AnchorProblem, Anchors};
use super::relied::{self, ReliedOn};
use crate::x509::KeyPin;

/// Why no path was accepted.
#[derive(Debug)]
pub(super) enum PathError {
    /// webpki's most specific reason, as rustls names it.
    Pki(CertificateError),
    /// The paths found end at anchors whose own limits forbid them.
    Anchor(Box<AnchorProblem>),
    /// Valid paths exist, but none carries a pinned key.
    KeyPins,
}

/// A path that passed: the validity window of its anchor, when the anchor's
/// certificate is known (a remembered chain must not outlive its anchor), and the
/// certificates of the path, which the caller relies on.
#[derive(Debug)]
pub(super) struct Accepted {
    pub anchor_window: Option<(i64, i64)>,
    pub relied_on: Vec<ReliedOn>,
}

/// Finds a path from `end_entity` through `intermediates` to one of `anchors` that is
/// valid at `now` for TLS server authentication, within its anchor's limits, and (when
/// `pins` is not empty) with a pinned key on it: the leaf's, an intermediate's the path
/// uses, or the anchor's.
pub(super) fn validate(
    anchors: &Anchors,
    pins: &[KeyPin],
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    algorithms: &[&dyn SignatureVerificationAlgorithm],
) -> Result<Accepted, PathError> {
    let leaf = webpki::EndEntityCert::try_from(end_entity).map_err(|e| PathError::Pki(pki_error(e)))?;
    let anchor_problems: RefCell<Vec<(webpki::Error, AnchorProblem)>> = RefCell::new(Vec::new());
    let valid_but_unpinned = Cell::new(false);
    let check_path = |path: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
        if let Some(problem) = anchors.problem(path, now) {
            let error = problem.as_webpki(now);
            anchor_problems.borrow_mut().push((error.clone(), problem));
            return Err(error);
        }
        if pins.is_empty() || carries_pin(path, pins) {
            return Ok(());
        }
        valid_but_unpinned.set(true);
        Err(webpki::Error::UnknownIssuer)
    };
    let outcome = leaf.verify_for_usage(
        algorithms,
        anchors.trust_anchors(),
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        Some(&check_path),
    );
    match outcome {
        Ok(path) => {
            let anchor_window = anchors.limits_for(&path).map(|l| (l.not_before.0, l.not_after.0));
            Ok(Accepted { anchor_window, relied_on: relied::of_path(&path, anchors) })
        }
        // A valid path exists: only the pins are missing, whatever else failed elsewhere.
        Err(_) if valid_but_unpinned.get() => Err(PathError::KeyPins),
        Err(error) => {
            // webpki returns the most specific error of every path it tried; when that is
            // an anchor's problem, explain the anchor rather than the stand-in error.
            let found = anchor_problems.into_inner().into_iter().find(|(as_webpki, _)| *as_webpki == error);
            match found {
                Some((_, problem)) => Err(PathError::Anchor(Box::new(problem))),
                None => Err(PathError::Pki(pki_error(error))),
            }
        }
    }
}

/// Whether a pinned key is on `path`: the leaf, an intermediate, or the anchor (whose
/// key webpki keeps without its outer SEQUENCE).
fn carries_pin(path: &VerifiedPath<'_>, pins: &[KeyPin]) -> bool {
    std::iter::once(path.end_entity().subject_public_key_info())
        .chain(path.intermediate_certificates().map(|c| c.subject_public_key_info()))
        .any(|spki| pins.contains(&KeyPin::of_spki(&spki)))
        || pins.contains(&KeyPin::of_spki_contents(&path.anchor().subject_public_key_info))
}

/// webpki's error in rustls's terms, as rustls's own verifier reports it (rustls keeps
/// its conversion private), so the refusal is classified and alerted the same way.
pub(super) fn pki_error(error: webpki::Error) -> CertificateError {
    use webpki::Error as E;
    #[allow(deprecated)]
    match error {
        E::BadDer | E::BadDerTime | E::TrailingData(_) => CertificateError::BadEncoding,
        E::CertNotValidYet { time, not_before } => CertificateError::NotValidYetContext { time, not_before },
        E::CertExpired { time, not_after } => CertificateError::ExpiredContext { time, not_after },
        E::InvalidCertValidity => CertificateError::Expired,
        E::UnknownIssuer => CertificateError::UnknownIssuer,
        E::CertNotValidForName(context) => {
            CertificateError::NotValidForNameContext { expected: context.expected, presented: context.presented }
        }
        E::CertRevoked => CertificateError::Revoked,
        E::UnknownRevocationStatus => CertificateError::UnknownRevocationStatus,
        E::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        E::UnsupportedSignatureAlgorithm | E::UnsupportedSignatureAlgorithmForPublicKey => {
            CertificateError::UnsupportedSignatureAlgorithm
        }
        E::UnsupportedSignatureAlgorithmContext(context) => CertificateError::UnsupportedSignatureAlgorithmContext {
            signature_algorithm_id: context.signature_algorithm_id,
            supported_algorithms: context.supported_algorithms,
        },
        E::UnsupportedSignatureAlgorithmForPublicKeyContext(context) => {
            CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: context.signature_algorithm_id,
                public_key_algorithm_id: context.public_key_algorithm_id,
            }
        }
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => CertificateError::InvalidPurpose,
        other => CertificateError::Other(rustls::OtherError(Arc::new(other))),
    }
}
