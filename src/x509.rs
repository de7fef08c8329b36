//! What a certificate says, in the terms an operator needs when it is rejected: its
//! names, who issued it, its validity window, its SHA-256 fingerprint and the pin of its
//! key.
//!
//! Only the diagnostics and the pinned exact-match path read these summaries; chain and
//! name validation itself is webpki's.

use std::fmt;
use std::net::IpAddr;

use serde::{Serialize, Serializer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::text::Untrusted;

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
        Fingerprint(sha256(&[der]))
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

/// SHA-256 of a certificate's DER-encoded SubjectPublicKeyInfo: a pin on the key, which
/// survives renewing the certificate with the same key (kubeadm's and Teleport's CA pins
/// are the same hash). Shown as `sha256:` and 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyPin(pub [u8; 32]);

impl KeyPin {
    /// Hashes a complete SubjectPublicKeyInfo (outer SEQUENCE included).
    pub fn of_spki(spki: &[u8]) -> Self {
        KeyPin(sha256(&[spki]))
    }

    /// Hashes a SubjectPublicKeyInfo given as the contents of its outer SEQUENCE, as
    /// webpki stores a trust anchor's key: the SEQUENCE header is put back first, so the
    /// pin equals [`of_spki`](Self::of_spki) of the whole encoding.
    pub fn of_spki_contents(contents: &[u8]) -> Self {
        // DER definite length: short form below 128, else 0x80 | number of length bytes.
        let len = contents.len().to_be_bytes();
        let skip = len.iter().take_while(|b| **b == 0).count();
        let mut header = vec![0x30];
        if contents.len() < 0x80 {
            header.push(contents.len() as u8);
        } else {
            header.push(0x80 | (len.len() - skip) as u8);
            header.extend_from_slice(&len[skip..]);
        }
        KeyPin(sha256(&[&header, contents]))
    }

    /// The pin of a DER certificate's key.
    ///
    /// # Errors
    /// The bytes are not an X.509 certificate.
    pub fn of_cert(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        Ok(KeyPin::of_spki(cert.public_key().raw))
    }
}

impl std::str::FromStr for KeyPin {
    type Err = String;

    /// Reads `sha256:` followed by the hash as 64 hex digits or as base64 (standard or
    /// URL-safe alphabet, padding optional), the forms kubeadm, Teleport and HPKP print.
    fn from_str(text: &str) -> Result<Self, String> {
        const EXPECTED: &str = "expected sha256: followed by the SHA-256 of the master's public key (its SubjectPublicKeyInfo) as 64 hex digits or base64; `det-agent check` prints the pin of every certificate the master presents";
        let Some(value) = text.strip_prefix("sha256:").or_else(|| text.strip_prefix("SHA256:")) else {
            return Err(EXPECTED.to_owned());
        };
        if value.len() == 95 && value.bytes().filter(|b| *b == b':').count() == 31 {
            return Err("this looks like a certificate fingerprint (colon-separated, as `det-agent trust` shows it), which changes with every renewal; a key pin hashes the public key instead, and `det-agent check` prints it".to_owned());
        }
        let decoded = if value.len() == 64 {
            data_encoding::HEXLOWER_PERMISSIVE.decode(value.as_bytes()).ok()
        } else {
            let trimmed = value.trim_end_matches('=');
            data_encoding::BASE64_NOPAD
                .decode(trimmed.as_bytes())
                .or_else(|_| data_encoding::BASE64URL_NOPAD.decode(trimmed.as_bytes()))
                .ok()
        };
        match decoded.map(<[u8; 32]>::try_from) {
            Some(Ok(hash)) => Ok(KeyPin(hash)),
            _ => Err(EXPECTED.to_owned()),
        }
    }
}

impl fmt::Display for KeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", data_encoding::HEXLOWER.encode(&self.0))
    }
}

impl fmt::Debug for KeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPin({self})")
    }
}

