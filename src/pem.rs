//! Loading certificates and private keys from PEM files, naming the file on every error.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::PemError;

/// The largest certificate or key file read: 1 MiB, hundreds of times a real chain or key,
/// and more than the system CA bundle (about 220 KiB) someone may point `master_cert` at.
pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Reads every certificate in a PEM file, in file order.
///
/// # Errors
/// The file is missing, unreadable or empty, holds only a key, holds no certificate
/// (with a hint when it looks like DER), has broken PEM, or holds a section that is not
/// an X.509 certificate.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let bytes = read(path)?;
    parse_certs(&bytes, path)
}

/// Like [`load_certs`], for bytes already in memory; `path` labels errors.
pub fn parse_certs(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let sections = sections(bytes, path)?;
    let certs: Vec<CertificateDer<'static>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certs.is_empty() {
        let holds_key = sections.iter().any(|(kind, _)| is_key(*kind)) || mentions_encrypted_key(bytes);
        return Err(if holds_key {
            PemError::OnlyKey { path: path.to_owned() }
        } else {
            PemError::NoCertificate { path: path.to_owned(), looks_like_der: bytes.first() == Some(&0x30) }
        });
    }
    for (index, cert) in certs.iter().enumerate() {
        if let Err(err) = x509_parser::parse_x509_certificate(cert) {
            return Err(PemError::BadCertificate {
                path: path.to_owned(),
                index: index + 1,
                detail: x509_problem(&err),
            });
        }
    }
    Ok(certs)
}

/// PEM text for `certs`, 64 characters a line. rustls-pki-types reads PEM but does not
/// write it.
pub fn encode_certs(certs: &[CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in certs {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = data_encoding::BASE64.encode(cert);
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) from a PEM file.
///
/// # Errors
/// The file is missing, unreadable or empty, holds no key (saying so when it holds a
/// certificate instead), holds only an encrypted key, or has broken PEM.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let bytes = read(path)?;
    parse_private_key(&bytes, path)
}

/// Like [`load_private_key`], for bytes already in memory; `path` labels errors.
pub fn parse_private_key(bytes: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let sections = sections(bytes, path)?;
    for (kind, der) in &sections {
        let key = match kind {
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.clone().into()),
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.clone().into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.clone().into()),
            _ => continue,
        };
        return Ok(key);
    }
    if mentions_encrypted_key(bytes) {
        return Err(PemError::EncryptedKey { path: path.to_owned() });
    }
    let holds_certificate = sections.iter().any(|(kind, _)| *kind == SectionKind::Certificate);
    Err(PemError::NoKey { path: path.to_owned(), holds_certificate })
}

/// At most [`MAX_FILE_SIZE`] bytes of the file; a larger one is refused unread.
fn read(path: &Path) -> Result<Vec<u8>, PemError> {
    let unreadable = |source: std::io::Error| match source.kind() {
        ErrorKind::NotFound => PemError::NotFound { path: path.to_owned() },
        _ => PemError::Unreadable { path: path.to_owned(), source },
    };
    let file = fs::File::open(path).map_err(unreadable)?;
    crate::fsutil::read_limited(file, MAX_FILE_SIZE)
        .map_err(unreadable)?
        .ok_or_else(|| PemError::TooLarge { path: path.to_owned(), limit: MAX_FILE_SIZE })
}

/// Every PEM section of a kind rustls-pki-types knows, in order; an empty (or blank)
/// input is an error of its own, and so is one over [`MAX_FILE_SIZE`].
fn sections(bytes: &[u8], path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, PemError> {
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(PemError::TooLarge { path: path.to_owned(), limit: MAX_FILE_SIZE });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(PemError::Empty { path: path.to_owned() });
    }
    <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| PemError::Malformed { path: path.to_owned(), detail: pem_problem(&err) })
}

/// x509-parser's error in words: its Display (nom's) is Debug output, such as
/// `Parsing Error: Der(DerConstraintFailed(IndefiniteLength))`.
fn x509_problem(err: &x509_parser::nom::Err<x509_parser::error::X509Error>) -> String {
    use x509_parser::error::X509Error;
    match err {
        x509_parser::nom::Err::Incomplete(_) => "it is cut short".to_owned(),
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => match e {
            X509Error::Der(_) | X509Error::NomError(_) => "its DER encoding is damaged".to_owned(),
            other => other.to_string(),
        },
    }
}

/// rustls-pki-types's error in words: its own Display shows byte arrays and the base64
/// decoder's Debug output (`InvalidCharacter(45)`).
fn pem_problem(err: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match err {
        Error::MissingSectionEnd { end_marker } => {
            format!("a section has no end line (expected \"-----END {}-----\")", text(end_marker))
        }
        Error::IllegalSectionStart { line } => {
            format!("{:?} starts like a BEGIN line but is not one (expected \"-----BEGIN LABEL-----\")", text(line))
        }
        Error::Base64Decode(_) => "the text between a BEGIN and an END line is not valid base64".to_owned(),
        Error::Io(e) => format!("cannot read: {e}"),
        Error::SectionTooLarge => "a section is too large".to_owned(),
        _ => "the PEM text is not well formed".to_owned(),
    }
}

