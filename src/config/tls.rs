//! TLS assembly: the trust mode, the name to verify, the client identity (checked to be a
//! pair) and the key pins, from the layered `security.tls` settings.

use std::path::{Path, PathBuf};

use rustls_pki_types::DnsName;

use super::names::{CERT_NAME, CLIENT_CERT, CLIENT_KEY, KEY_PINS, MASTER_CERT, SKIP_VERIFY};
use super::resolve::Setting;
use super::{ClientIdentity, PinnedCerts, TlsConfig, Trust};
use crate::error::{ConfigError, Origin};
use crate::pem;
use crate::x509::KeyPin;

pub(super) fn tls_config(
    skip_verify: Option<Setting<bool>>,
    master_cert: Option<Setting<PathBuf>>,
    cert_name: Option<Setting<String>>,
    client_cert: Option<Setting<PathBuf>>,
    client_key: Option<Setting<PathBuf>>,
) -> Result<TlsConfig, ConfigError> {
    let skip = skip_verify.filter(|s| s.value);
    if let (Some(cert), Some(skip)) = (&master_cert, &skip) {
        return Err(ConfigError::Conflict {
            first: MASTER_CERT.key,
            first_origin: cert.origin.clone(),
            second: SKIP_VERIFY.key,
            second_origin: skip.origin.clone(),
            fix: "a pinned certificate is pointless when verification is off; remove skip_verify to verify against master_cert (recommended), or remove master_cert",
        });
    }
    let master_cert_name = cert_name.map(check_cert_name).transpose()?;
    let client_identity = match (client_cert, client_key) {
        (None, None) => None,
        (Some(cert), None) => {
            return Err(ConfigError::HalfPair {
                present: CLIENT_CERT.key,
                origin: cert.origin,
                missing: CLIENT_KEY.key,
            })
        }
        (None, Some(key)) => {
            return Err(ConfigError::HalfPair { present: CLIENT_KEY.key, origin: key.origin, missing: CLIENT_CERT.key })
        }
        (Some(cert), Some(key)) => Some(load_client_identity(&cert.value, &key.value, cert.origin, key.origin)?),
    };
    let trust = match (master_cert, skip) {
        (Some(cert), _) => {
            let certs = pem::load_certs(&cert.value).map_err(|error| ConfigError::File {
                option: MASTER_CERT.key,
                origin: cert.origin,
                error,
            })?;
            Trust::Pinned(PinnedCerts { path: cert.value, certs, store_entry: None })
        }
        (None, Some(_)) => Trust::SkipVerify,
        (None, None) => Trust::PublicRoots,
    };
    Ok(TlsConfig { trust, master_cert_name, client_identity, master_key_pins: Vec::new() })
}

/// Loads a client certificate and key and checks that the key belongs to the certificate.
pub(super) fn load_client_identity(
    cert_path: &Path,
    key_path: &Path,
    cert_origin: Origin,
    key_origin: Origin,
) -> Result<ClientIdentity, ConfigError> {
    let chain = pem::load_certs(cert_path).map_err(|error| ConfigError::File {
        option: CLIENT_CERT.key,
        origin: cert_origin,
        error,
    })?;
    let key = pem::load_private_key(key_path).map_err(|error| ConfigError::File {
        option: CLIENT_KEY.key,
        origin: key_origin,
        error,
    })?;
    let provider = crate::crypto::provider();
    let mismatch = |detail: String| ConfigError::ClientKeyMismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        detail,
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| mismatch(format!("the key cannot be used: {e}")))?;
    let certified = rustls::sign::CertifiedKey::new(chain.clone(), signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(mismatch("they are different key pairs".to_owned()));
        }
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => return Err(mismatch(e.to_string())),
    }
    Ok(ClientIdentity::new(cert_path.to_owned(), key_path.to_owned(), chain, key))
}

fn check_cert_name(name: Setting<String>) -> Result<DnsName<'static>, ConfigError> {
    let invalid = |expected: &str| ConfigError::Invalid {
        option: CERT_NAME.key,
        origin: name.origin.clone(),
        value: name.value.clone(),
        expected: expected.to_owned(),
    };
    let text = name.value.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(&name.value);
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Err(invalid(
            "it is an IP address, but master_cert_name must be a DNS name that the master's certificate carries; \
             to verify the master by IP instead, remove master_cert_name and put that IP in master_host",
        ));
    }
    if text.contains('*') {
        return Err(invalid("a wildcard cannot be verified; use the concrete name the master is known by, e.g. master.example.com for *.example.com"));
    }
    DnsName::try_from(name.value.clone()).map_err(|_| invalid("expected a DNS name such as master.example.com"))
}

/// A key pin list, each entry checked; an error names the entry by position. `text` is
/// the comma-separated list of a flag or variable (neither hex nor base64 has a comma),
/// `None` for the file's YAML list. A list that holds no pin is an error, never "no
/// pins": with skip_verify that would turn key-pin mode into an unauthenticated
/// connection. So is an empty entry (`a,,b`), which is never skipped.
pub(super) fn pin_list(
    entries: &[String],
    text: Option<&str>,
    origin: Origin,
) -> Result<Setting<Vec<KeyPin>>, ConfigError> {
    let n = entries.len();
    if entries.iter().all(|e| e.trim().is_empty()) {
        let found = match (text, n) {
            (Some(text), _) => format!("holds no pin ({text:?})"),
            (None, 0) => "holds no pin (an empty list)".to_owned(),
            (None, 1) => "holds no pin (its one entry is empty)".to_owned(),
            (None, _) => format!("holds no pin (all {n} entries are empty)"),
        };
        return Err(ConfigError::Blank { option: KEY_PINS.key, origin, found, expected: KEY_PINS.value });
    }
    let invalid = |entry: &str, expected: String| ConfigError::Invalid {
        option: KEY_PINS.key,
        origin: origin.clone(),
        value: text.unwrap_or(entry).to_owned(),
        expected,
    };
    let mut pins = Vec::with_capacity(n);
    for (i, entry) in entries.iter().enumerate() {
        let position = format!("entry {} of {n}", i + 1);
        let entry = entry.trim();
        if entry.is_empty() {
            let fix = match text {
                Some(_) => {
                    "two commas in a row, or one at an end; remove the extra comma, or put the missing pin there"
                }
                None => "remove it from the list, or put the missing pin there",
            };
            return Err(invalid(entry, format!("{position} is empty ({fix})")));
        }
        match entry.parse::<KeyPin>() {
            Ok(pin) => pins.push(pin),
            Err(why) if text.is_some() => return Err(invalid(entry, format!("{position} ({entry:?}): {why}"))),
            Err(why) => return Err(invalid(entry, format!("{position}: {why}"))),
        }
    }
    Ok(Setting { value: pins, origin })
}
