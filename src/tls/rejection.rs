//! Why the master's certificate was rejected, in words an operator can act on.

use std::fmt;
use std::path::PathBuf;

use rustls::CertificateError;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use serde::Serialize;

use super::anchors::{AnchorProblem, AnchorProblemKind};
use super::path::PathError;
use super::verifier::NameSource;
use crate::text::escape;
use crate::x509::{CertSummary, KeyPin, Timestamp};

/// What kind of problem the certificate has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RejectionKind {
    /// The chain leads to no trusted anchor (and, when pinned, the leaf is not pinned).
    UnknownIssuer,
    /// The certificate does not carry the name being verified.
    NotValidForName,
    /// A certificate of the chain has expired.
    Expired,
    /// A certificate of the chain is not valid yet.
    NotYetValid,
    /// The certificate may not be used for a TLS server.
    NotForServerAuth,
    /// The master presents a CA certificate as its own, which only pinning accepts.
    CaUsedAsEndEntity,
    /// The chain is malformed: a certificate that is not a CA signs another, or a path
    /// length or name constraint is broken.
    InvalidChain,
    /// A signature in the chain does not verify, or uses an unsupported algorithm.
    BadSignature,
    /// The certificate could not be parsed.
    Malformed,
    /// No certificate the verifier relied on has a key in `security.tls.master_key_pins`.
    KeyPinMismatch,
    /// Anything else; the message carries webpki's words.
    Other,
}

impl RejectionKind {
    /// The kind's name as JSON, logs and metrics write it, e.g. `unknown_issuer`.
    pub fn name(self) -> &'static str {
        match self {
            RejectionKind::UnknownIssuer => "unknown_issuer",
            RejectionKind::NotValidForName => "not_valid_for_name",
            RejectionKind::Expired => "expired",
            RejectionKind::NotYetValid => "not_yet_valid",
            RejectionKind::NotForServerAuth => "not_for_server_auth",
            RejectionKind::CaUsedAsEndEntity => "ca_used_as_end_entity",
            RejectionKind::InvalidChain => "invalid_chain",
            RejectionKind::BadSignature => "bad_signature",
            RejectionKind::Malformed => "malformed",
            RejectionKind::KeyPinMismatch => "key_pin_mismatch",
            RejectionKind::Other => "other",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The certificates a pinned verifier trusts, for explaining a refusal.
#[derive(Debug, Clone)]
pub(super) struct Pinned {
    /// `master_cert`, or the trust store file.
    pub path: PathBuf,
    /// The store entry's URL, when trusted on first use.
    pub store_entry: Option<String>,
    /// What the trusted certificates say.
    pub certs: Vec<CertSummary>,
}

/// Why the verifier refused, before it is explained.
#[derive(Debug)]
pub(super) enum Cause {
    /// A check of the certificate or chain failed, as rustls names it.
    Certificate(CertificateError),
    /// The only paths found end at an anchor whose own limits forbid them.
    Anchor(Box<AnchorProblem>),
    /// No certificate the verifier relied on has a pinned key.
    KeyPins,
}

impl Cause {
    /// A rustls error from parsing or name checking.
    pub(super) fn from_rustls(error: rustls::Error) -> Cause {
        match error {
            rustls::Error::InvalidCertificate(e) => Cause::Certificate(e),
            other => Cause::Certificate(CertificateError::Other(rustls::OtherError(std::sync::Arc::new(other)))),
        }
    }
}

impl From<PathError> for Cause {
    fn from(error: PathError) -> Cause {
        match error {
            PathError::Pki(e) => Cause::Certificate(e),
            PathError::Anchor(problem) => Cause::Anchor(problem),
            PathError::KeyPins => Cause::KeyPins,
        }
    }
}

/// What the rejecting verifier trusted, for the explanation.
#[derive(Debug, Clone)]
pub(super) struct Trusted {
    /// The mode in words.
    pub mode: String,
    /// Where the verified name came from.
    pub name_source: NameSource,
    /// The pinned certificates, in pinned mode.
    pub pinned: Option<Pinned>,
    /// `master_key_pins`.
    pub pins: Vec<KeyPin>,
}

/// The verifier's explained refusal. rustls gets [`certificate_error`](Self::certificate_error),
/// which sends the master the TLS alert that matches the cause;
/// [`TlsClient`](super::TlsClient) hands the whole explanation to its caller.
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: RejectionKind,
    /// The checker's own words, escaped (they may quote the certificate).
    cause: String,
    anchor: Option<AnchorProblem>,
    mode: String,
    name: ServerName<'static>,
    name_source: NameSource,
    presented: Vec<Option<CertSummary>>,
    presented_der: Vec<CertificateDer<'static>>,
    pinned: Option<Pinned>,
    pins: Vec<KeyPin>,
    now: Timestamp,
    context_time: Option<Timestamp>,
}

impl Rejection {
    pub(super) fn new(
        cause: Cause,
        trusted: Trusted,
        name: ServerName<'static>,
        presented_der: Vec<CertificateDer<'static>>,
        now: UnixTime,
    ) -> Self {
        let presented = presented_der.iter().map(|der| CertSummary::parse(der).ok()).collect();
        let Trusted { mode, name_source, pinned, pins } = trusted;
        let (mut kind, context_time, anchor, cause) = match cause {
            Cause::Certificate(e) => {
                let (kind, time) = classify(&e);
                (kind, time, None, escape(&e.to_string()).into_owned())
            }
            Cause::Anchor(problem) => {
                let kind = match problem.kind {
                    AnchorProblemKind::Expired => RejectionKind::Expired,
                    AnchorProblemKind::NotYetValid => RejectionKind::NotYetValid,
                    AnchorProblemKind::NotForServerAuth { .. } => RejectionKind::NotForServerAuth,
                    AnchorProblemKind::PathLen { .. } | AnchorProblemKind::NotACa => RejectionKind::InvalidChain,
                };
                (kind, None, Some(*problem), String::new())
            }
            Cause::KeyPins => (RejectionKind::KeyPinMismatch, None, None, String::new()),
        };
        // When pinned, a chain that does not lead to the file's certificates is simply not
        // the pinned master, whatever webpki found wrong with it first. Saying "pin it"
        // about a presented CA certificate would invite the operator to trust an impostor.
        if pinned.is_some()
            && anchor.is_none()
            && matches!(kind, RejectionKind::CaUsedAsEndEntity | RejectionKind::InvalidChain)
        {
            kind = RejectionKind::UnknownIssuer;
        }
        Rejection {
            kind,
            cause,
            anchor,
            mode,
            name,
            name_source,
            presented,
            presented_der,
            pinned,
            pins,
            now: Timestamp(now.as_secs() as i64),
            context_time,
        }
    }

