//! What a certificate says, in the terms an operator needs when it is rejected: its
//! names, who issued it, its validity window and its SHA-256 fingerprint.
//!
//! Only the diagnostics and the pinned exact-match path read these summaries; chain and
//! name validation itself is webpki's.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// SHA-256 of a certificate's DER encoding: the fingerprint the `det` CLI shows.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

/// A certificate's validity window as Unix seconds (not before, not after), without the
/// rest of [`CertSummary`]: the verifier's chain memory needs only this.
pub fn validity_window(der: &[u8]) -> Option<(i64, i64)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some((cert.validity().not_before.timestamp(), cert.validity().not_after.timestamp()))
}

impl Fingerprint {
    /// Hashes `der`.
    pub fn of(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Fingerprint(out)
    }
}

/// Lower-case, colon-separated hex, as the Determined CLI prints it.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Seconds since the Unix epoch, shown as RFC 3339 UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let formatted = time::OffsetDateTime::from_unix_timestamp(self.0)
            .ok()
            .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
        match formatted {
            Some(text) => f.write_str(&text),
            None => write!(f, "@{}", self.0),
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The parts of a certificate that explain a trust decision.
#[derive(Clone, Debug, Serialize)]
pub struct CertSummary {
    /// Subject distinguished name, e.g. `O=Example, CN=master.example.com`.
    pub subject: String,
    /// Issuer distinguished name.
    pub issuer: String,
    /// DNS names in the subjectAltName extension.
    pub dns_names: Vec<String>,
    /// IP addresses in the subjectAltName extension.
    pub ip_addresses: Vec<IpAddr>,
    /// Start of the validity window.
    pub not_before: Timestamp,
    /// End of the validity window.
    pub not_after: Timestamp,
    /// `Some(true)` for basicConstraints CA:TRUE, `Some(false)` for CA:FALSE, `None` when absent.
    pub is_ca: Option<bool>,
    /// False only when an extendedKeyUsage extension is present without serverAuth.
    pub server_auth: bool,
    /// X.509 version: 1 or 3 in practice.
    pub version: u32,
    /// SHA-256 of the DER.
    pub sha256: Fingerprint,
}

impl CertSummary {
    /// Parses a DER certificate.
    ///
    /// # Errors
    /// The bytes are not an X.509 certificate; the message says why.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        let is_ca = cert.basic_constraints().ok().flatten().map(|bc| bc.value.ca);
        let server_auth = match cert.extended_key_usage() {
            Ok(Some(eku)) => eku.value.server_auth || eku.value.any,
            _ => true,
        };
        Ok(CertSummary {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            dns_names,
            ip_addresses,
            not_before: Timestamp(cert.validity().not_before.timestamp()),
            not_after: Timestamp(cert.validity().not_after.timestamp()),
            is_ca,
            server_auth,
            version: cert.version().0 + 1,
            sha256: Fingerprint::of(der),
        })
    }

    /// Whether subject and issuer are the same name (a root or a self-signed leaf).
    pub fn self_issued(&self) -> bool {
        self.subject == self.issuer
    }

    /// DNS and IP names together, for messages: `DNS:a, IP:1.2.3.4`.
    pub fn names(&self) -> String {
        let names: Vec<String> = self
            .dns_names
            .iter()
            .map(|d| format!("DNS:{d}"))
            .chain(self.ip_addresses.iter().map(|ip| format!("IP:{ip}")))
            .collect();
        if names.is_empty() {
            "no subjectAltName".to_owned()
        } else {
            names.join(", ")
        }
    }
}

impl fmt::Display for CertSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "subject {}; issuer {}; names {}; valid {} to {}; sha256 {}",
            self.subject,
            self.issuer,
            self.names(),
            self.not_before,
            self.not_after,
            self.sha256
        )
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pem::parse_certs;
    use std::path::Path;

    fn leaf(pem: &[u8]) -> CertSummary {
        let certs = parse_certs(pem, Path::new("fixture")).unwrap();
        CertSummary::parse(&certs[0]).unwrap()
    }

    #[test]
    fn reads_names_and_window() {
        let s = leaf(include_bytes!("../fixtures/pki/master.pem"));
        assert_eq!(s.dns_names, ["master.det.test", "localhost"]);
        assert_eq!(s.ip_addresses, ["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(s.not_before.to_string(), "2024-01-01T00:00:00Z");
        assert_eq!(s.not_after.to_string(), "2124-01-01T00:00:00Z");
        assert_eq!(s.is_ca, Some(false));
        assert!(s.server_auth);
        assert!(s.subject.contains("CN=master.det.test"), "{}", s.subject);
        assert!(s.issuer.contains("Intermediate"), "{}", s.issuer);
    }

    #[test]
    fn self_signed_ca_is_recognised() {
        let s = leaf(include_bytes!("../fixtures/pki/self-signed-ca.pem"));
        assert_eq!(s.is_ca, Some(true));
        assert!(s.self_issued());
    }

    #[test]
    fn fingerprint_is_lower_colon_hex() {
        let f = Fingerprint([0xAB; 32]);
        let text = f.to_string();
        assert_eq!(text.len(), 32 * 3 - 1);
        assert!(text.starts_with("ab:ab:"));
    }

    #[test]
    fn no_san_says_so() {
        let s = leaf(include_bytes!("../fixtures/pki/no-san.pem"));
        assert_eq!(s.names(), "no subjectAltName");
    }
}
