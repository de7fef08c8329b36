//! Which name Fluent Bit verifies the master by, and the rule that makes it safe: a
//! DNS name, never an IP, that the master's certificate carries.
//!
//! Fluent Bit up to 5.0.5 cannot verify an IP address (OpenSSL's host check, given an
//! IP string, compares it with DNS entries only; older versions sent the IP as SNI or
//! checked no name at all). So the only configuration that verifies the master on
//! every version in the field is `tls.vhost` = a DNS name of the master's certificate
//! with `tls.verify_hostname on`.

use rustls_pki_types::DnsName;

use super::FluentError;
use crate::config::{Host, TlsConfig, Trust};
use crate::x509::CertSummary;

/// A certificate of the master that could be read, and where it came from ("the
/// certificate the master presented", "the leaf in /etc/det/master.pem").
#[derive(Clone, Debug)]
pub struct Evidence {
    /// Where the certificate came from, for messages.
    pub source: String,
    /// What it says.
    pub cert: CertSummary,
}

/// What Fluent Bit will verify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verification {
    /// skip_verify: nothing is verified. `sni` is `master_cert_name` when set.
    Off {
        /// The name sent as SNI, if any.
        sni: Option<String>,
    },
    /// The master is verified as `name`.
    Name {
        /// The DNS name set as `tls.vhost`.
        name: String,
        /// How far the name was checked here.
        checked: Checked,
    },
}

/// How far a verified name was checked before writing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Found among the DNS names of the certificate described.
    InCertificate(String),
    /// Only its form: the master's certificate was not available.
    FormOnly,
}

/// Chooses the name Fluent Bit verifies when it dials `dialed` (set by the option named
/// `dialed_option`), and checks it against `evidence` when there is a certificate.
///
/// # Errors
/// The dialed host is an IP and no `master_cert_name` is set, the certificate carries no
/// DNS name, or it does not carry the chosen one.
pub fn choose(
    dialed: &Host,
    dialed_option: &'static str,
    tls: &TlsConfig,
    evidence: Option<&Evidence>,
) -> Result<Verification, FluentError> {
    let override_name = tls.master_cert_name.as_ref().map(|n| n.as_ref().to_owned());
    if matches!(tls.trust, Trust::SkipVerify) {
        return Ok(Verification::Off { sni: override_name });
    }
    let name = match (override_name, dialed) {
        (Some(name), _) => name,
        (None, Host::Dns(name)) => name.as_ref().to_owned(),
        (None, Host::Ip(ip)) => {
            return Err(FluentError::IpWithoutName {
                option: dialed_option,
                ip: *ip,
                known_names: evidence
                    .map(|e| (e.source.clone(), e.cert.dns_names.iter().map(ToString::to_string).collect())),
            })
        }
    };
    let Some(evidence) = evidence else {
        return Ok(Verification::Name { name, checked: Checked::FormOnly });
    };
    if evidence.cert.dns_names.is_empty() {
        return Err(FluentError::NoDnsName { evidence: Box::new(evidence.clone()) });
    }
    if !evidence.cert.dns_names.iter().any(|pattern| matches(pattern.raw(), &name)) {
        return Err(FluentError::NameNotInCertificate { name, evidence: Box::new(evidence.clone()) });
    }
    Ok(Verification::Name { name, checked: Checked::InCertificate(evidence.source.clone()) })
}

/// Whether the certificate name `pattern` covers the DNS name `name`, per RFC 6125
/// §6.4.3 as browsers and webpki apply it: case-insensitive, and a wildcard only as the
/// whole left-most label of a pattern with at least two more labels, standing for
/// exactly one non-empty label.
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.strip_suffix('.').unwrap_or(pattern).to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(rest) => {
            if !rest.contains('.') || rest.contains('*') || DnsName::try_from(rest).is_err() {
                return false;
            }
            match name.split_once('.') {
                Some((first, tail)) => !first.is_empty() && tail == rest,
                None => false,
            }
        }
        None => !pattern.contains('*') && pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_exactly_one_label() {
        assert!(matches("master.example.com", "MASTER.example.com"));
        assert!(matches("master.example.com.", "master.example.com"));
        assert!(matches("*.example.com", "master.example.com"));
        assert!(matches("*.Example.com", "master.example.COM"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("*.example.com", "a.master.example.com"));
        assert!(!matches("*.example.com", ".example.com"));
        assert!(!matches("*.com", "example.com"), "a wildcard needs two labels after it");
        assert!(!matches("m*.example.com", "master.example.com"), "partial-label wildcards are not honoured");
        assert!(!matches("*.*.example.com", "a.b.example.com"));
        assert!(!matches("master.example.com", "other.example.com"));
    }
}
