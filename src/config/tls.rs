//! TLS assembly: the trust mode, the name to verify, the client identity (checked to be a
//! pair) and the key pins, from the layered `security.tls` settings.

use std::path::{Path, PathBuf};

use rustls_pki_types::DnsName;

use super::defaults::DEFAULT_TLS_PORT;
use super::file::FileTls;
use super::names::{CERT_NAME, CLIENT_CERT, CLIENT_KEY, KEY_PINS, MASTER_CERT, SKIP_VERIFY, TLS_ENABLED};
use super::parse;
use super::resolve::{Resolver, Setting};
use super::{ClientIdentity, Host, PinnedCerts, TlsConfig, Trust};
use crate::error::{ConfigError, Origin};
use crate::pem;
use crate::x509::KeyPin;

/// The `security.tls` options, layered and checked, before any file is loaded.
pub(super) struct TlsSettings {
    enabled: Option<Setting<bool>>,
    skip_verify: Option<Setting<bool>>,
    master_cert: Option<Setting<PathBuf>>,
    cert_name: Option<Setting<String>>,
    key_pins: Option<Setting<Vec<KeyPin>>>,
    client_cert: Option<Setting<PathBuf>>,
    client_key: Option<Setting<PathBuf>>,
}

impl Resolver<'_> {
    /// Layers the `security.tls` options.
    pub(super) fn tls_settings(&self, ftls: FileTls) -> Result<TlsSettings, ConfigError> {
        let a = self.args;
        // Every file value is checked, even one a flag or variable overrides: a key
        // without a value is a broken file either way.
        let file_enabled = self.tls_key(&TLS_ENABLED, ftls.enabled)?.map(|b| b.0);
        let enabled = self.pick(&TLS_ENABLED, &a.security_tls_enabled, file_enabled, parse::boolean)?;
        let file_skip = self.tls_key(&SKIP_VERIFY, ftls.skip_verify)?.map(|b| b.0);
        let skip_verify = self.pick(&SKIP_VERIFY, &a.security_tls_skip_verify, file_skip, parse::boolean)?;
        let file_cert = self.file_path_value(&MASTER_CERT, self.tls_key(&MASTER_CERT, ftls.master_cert)?)?;
        let master_cert = self.pick(&MASTER_CERT, &a.security_tls_master_cert, file_cert, parse::path)?;
        let file_name = self.file_text(&CERT_NAME, self.tls_key(&CERT_NAME, ftls.master_cert_name)?)?;
        let cert_name = self.pick(&CERT_NAME, &a.security_tls_master_cert_name, file_name, |s| Ok(s.to_owned()))?;
        let file_pins = match self.tls_key(&KEY_PINS, ftls.master_key_pins)? {
            Some(list) => Some(pin_list(&list, None, self.file_origin(&KEY_PINS))?),
            None => None,
        };
        let key_pins = match self.flag_or_env(&KEY_PINS, &a.security_tls_master_key_pins)? {
            Some((text, origin)) => {
                let entries: Vec<String> = text.split(',').map(str::to_owned).collect();
                Some(pin_list(&entries, Some(&text), origin)?)
            }
            None => file_pins,
        };
        let file_client_cert = self.file_path_value(&CLIENT_CERT, self.tls_key(&CLIENT_CERT, ftls.client_cert)?)?;
        let client_cert = self.pick(&CLIENT_CERT, &a.security_tls_client_cert, file_client_cert, parse::path)?;
        let file_client_key = self.file_path_value(&CLIENT_KEY, self.tls_key(&CLIENT_KEY, ftls.client_key)?)?;
        let client_key = self.pick(&CLIENT_KEY, &a.security_tls_client_key, file_client_key, parse::path)?;
        Ok(TlsSettings { enabled, skip_verify, master_cert, cert_name, key_pins, client_cert, client_key })
    }

    /// The TLS settings, their files loaded and checked; `None` when TLS is off (and then
    /// no other TLS option may be set). `master_port` is the port set, if any.
    pub(super) fn tls(
        &self,
        settings: TlsSettings,
        master_host: &Host,
        master_port: Option<u16>,
    ) -> Result<Option<TlsConfig>, ConfigError> {
        let TlsSettings { enabled, skip_verify, master_cert, cert_name, key_pins, client_cert, client_key } = settings;
        let tls_on = enabled.as_ref().is_some_and(|s| s.value);
        if tls_on {
            let mut tls = tls_config(skip_verify, master_cert, cert_name, client_cert, client_key)?;
            tls.master_key_pins = key_pins.map(|s| s.value).unwrap_or_default();
            if matches!(tls.trust, Trust::PublicRoots) {
                let port = master_port.unwrap_or(DEFAULT_TLS_PORT);
                if let Some(stored) = self.stored_chain(master_host, port)? {
                    tls.trust = Trust::Pinned(stored);
                }
            }
            Ok(Some(tls))
        } else {
            let mut set = Vec::new();
            if skip_verify.as_ref().is_some_and(|s| s.value) {
                set.push(SKIP_VERIFY.key.to_owned());
            }
            for (opt, present) in [
                (&MASTER_CERT, master_cert.is_some()),
                (&CERT_NAME, cert_name.is_some()),
                (&KEY_PINS, key_pins.is_some()),
                (&CLIENT_CERT, client_cert.is_some()),
                (&CLIENT_KEY, client_key.is_some()),
            ] {
                if present {
                    set.push(opt.key.to_owned());
                }
            }
            if !set.is_empty() {
                let origin = enabled.map(|s| s.origin).unwrap_or(Origin::Default);
                return Err(ConfigError::TlsOptionsWithoutTls { origin, options: set });
            }
            Ok(None)
        }
    }

    /// A chain trusted on first use for this master (`det-agent trust`), used as a pin
    /// when neither master_cert nor skip_verify is set. No store location (no HOME) means
    /// no entry; a corrupt store is an error, never a silent fallback to CA mode.
    fn stored_chain(&self, host: &Host, port: u16) -> Result<Option<PinnedCerts>, ConfigError> {
        let Ok(store) = crate::store::Store::locate(self.env) else { return Ok(None) };
        let url = crate::store::MasterUrl::for_agent(host, port, true);
        let certs = store.get(&url).map_err(ConfigError::TrustStore)?;
        Ok(certs.map(|certs| PinnedCerts { path: store.path().to_owned(), certs, store_entry: Some(url.store_key()) }))
    }
}

fn tls_config(
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