impl Serialize for KeyPin {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        hash.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(hash.finish().as_ref());
    out
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

impl Timestamp {
    /// The system clock now. Code that decides by time takes a `Timestamp` instead of
    /// calling this, so tests inject the time.
    pub fn now() -> Timestamp {
        Timestamp::from(rustls_pki_types::UnixTime::now())
    }
}

impl From<rustls_pki_types::UnixTime> for Timestamp {
    fn from(time: rustls_pki_types::UnixTime) -> Self {
        Timestamp(i64::try_from(time.as_secs()).unwrap_or(i64::MAX))
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
    /// Subject distinguished name, e.g. `O=Example, CN=master.example.com`, as the
    /// certificate spells it: shown escaped (see [`crate::text`]).
    pub subject: Untrusted,
    /// Issuer distinguished name, as `subject`.
    pub issuer: Untrusted,
    /// DNS names in the subjectAltName extension, as presented (not checked for syntax).
    pub dns_names: Vec<Untrusted>,
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
    /// SHA-256 of the public key, for `security.tls.master_key_pins`.
    pub key_pin: KeyPin,
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
                    GeneralName::DNSName(dns) => dns_names.push(Untrusted::from(*dns)),
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
            subject: Untrusted::new(cert.subject().to_string()),
            issuer: Untrusted::new(cert.issuer().to_string()),
            dns_names,
            ip_addresses,
            not_before: Timestamp(cert.validity().not_before.timestamp()),
            not_after: Timestamp(cert.validity().not_after.timestamp()),
            is_ca,
            server_auth,
            version: cert.version().0 + 1,
            sha256: Fingerprint::of(der),
            key_pin: KeyPin::of_spki(cert.public_key().raw),
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
        assert_eq!(s.dns_names, [Untrusted::from("master.det.test"), Untrusted::from("localhost")]);
        assert_eq!(s.ip_addresses, ["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(s.not_before.to_string(), "2024-01-01T00:00:00Z");
        assert_eq!(s.not_after.to_string(), "2124-01-01T00:00:00Z");
        assert_eq!(s.is_ca, Some(false));
        assert!(s.server_auth);
        assert!(s.subject.raw().contains("CN=master.det.test"), "{}", s.subject);
        assert!(s.issuer.raw().contains("Intermediate"), "{}", s.issuer);
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
    fn key_pins_read_hex_and_base64_and_refuse_fingerprints() {
        let pin = KeyPin([0xAB; 32]);
        let hex = pin.to_string();
        assert_eq!(hex, format!("sha256:{}", "ab".repeat(32)));
        assert_eq!(hex.parse::<KeyPin>().unwrap(), pin);
        assert_eq!(hex.to_uppercase().replace("SHA256:", "sha256:").parse::<KeyPin>().unwrap(), pin);
        let b64 = data_encoding::BASE64.encode(&pin.0);
        assert_eq!(format!("sha256:{b64}").parse::<KeyPin>().unwrap(), pin);
        assert_eq!(format!("sha256:{}", b64.trim_end_matches('=')).parse::<KeyPin>().unwrap(), pin);
        let url = data_encoding::BASE64URL.encode(&[0xFB; 32]);
        assert_eq!(format!("sha256:{url}").parse::<KeyPin>().unwrap(), KeyPin([0xFB; 32]));
        let fingerprint = format!("sha256:{}", Fingerprint([0xAB; 32]));
        assert!(fingerprint.parse::<KeyPin>().unwrap_err().contains("certificate fingerprint"));
        for bad in ["", "ab".repeat(32).as_str(), "sha256:", "sha256:abc", "sha1:abcd", "sha256:zz"] {
            assert!(bad.parse::<KeyPin>().unwrap_err().contains("expected sha256:"), "{bad:?}");
        }
        // 31 bytes of base64 is not a SHA-256.
        assert!(format!("sha256:{}", data_encoding::BASE64.encode(&[1; 31])).parse::<KeyPin>().is_err());
    }

    #[test]
    fn a_wrapped_anchor_key_hashes_like_the_certificate_key() {
        // EC keys have a short-form DER length, RSA keys a long one.
        for file in ["master.pem", "master-rsa.pem"] {
            let der = &crate::dev_master::fixtures::certs(file)[0];
            let cert = webpki::EndEntityCert::try_from(der).unwrap();
            let spki = cert.subject_public_key_info();
            assert_eq!(KeyPin::of_spki(&spki), KeyPin::of_cert(der).unwrap(), "{file}");
            let header = if spki[1] < 0x80 { 2 } else { 2 + usize::from(spki[1] & 0x7f) };
            assert_eq!(header > 2, file.contains("rsa"));
            assert_eq!(KeyPin::of_spki_contents(&spki[header..]), KeyPin::of_spki(&spki), "{file}");
        }
    }

    #[test]
    fn no_san_says_so() {
        let s = leaf(include_bytes!("../fixtures/pki/no-san.pem"));
        assert_eq!(s.names(), "no subjectAltName");
    }
}