fn is_key(kind: SectionKind) -> bool {
    matches!(kind, SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey)
}

/// rustls-pki-types skips section labels it does not know, such as encrypted keys; look
/// for them by name so the error can say what the file really holds.
fn mentions_encrypted_key(bytes: &[u8]) -> bool {
    let text = String::from_utf8_lossy(bytes);
    text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || text.contains("Proc-Type: 4,ENCRYPTED")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEAF: &[u8] = include_bytes!("../fixtures/pki/master.pem");
    const KEY: &[u8] = include_bytes!("../fixtures/pki/master.key");

    fn p() -> &'static Path {
        Path::new("master.pem")
    }

    #[test]
    fn reads_a_chain_in_order() {
        let certs = parse_certs(LEAF, p()).unwrap();
        assert_eq!(certs.len(), 2);
    }

    #[test]
    fn only_a_key_is_named_as_such() {
        let err = parse_certs(KEY, p()).unwrap_err();
        assert!(matches!(err, PemError::OnlyKey { .. }), "{err}");
    }

    #[test]
    fn der_gets_a_conversion_hint() {
        let der = parse_certs(LEAF, p()).unwrap().remove(0);
        let err = parse_certs(der.as_ref(), p()).unwrap_err();
        assert!(err.to_string().contains("openssl x509 -inform der"), "{err}");
    }

    #[test]
    fn blank_file_is_empty() {
        assert!(matches!(parse_certs(b" \n\n", p()), Err(PemError::Empty { .. })));
    }

    #[test]
    fn garbage_inside_a_certificate_section_is_caught() {
        let text = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let err = parse_certs(text, p()).unwrap_err();
        assert!(matches!(err, PemError::BadCertificate { index: 1, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "master.pem: certificate #1 is not a valid X.509 certificate: its DER encoding is damaged; copy the certificate again"
        );
    }

    #[test]
    fn broken_pem_is_malformed() {
        let text = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert!(matches!(parse_certs(text, p()), Err(PemError::Malformed { .. })));
    }

    #[test]
    fn broken_pem_is_explained_in_words() {
        for (text, detail) in [
            (
                &b"-----BEGIN CERTIFICATE-----\nAAAA\n"[..],
                "a section has no end line (expected \"-----END CERTIFICATE-----\")",
            ),
            (
                b"-----BEGIN CERTIFICATE-----\n-\n-----END CERTIFICATE-----\n",
                "the text between a BEGIN and an END line is not valid base64",
            ),
            (
                b"-----BEGIN \n",
                "\"-----BEGIN \" starts like a BEGIN line but is not one (expected \"-----BEGIN LABEL-----\")",
            ),
        ] {
            assert_eq!(
                parse_certs(text, p()).unwrap_err().to_string(),
                format!("master.pem: malformed PEM: {detail}; copy the PEM text again, from its -----BEGIN line to its -----END line")
            );
        }
    }

    #[test]
    fn key_file_holding_a_certificate_says_so() {
        let err = parse_private_key(LEAF, p()).unwrap_err();
        assert!(matches!(err, PemError::NoKey { holds_certificate: true, .. }), "{err}");
    }

    #[test]
    fn encrypted_key_is_explained() {
        let text = b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert!(matches!(parse_private_key(text, p()), Err(PemError::EncryptedKey { .. })));
    }

    #[test]
    fn pkcs8_key_loads() {
        assert!(matches!(parse_private_key(KEY, p()), Ok(PrivateKeyDer::Pkcs8(_))));
    }

    #[test]
    fn unreadable_file_names_the_path_and_the_cause() {
        // Reading a directory fails with an I/O error other than "not found".
        let dir = std::env::temp_dir();
        let err = load_certs(&dir).unwrap_err();
        assert!(matches!(err, PemError::Unreadable { .. }), "{err}");
        assert!(err.to_string().starts_with(&format!("{}: cannot read: ", dir.display())), "{err}");
    }

    #[test]
    fn a_file_over_1_mib_is_refused_unparsed() {
        // /dev/zero never ends: refused after 1 MiB + 1 bytes, not read for ever.
        let zero = Path::new("/dev/zero");
        assert_eq!(
            load_certs(zero).unwrap_err().to_string(),
            "/dev/zero: the file is over 1 MiB (1048576 bytes), far more than a certificate chain or a private key (a few KiB); check that the option names the right file"
        );
        assert!(matches!(load_private_key(zero), Err(PemError::TooLarge { limit: 1048576, .. })));
        let mut big = LEAF.repeat((MAX_FILE_SIZE as usize / LEAF.len()) + 1);
        assert!(matches!(parse_certs(&big, p()), Err(PemError::TooLarge { .. })));
        assert!(matches!(parse_private_key(&big, p()), Err(PemError::TooLarge { .. })));
        big.truncate(MAX_FILE_SIZE as usize);
        assert!(!matches!(parse_certs(&big, p()), Err(PemError::TooLarge { .. })), "1 MiB exactly is read");
    }

    #[test]
    fn missing_file_is_not_found() {
        let err = load_certs(Path::new("/nonexistent/det-agent/master.pem")).unwrap_err();
        assert!(matches!(err, PemError::NotFound { .. }));
    }
}