    /// The kind of problem.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The name that was verified.
    pub fn name(&self) -> &ServerName<'static> {
        &self.name
    }

    /// The presented chain, leaf first (`None` for a certificate that did not parse).
    pub fn presented(&self) -> &[Option<CertSummary>] {
        &self.presented
    }

    /// The presented chain as it was sent, leaf first: for showing an operator what to
    /// trust on first use, never for trusting a connection.
    pub fn presented_der(&self) -> &[CertificateDer<'static>] {
        &self.presented_der
    }

    /// The trust anchor whose own limits refused the chain, when that was the problem.
    pub fn anchor_problem(&self) -> Option<&AnchorProblem> {
        self.anchor.as_ref()
    }

    /// The error handed to rustls, chosen for the TLS alert it sends the master, as
    /// rustls's own verifier would send it: unknown_ca for an unknown issuer (and a
    /// certificate that differs from the one trusted on first use), certificate_expired
    /// for a certificate or anchor outside its validity window, bad_certificate for a
    /// name mismatch, a broken chain or a key-pin mismatch, unsupported_certificate for
    /// a certificate (or anchor) not meant for TLS servers, decrypt_error for a bad
    /// signature.
    pub fn certificate_error(&self) -> CertificateError {
        let at = |t: Option<Timestamp>| {
            t.map(|t| UnixTime::since_unix_epoch(std::time::Duration::from_secs(t.0.max(0) as u64)))
        };
        let now = at(Some(self.now)).unwrap_or(UnixTime::now());
        let anchor_window = self.anchor.as_ref().map(|a| (a.anchor.not_before, a.anchor.not_after));
        match self.kind {
            RejectionKind::UnknownIssuer => CertificateError::UnknownIssuer,
            RejectionKind::Expired => match at(self.context_time.or(anchor_window.map(|w| w.1))) {
                Some(not_after) => CertificateError::ExpiredContext { time: now, not_after },
                None => CertificateError::Expired,
            },
            RejectionKind::NotYetValid => match at(self.context_time.or(anchor_window.map(|w| w.0))) {
                Some(not_before) => CertificateError::NotValidYetContext { time: now, not_before },
                None => CertificateError::NotValidYet,
            },
            RejectionKind::NotForServerAuth => CertificateError::InvalidPurpose,
            RejectionKind::BadSignature => CertificateError::BadSignature,
            // rustls sends bad_certificate for these three variants; BadEncoding is the one
            // that claims least about what went wrong.
            RejectionKind::NotValidForName => CertificateError::NotValidForName,
            RejectionKind::CaUsedAsEndEntity
            | RejectionKind::InvalidChain
            | RejectionKind::Malformed
            | RejectionKind::KeyPinMismatch => CertificateError::BadEncoding,
            RejectionKind::Other => CertificateError::Other(rustls::OtherError(std::sync::Arc::new(self.clone()))),
        }
    }

