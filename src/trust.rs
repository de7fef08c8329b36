//! Trust on first use, shared with the `det` CLI: canonical master addresses
//! ([`MasterUrl`]), the `certs.json` store ([`Store`]), fetching the chain a master
//! presents so an operator can decide whether to trust it ([`inspect`]), and that
//! decision ([`decide`]).
//!
//! Once stored, an entry authenticates exactly the certificate the operator accepted (the
//! leaf), as OpenSSH's known_hosts does: the master must present it again, and any other
//! certificate fails with an unmistakable warning.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, DnsName};

pub use crate::error::StoreError;
pub use crate::store::{Entries, MasterUrl, Store};

use crate::check::Check;
use crate::config::{Config, TlsConfig, Trust};
use crate::dial::ProxyEnv;
use crate::tls::Rejection;
use crate::x509::Fingerprint;

/// What a master presented when asked.
#[derive(Debug)]
pub enum Inspection {
    /// CA verification already succeeds: there is nothing to trust on first use.
    AlreadyTrusted {
        /// `det-agent check`'s one-line verdict.
        summary: String,
    },
    /// The chain is not trusted by this host; the operator may choose to.
    Untrusted {
        /// The presented chain, leaf first.
        chain: Vec<CertificateDer<'static>>,
        /// Why CA verification refused it.
        rejection: Box<Rejection>,
    },
}

/// Why a master could not be inspected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The address is `http://`: no certificate to trust.
    #[error("{0} is not https://, so there is no certificate to trust; use https://HOST[:PORT]")]
    NotHttps(MasterUrl),
    /// The master could not be reached, or completed no handshake.
    #[error("{0}")]
    Unreachable(String),
}

/// Dials `url` (which must be `https://`) once, through the daemon's dialer (and `proxy`
/// when it applies), verifying as CA mode would. When CA mode refuses the certificate,
/// the refusal carries the presented chain for the operator to decide on. `name`
/// replaces the URL's host as the verified name (as `DET_MASTER_CERT_NAME` does).
///
/// # Errors
/// The URL is not https, or the master cannot be reached or completes no handshake.
pub async fn inspect(
    url: &MasterUrl,
    name: Option<DnsName<'static>>,
    proxy: ProxyEnv,
    limit: Duration,
) -> Result<Inspection, InspectError> {
    if !url.tls {
        return Err(InspectError::NotHttps(url.clone()));
    }
    let mut tls = TlsConfig::new(Trust::PublicRoots);
    tls.master_cert_name = name;
    let mut config = Config::new(url.host.clone(), Some(tls));
    config.master_port = url.port;
    let report = Check::new(&config).proxy(proxy).timeout(limit).ask_info(false).run().await;
    if report.verdict.ok {
        return Ok(Inspection::AlreadyTrusted { summary: report.verdict.summary });
    }
    match report.rejection {
        Some(rejection) => Ok(Inspection::Untrusted { chain: rejection.presented_der().to_vec(), rejection }),
        None => Err(InspectError::Unreachable(report.verdict.error.unwrap_or(report.verdict.summary))),
    }
}

/// How the operator answered for a presented certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    /// A fingerprint given out of band (`--fingerprint`).
    Fingerprint([u8; 32]),
    /// What was typed at the terminal's prompt.
    Answer(String),
    /// No terminal to ask, and no fingerprint.
    NoWayToAsk,
}

/// Whether to store a presented certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Store it.
    Trust,
    /// The fingerprint given does not match the presented leaf.
    FingerprintMismatch,
    /// The operator did not answer yes.
    Declined,
    /// Nobody could be asked.
    NoConsent,
}

/// Trust on first use's rule: a certificate is stored only on an explicit yes at a
/// terminal, or when the fingerprint handed out of band is the presented leaf's.
pub fn decide(leaf: &Fingerprint, consent: &Consent) -> Decision {
    match consent {
        Consent::Fingerprint(expected) if *expected == leaf.0 => Decision::Trust,
        Consent::Fingerprint(_) => Decision::FingerprintMismatch,
        Consent::Answer(answer) if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") => {
            Decision::Trust
        }
        Consent::Answer(_) => Decision::Declined,
        Consent::NoWayToAsk => Decision::NoConsent,
    }
}

/// Parses a fingerprint as handed out of band: `sha256:` followed by 64 hex digits,
/// with or without colons, in either case.
///
/// # Errors
/// Any other form.
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex: String = text.strip_prefix("sha256:").unwrap_or(text).chars().filter(|c| *c != ':').collect();
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| {
            format!(
                "\"{}\" is not a SHA-256 fingerprint; expected sha256: and 64 hex digits, e.g. sha256:ab:cd:… as `det-agent check` prints it",
                crate::text::escape(text)
            )
        })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_yes_or_the_right_fingerprint_trusts() {
        let leaf = Fingerprint([0xab; 32]);
        assert_eq!(decide(&leaf, &Consent::Fingerprint([0xab; 32])), Decision::Trust);
        assert_eq!(decide(&leaf, &Consent::Fingerprint([0xac; 32])), Decision::FingerprintMismatch);
        for yes in ["y", "Y", "yes", " YES\n"] {
            assert_eq!(decide(&leaf, &Consent::Answer(yes.to_owned())), Decision::Trust, "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "yess", "sure", "y es"] {
            assert_eq!(decide(&leaf, &Consent::Answer(no.to_owned())), Decision::Declined, "{no:?}");
        }
        assert_eq!(decide(&leaf, &Consent::NoWayToAsk), Decision::NoConsent);
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let colons = format!("sha256:{}", Fingerprint([0xab; 32]));
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert_eq!(parse_fingerprint(&"AB".repeat(32)).unwrap(), [0xab; 32]);
        let err = parse_fingerprint("sha256:\x1b[2Jab").unwrap_err();
        assert!(err.contains("\\x1b") && !err.contains('\x1b'), "{err}");
    }
}