    fn leaf(&self) -> Option<&CertSummary> {
        self.presented.first().and_then(Option::as_ref)
    }

    /// What is wrong, and how to fix it.
    fn problem_and_fix(&self) -> (String, String) {
        let name = escape(&self.name.to_str()).into_owned();
        let leaf = self.leaf();
        let dns = leaf
            .map(|l| l.dns_names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        if let Some(problem) = &self.anchor {
            return self.anchor_problem_and_fix(problem);
        }
        match self.kind {
            RejectionKind::NotValidForName => self.name_problem(&name, leaf, &dns),
            RejectionKind::Expired => (
                format!("certificate expired {}; the time here is {}", self.context_time.map_or("(unknown)".into(), |t| t.to_string()), self.now),
                "renew the master's certificate, or correct this host's clock if it is wrong".to_owned(),
            ),
            RejectionKind::NotYetValid => (
                format!("certificate is not valid until {}; the time here is {}", self.context_time.map_or("(unknown)".into(), |t| t.to_string()), self.now),
                "check this host's clock (is NTP running?) and the dates of the master's certificate".to_owned(),
            ),
            RejectionKind::NotForServerAuth => (
                "certificate's extendedKeyUsage does not allow TLS server authentication".to_owned(),
                "reissue the master's certificate with extendedKeyUsage serverAuth".to_owned(),
            ),
            RejectionKind::CaUsedAsEndEntity => (
                "the master presents a CA certificate (basicConstraints CA:TRUE) as its own, as `openssl req -x509` makes them".to_owned(),
                "if it really is the master's, confirm its sha256 with whoever runs the master, then pin it by putting it in security.tls.master_cert".to_owned(),
            ),
            RejectionKind::InvalidChain => (
                format!("the presented chain is not a valid certification path ({})", self.cause),
                "the master serves a broken chain; serve the leaf followed by its intermediate CA certificates, in order".to_owned(),
            ),
            RejectionKind::BadSignature => (
                format!("a signature in the presented chain does not verify ({})", self.cause),
                "the master's chain is corrupt or forged; check which certificate the master serves".to_owned(),
            ),
            RejectionKind::Malformed => (
                format!("the presented certificate cannot be parsed ({})", self.cause),
                "check the certificate file the master is configured with".to_owned(),
            ),
            RejectionKind::UnknownIssuer => self.issuer_problem(leaf),
            RejectionKind::KeyPinMismatch => self.pin_problem(),
            RejectionKind::Other => (self.cause.clone(), "see the presented certificate below".to_owned()),
        }
    }

    fn anchor_problem_and_fix(&self, problem: &AnchorProblem) -> (String, String) {
        let a = &problem.anchor;
        let anchor = format!("trust anchor {} ({}; sha256 {})", a.subject, a.source, a.sha256);
        let replace = match &a.source {
            super::anchors::AnchorSource::File(path) => format!("in {}", path.display()),
            super::anchors::AnchorSource::HostStore(_) => "in this host's trust store".to_owned(),
            super::anchors::AnchorSource::Presented => "in security.tls.master_key_pins".to_owned(),
        };
        match &problem.kind {
            AnchorProblemKind::Expired => (
                format!("{anchor} expired {}; the time here is {}. An expired CA vouches for nothing, even for certificates signed with its key that are themselves still valid", a.not_after, self.now),
                format!("replace the expired CA {replace} with its renewed certificate (or the master's current CA), or correct this host's clock if it is wrong"),
            ),
            AnchorProblemKind::NotYetValid => (
                format!("{anchor} is not valid until {}; the time here is {}", a.not_before, self.now),
                "check this host's clock (is NTP running?) and the CA certificate's dates".to_owned(),
            ),
            AnchorProblemKind::PathLen { allowed, found } => (
                format!("{anchor} allows at most {allowed} intermediate CA certificate(s) below it (basicConstraints pathLen {allowed}), but the master's chain puts {found} between it and the master's certificate"),
                format!("the master's certificate was issued outside what this CA permits; have it reissued within the CA's path length, or trust the CA that may issue it {replace}"),
            ),
            AnchorProblemKind::NotForServerAuth { usages } => (
                format!("{anchor} limits what it vouches for with extendedKeyUsage ({usages}), which does not include TLS server authentication"),
                format!("trust the CA that issues server certificates {replace} instead"),
            ),
            AnchorProblemKind::NotACa => (
                format!("{anchor} is not a CA (basicConstraints CA:FALSE), so it vouches only for itself, not for the certificate the master presented"),
                format!("if the master's certificate changed, put the new one {replace}; otherwise trust the CA that issued it"),
            ),
        }
    }

    fn name_problem(&self, name: &str, leaf: Option<&CertSummary>, dns: &str) -> (String, String) {
        let offers = leaf.map_or_else(|| "nothing readable".to_owned(), CertSummary::names);
        let is_ip = matches!(self.name, ServerName::IpAddress(_));
        let problem = match (is_ip, leaf.is_some_and(|l| l.dns_names.is_empty() && l.ip_addresses.is_empty())) {
            (_, true) => format!(
                "certificate has no subjectAltName at all, so it is valid for no name ({name} was checked; the subject CN is never used)"
            ),
            (true, _) => format!("certificate has no IP SAN for {name}; it names {offers}"),
            (false, _) => format!("certificate is not valid for {name}; it names {offers}"),
        };
        let fix = if leaf.is_some_and(|l| l.dns_names.is_empty() && l.ip_addresses.is_empty()) {
            format!("reissue the master's certificate with a subjectAltName, e.g. DNS:{name}")
        } else if dns.is_empty() {
            format!(
                "reissue the master's certificate with {}:{name}, or dial an address it names",
                if is_ip { "IP" } else { "DNS" }
            )
        } else {
            match self.name_source {
                NameSource::MasterCertName => {
                    format!("set security.tls.master_cert_name to one of: {dns}")
                }
                NameSource::DialedHost if is_ip => {
                    format!("set security.tls.master_cert_name to one of: {dns}")
                }
                NameSource::DialedHost => {
                    format!("dial a name it carries, or set security.tls.master_cert_name to one of: {dns}")
                }
            }
        };
        (problem, fix)
    }

    fn pin_problem(&self) -> (String, String) {
        let pinned: Vec<String> = self.pins.iter().map(KeyPin::to_string).collect();
        let presented: Vec<String> = self
            .presented
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Some(c) => format!("[{i}] {}", c.key_pin),
                None => format!("[{i}] (unreadable)"),
            })
            .collect();
        let mut problem = format!(
            "no certificate the master's identity rests on has a pinned key. security.tls.master_key_pins: {}; keys presented: {}",
            pinned.join(", "),
            presented.join(", ")
        );
        let unused: Vec<String> = self
            .presented
            .iter()
            .enumerate()
            .filter(|(_, c)| c.as_ref().is_some_and(|c| self.pins.contains(&c.key_pin)))
            .map(|(i, _)| format!("[{i}]"))
            .collect();
        if !unused.is_empty() {
            problem.push_str(&format!(
                ". Certificate {} has a pinned key but is not on a valid path from the master's certificate, so it vouches for nothing (an impostor can append any public certificate to its chain)",
                unused.join(", ")
            ));
        }
        (
            problem,
            "if the master's key was replaced on purpose, add the new key's pin (above; `det-agent check` prints it) to security.tls.master_key_pins and keep the old pin until every master has rotated; otherwise treat this as someone posing as the master".to_owned(),
        )
    }

    fn issuer_problem(&self, leaf: Option<&CertSummary>) -> (String, String) {
        let issuer = leaf.map_or_else(|| "(unreadable)".to_owned(), |l| l.issuer.to_string());
        match &self.pinned {
            Some(Pinned { path, store_entry: Some(url), certs }) => {
                let stored = certs.first().map_or_else(|| "(unreadable)".to_owned(), |c| c.sha256.to_string());
                let presented = leaf.map_or_else(|| "(unreadable)".to_owned(), |c| c.sha256.to_string());
                (
                    format!(
                        "WARNING: THE MASTER'S CERTIFICATE HAS CHANGED since it was trusted on first use. Someone may be intercepting this connection, or the master's certificate was replaced.\n  stored:    sha256 {stored} (entry {url} in {})\n  presented: sha256 {presented}",
                        path.display()
                    ),
                    format!("trust nothing until whoever runs the master confirms the presented fingerprint; then run `det-agent trust --forget {url}` and `det-agent trust -m {url}`"),
                )
            }
            Some(Pinned { path, certs: pins, .. }) => {
                let same_subject = leaf.and_then(|l| pins.iter().find(|p| p.subject == l.subject && p.sha256 != l.sha256));
                let problem = match same_subject {
                    Some(old) => format!(
                        "the master's certificate is not the one pinned: {} holds a certificate for the same subject with sha256 {}, the master presented another key or certificate",
                        path.display(),
                        old.sha256
                    ),
                    None => format!(
                        "certificate is not one of the {} certificate(s) in {} and does not chain to any of them (issuer {issuer})",
                        pins.len(),
                        path.display()
                    ),
                };
                (problem, format!("if the master's certificate legitimately changed, put the new certificate or its CA chain in {}", path.display()))
            }
            None if leaf.is_some_and(CertSummary::self_issued) => (
                format!("certificate is self-signed ({issuer}), and no public CA vouches for it"),
                "if it really is the master's, confirm its sha256 with whoever runs the master, then pin it by putting it in security.tls.master_cert".to_owned(),
            ),
            None => (
                format!("issuer {issuer} is not trusted"),
                "put the chain up to the root in security.tls.master_cert, or install the root CA in this host's trust store".to_owned(),
            ),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (problem, fix) = self.problem_and_fix();
        write!(f, "master certificate rejected in {}: {problem} — {fix}", self.mode)?;
        let source = match self.name_source {
            NameSource::DialedHost => "the dialed host",
            NameSource::MasterCertName => "security.tls.master_cert_name",
        };
        write!(f, "\n  verified name: {} (from {source})", escape(&self.name.to_str()))?;
        for (i, cert) in self.presented.iter().enumerate() {
            let label = if i == 0 { "presented".to_owned() } else { format!("chain [{i}]") };
            match cert {
                Some(c) => write!(f, "\n  {label}: {c}")?,
                None => write!(f, "\n  {label}: (not a parsable certificate)")?,
            }
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

fn classify(e: &CertificateError) -> (RejectionKind, Option<Timestamp>) {
    use CertificateError as C;
    let ts = |t: &UnixTime| Some(Timestamp(t.as_secs() as i64));
    #[allow(deprecated)]
    match e {
        C::UnknownIssuer => (RejectionKind::UnknownIssuer, None),
        C::NotValidForName | C::NotValidForNameContext { .. } => (RejectionKind::NotValidForName, None),
        C::Expired => (RejectionKind::Expired, None),
        C::ExpiredContext { not_after, .. } => (RejectionKind::Expired, ts(not_after)),
        C::NotValidYet => (RejectionKind::NotYetValid, None),
        C::NotValidYetContext { not_before, .. } => (RejectionKind::NotYetValid, ts(not_before)),
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => (RejectionKind::NotForServerAuth, None),
        C::BadSignature
        | C::UnsupportedSignatureAlgorithm
        | C::UnsupportedSignatureAlgorithmContext { .. }
        | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (RejectionKind::BadSignature, None),
        C::BadEncoding | C::UnhandledCriticalExtension => (RejectionKind::Malformed, None),
        // rustls passes some webpki errors through as `Other`.
        C::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(webpki::Error::CaUsedAsEndEntity) => (RejectionKind::CaUsedAsEndEntity, None),
            Some(
                webpki::Error::EndEntityUsedAsCa
                | webpki::Error::PathLenConstraintViolated
                | webpki::Error::NameConstraintViolation
                | webpki::Error::MaximumPathDepthExceeded
                | webpki::Error::MaximumPathBuildCallsExceeded,
            ) => (RejectionKind::InvalidChain, None),
            _ => (RejectionKind::Other, None),
        },
        _ => (RejectionKind::Other, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_the_json_names() {
        use RejectionKind as K;
        for kind in [
            K::UnknownIssuer,
            K::NotValidForName,
            K::Expired,
            K::NotYetValid,
            K::NotForServerAuth,
            K::CaUsedAsEndEntity,
            K::InvalidChain,
            K::BadSignature,
            K::Malformed,
            K::KeyPinMismatch,
            K::Other,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.name());
        }
    }
}
