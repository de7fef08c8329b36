//! A Fluent Bit configuration that ships task logs to the master and trusts it exactly
//! as the agent does.
//!
//! [`Pipeline::build`] turns a [`Config`] into a checked model: a `forward` input for
//! tasks and an `http` output to the master's `/task-logs`, with the TLS options of the
//! agent's trust mode. It reads no files: the master certificate it checks names against
//! comes from the config (pinned mode) or from the caller ([`io::probe`]), and CA mode's
//! host store from `SSL_CERT_FILE` / `SSL_CERT_DIR` ([`HostStore`];
//! [`Pipeline::build_with`] takes it explicitly). [`Pipeline::render`] writes either
//! format and parses its own output back before returning it, so a value that slipped
//! past [`Value`] would be an error, not a config. [`io`] writes the files.

mod classic;
mod host_store;
pub mod io;
mod name;
mod value;
mod yaml;

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

pub use classic::{parse as parse_classic, Parsed as ParsedClassic};
pub use host_store::HostStore;
pub use name::{matches as name_matches, Checked, Evidence, Verification};
pub use value::Value;
pub use yaml::parse as parse_yaml;

use crate::config::{Config, Trust};
use crate::x509::CertSummary;

/// The file name of the master's certificate copied beside the configuration.
pub const CA_FILE_NAME: &str = "master-ca.pem";

pub use crate::config::FluentFormat as Format;

/// Where `tls.ca_file` points in pinned mode.
#[derive(Clone, Copy, Debug)]
pub enum CaFile<'a> {
    /// At the copy [`io::write`] puts in this folder, beside the configuration.
    CopyIn(&'a Path),
    /// At the `security.tls.master_cert` file itself (for a configuration printed
    /// rather than written).
    Original,
}

/// A section of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `[SERVICE]` / `service:`.
    Service,
    /// `[INPUT]` / `pipeline: inputs:`.
    Input,
    /// `[OUTPUT]` / `pipeline: outputs:`.
    Output,
}

/// One section: its kind and its `Key value` entries, in order. Keys are constants of
/// this module; only values come from the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    /// Which section.
    pub kind: Kind,
    /// The entries, keys as the classic format spells them.
    pub entries: Vec<(&'static str, Value)>,
}

/// A checked Fluent Bit configuration, ready to render.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Comment lines for the top of the file (no `#`).
    comments: Vec<String>,
    sections: Vec<Section>,
    ca_copy: Option<Vec<CertificateDer<'static>>>,
    verification: Option<Verification>,
    warnings: Vec<String>,
}

impl Pipeline {
    /// Builds the configuration for `config`. `presented` is the master's certificate as
    /// fetched over TLS ([`io::probe`]); in pinned mode the leaf in `master_cert`, if it
    /// holds one, is used when `presented` is `None`. CA mode trusts the host store this
    /// process's environment chooses, as det-agent's own CA mode does
    /// ([`HostStore::from_env`]).
    ///
    /// # Errors
    /// The name rule fails (see [`FluentError`]), or a value cannot be written safely.
    pub fn build(config: &Config, ca_file: CaFile<'_>, presented: Option<Evidence>) -> Result<Pipeline, FluentError> {
        Pipeline::build_with(config, ca_file, presented, &HostStore::from_env())
    }

    /// [`Pipeline::build`] with CA mode's host store given rather than read from the
    /// environment.
    ///
    /// # Errors
    /// As [`Pipeline::build`].
    pub fn build_with(
        config: &Config,
        ca_file: CaFile<'_>,
        presented: Option<Evidence>,
        store: &HostStore,
    ) -> Result<Pipeline, FluentError> {
        let (host, host_option) = match &config.container_master_host {
            Some(host) => (host, "container_master_host"),
            None => (&config.master_host, "master_host"),
        };
        let port = config.container_master_port.unwrap_or(config.master_port);
        let fluent = &config.fluent;

        let service = Section { kind: Kind::Service, entries: vec![("Flush", num(fluent.flush_secs.into()))] };
        let input = Section {
            kind: Kind::Input,
            entries: vec![
                ("Name", constant("forward")?),
                ("Listen", checked("fluent.listen", &fluent.listen.to_string())?),
                ("Port", num(fluent.port.into())),
            ],
        };
        let mut out = vec![
            ("Name", constant("http")?),
            ("Match", constant("*")?),
            ("Host", checked(host_option, &host.to_string())?),
            ("Port", num(port.into())),
            ("URI", constant("/task-logs")?),
            ("Format", constant("json")?),
            ("Json_date_key", constant("timestamp")?),
            ("Json_date_format", constant("iso8601")?),
            ("Header_tag", constant("X-Fluent-Tag")?),
        ];
        let mut comments = vec![
            format!("Written by det-agent {}; regenerate it instead of editing it.", env!("CARGO_PKG_VERSION")),
            "Ships task logs (forward input) to the master's /task-logs (http output).".to_owned(),
        ];
        let mut warnings = Vec::new();
        let mut ca_copy = None;
        let mut verification = None;

        match &config.tls {
            None => {
                comments.push("TLS is off: logs travel unencrypted and the master is not verified.".to_owned());
            }
            Some(tls) => {
                let evidence = presented.or_else(|| pinned_leaf(&tls.trust));
                let chosen = name::choose(host, host_option, tls, evidence.as_ref())?;
                out.push(("tls", constant("On")?));
                match &chosen {
                    Verification::Off { sni } => {
                        out.push(("tls.verify", constant("Off")?));
                        if let Some(sni) = sni {
                            out.push(("tls.vhost", checked("security.tls.master_cert_name", sni)?));
                        }
                        comments.push(
                            "skip_verify: logs are encrypted, but the master's identity is NOT verified.".to_owned(),
                        );
                    }
                    Verification::Name { name, checked: how } => {
                        out.push(("tls.verify", constant("On")?));
                        // Without it, Fluent Bit 3.1 and later never check the name.
                        out.push(("tls.verify_hostname", constant("On")?));
                        let option =
                            if tls.master_cert_name.is_some() { "security.tls.master_cert_name" } else { host_option };
                        out.push(("tls.vhost", checked(option, name)?));
                        comments.push(format!(
                            "Fluent Bit verifies the master as {name}: a DNS name, as Fluent Bit before 5.0.6 cannot verify an IP address."
                        ));
                        comments.push(match how {
                            Checked::InCertificate(source) => format!("{name} was found in {source}."),
                            Checked::FormOnly => format!(
                                "The master's certificate was not available to check that it carries {name}; `det-agent fluent-bit --probe` checks it."
                            ),
                        });
                    }
                }
                match &tls.trust {
                    Trust::Pinned(pinned) => {
                        let path = match (ca_file, &pinned.store_entry) {
                            (CaFile::CopyIn(dir), _) => dir.join(CA_FILE_NAME),
                            (CaFile::Original, None) => absolute(&pinned.path),
                            (CaFile::Original, Some(url)) => {
                                return Err(FluentError::StoredChainNeedsOut { url: url.clone() })
                            }
                        };
                        out.push(("tls.ca_file", checked_path("tls.ca_file", &path)?));
                        comments.push(match &pinned.store_entry {
                            None => "Trusted: only the certificates of security.tls.master_cert.".to_owned(),
                            Some(url) => {
                                format!("Trusted: the chain trusted on first use for {url} (det-agent trust).")
                            }
                        });
                        if pinned.store_entry.is_some() && pinned.certs.len() > 1 {
                            warnings.push(format!(
                                "det-agent trusts only the master certificate stored in {} (the leaf whose fingerprint was accepted); Fluent Bit can only be given CA certificates, so it trusts every certificate a CA of the stored chain issued. To hold Fluent Bit to the same certificate, pin the master's chain in security.tls.master_cert, or its key in security.tls.master_key_pins with CA mode.",
                                pinned.path.display()
                            ));
                        }
                        if !pinned.certs.iter().any(|c| CertSummary::parse(c).is_ok_and(|s| s.self_issued())) {
                            warnings.push(format!(
                                "security.tls.master_cert {} holds no self-signed root; Fluent Bit verifies with OpenSSL, which by default trusts a chain only when it ends at a self-signed certificate in tls.ca_file, so Fluent Bit will refuse the master. Put the chain up to its root in master_cert.",
                                pinned.path.display()
                            ));
                        }
                        if matches!(ca_file, CaFile::CopyIn(_)) {
                            ca_copy = Some(pinned.certs.clone());
                        }
                    }
                    Trust::PublicRoots => host_store_options(store, &mut out, &mut comments, &mut warnings)?,
                    Trust::SkipVerify => {}
                }
                if !tls.master_key_pins.is_empty() {
                    warnings.push(match tls.trust {
                        Trust::SkipVerify => "Fluent Bit cannot check security.tls.master_key_pins, so it sends task logs with tls.verify Off, to whoever answers, while det-agent itself checks the pins. For Fluent Bit to verify the master too, pin its certificate with security.tls.master_cert instead of skip_verify.".to_owned(),
                        _ => "Fluent Bit cannot check security.tls.master_key_pins; it verifies the master's chain and name as above, without the pins.".to_owned(),
                    });
                }
                if let Some(id) = &tls.client_identity {
                    out.push(("tls.crt_file", checked_path("security.tls.client_cert", &absolute(&id.cert_path))?));
                    out.push(("tls.key_file", checked_path("security.tls.client_key", &absolute(&id.key_path))?));
                }
                verification = Some(chosen);
            }
        }
        for warning in &warnings {
            comments.push(format!("WARNING: {warning}"));
        }
        // Comments quote file paths, which no option check has seen: keep each on its line.
        let comments = comments.iter().map(|c| one_line(c)).collect();
        let sections = vec![service, input, Section { kind: Kind::Output, entries: out }];
        Ok(Pipeline { comments, sections, ca_copy, verification, warnings })
    }

    /// The configuration text in `format`, checked by parsing it back.
    ///
    /// # Errors
    /// [`FluentError::SelfCheck`] if the text does not parse back to exactly this
    /// configuration; it cannot happen for values that passed [`Value::new`].
    pub fn render(&self, format: Format) -> Result<String, FluentError> {
        let (text, parsed) = match format {
            Format::Classic => {
                let text = classic::render(&self.comments, &self.sections);
                let parsed = classic::parse(&text).map_err(|detail| FluentError::SelfCheck { detail })?;
                (text, parsed)
            }
            Format::Yaml => {
                let text = yaml::render(&self.comments, &self.sections)?;
                let parsed = yaml::parse(&text).map_err(|detail| FluentError::SelfCheck { detail })?;
                (text, parsed)
            }
        };
        let expected = ParsedClassic::of(&self.sections);
        if parsed != expected {
            return Err(FluentError::SelfCheck {
                detail: format!(
                    "the {} output does not read back as the settings it was written from; this is a bug in det-agent, please report it with the configuration",
                    format.file_name()
                ),
            });
        }
        Ok(text)
    }

    /// The sections, in order.
    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    /// What Fluent Bit will verify; `None` when TLS is off.
    pub fn verification(&self) -> Option<&Verification> {
        self.verification.as_ref()
    }

    /// Problems that do not stop the configuration being written but will stop it
    /// working; also written into the configuration as comments.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The certificates [`io::write`] copies to [`CA_FILE_NAME`], in pinned mode.
    pub fn ca_copy(&self) -> Option<&[CertificateDer<'static>]> {
        self.ca_copy.as_deref()
    }
}

/// CA mode: the host store det-agent uses, given to Fluent Bit, whose OpenSSL ignores
/// `SSL_CERT_FILE` and `SSL_CERT_DIR` (see [`HostStore`]). Fluent Bit takes a CA file or
/// CA folders, not both (`tls.ca_path` wins), so with both variables set it gets the file
/// and a warning: it then trusts less than det-agent, never more.
fn host_store_options(
    store: &HostStore,
    out: &mut Vec<(&'static str, Value)>,
    comments: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(), FluentError> {
    use host_store::{CERT_DIR_VAR, CERT_FILE_VAR};
    let dirs = || -> Result<String, FluentError> {
        let mut joined = Vec::new();
        for dir in &store.dirs {
            joined.push(utf8(CERT_DIR_VAR, &absolute(dir))?.to_owned());
        }
        Ok(joined.join(":"))
    };
    match &store.file {
        None if store.dirs.is_empty() => comments
            .push("Trusted: the system's CA store, as Fluent Bit's OpenSSL reads it (/etc/ssl/certs/).".to_owned()),
        None => {
            let dirs = dirs()?;
            out.push(("tls.ca_path", checked(CERT_DIR_VAR, &dirs)?));
            comments.push(format!(
                "Trusted: the CA certificates in {dirs} ({CERT_DIR_VAR}, which det-agent reads in CA mode and Fluent Bit ignores)."
            ));
            comments.push(
                "Fluent Bit's OpenSSL finds a certificate in tls.ca_path only by its hashed name: run `openssl rehash` on the folder after changing it."
                    .to_owned(),
            );
        }
        Some(file) => {
            let file = absolute(file);
            out.push(("tls.ca_file", checked_path(CERT_FILE_VAR, &file)?));
            comments.push(format!(
                "Trusted: the CA certificates in {} ({CERT_FILE_VAR}, which det-agent reads in CA mode and Fluent Bit ignores).",
                file.display()
            ));
            if !store.dirs.is_empty() {
                warnings.push(format!(
                    "{CERT_FILE_VAR} and {CERT_DIR_VAR} are both set; Fluent Bit takes one CA file or CA folders, not both, so it is given {CERT_FILE_VAR} and will not trust the certificates in {CERT_DIR_VAR} ({}) that det-agent trusts. To give it all of them, put them in the one file.",
                    dirs()?
                ));
            }
        }
    }
    Ok(())
}

/// The master's own certificate from a pinned file: its first certificate that is not
/// a CA. A file holding only CA certificates has none, and the name is then checked for
/// form only (or against [`io::probe`]).
fn pinned_leaf(trust: &Trust) -> Option<Evidence> {
    let Trust::Pinned(pinned) = trust else { return None };
    pinned
        .certs
        .iter()
        .filter_map(|c| CertSummary::parse(c).ok())
        .find(|s| s.is_ca != Some(true))
        .map(|cert| Evidence { source: format!("the master certificate in {}", pinned.path.display()), cert })
}

fn constant(text: &'static str) -> Result<Value, FluentError> {
    checked("(built in)", text)
}

fn num(n: u64) -> Value {
    Value::number(n)
}

fn checked(option: &str, text: &str) -> Result<Value, FluentError> {
    Value::new(text).map_err(|reason| FluentError::Unsafe { option: option.to_owned(), value: text.to_owned(), reason })
}

fn checked_path(option: &str, path: &Path) -> Result<Value, FluentError> {
    checked(option, utf8(option, path)?)
}

fn utf8<'p>(option: &str, path: &'p Path) -> Result<&'p str, FluentError> {
    path.to_str().ok_or_else(|| FluentError::Unsafe {
        option: option.to_owned(),
        value: path.display().to_string(),
        reason: "it is not valid UTF-8",
    })
}

/// `text` with every control character and line break replaced by `?`.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') { '?' } else { c }).collect()
}

/// Fluent Bit may run from another working directory: write absolute paths.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

/// Why a Fluent Bit configuration cannot be written. Each message says what to change.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; fields name themselves.
#[non_exhaustive]
pub enum FluentError {
    /// Verification is on, the dialed host is an IP, and no `master_cert_name` is set.
    #[error("{option} is the IP address {ip}, and Fluent Bit cannot verify a master by IP address (before 5.0.6 it matches DNS names only, and older versions even send the IP as SNI); set security.tls.master_cert_name to a DNS name the master's certificate carries{}", known_names_hint(known_names))]
    IpWithoutName { option: &'static str, ip: IpAddr, known_names: Option<(String, Vec<String>)> },
    /// The master's certificate has no DNS subjectAltName at all.
    #[error("{} carries no DNS name ({}), and Fluent Bit can only verify a master by a DNS name; reissue the master's certificate with one in its subjectAltName, e.g. DNS:master.example.com (keep its IP entries for clients that verify by IP), and set security.tls.master_cert_name to it if agents dial an IP address. The certificate: {}", evidence.source, evidence.cert.names(), describe(&evidence.cert))]
    NoDnsName { evidence: Box<Evidence> },
    /// The chosen name is not among the certificate's DNS names.
    #[error("Fluent Bit would verify the master as {name}, but {} does not carry that name: it carries {}; set security.tls.master_cert_name to one of its DNS names, or reissue the certificate with DNS:{name}. The certificate: {}", evidence.source, evidence.cert.names(), describe(&evidence.cert))]
    NameNotInCertificate { name: String, evidence: Box<Evidence> },
    /// A value would break out of its line or be changed by Fluent Bit.
    #[error("cannot write {option} {} into a Fluent Bit configuration: {reason}; change it (Fluent Bit's classic format has no quoting or escaping)", crate::text::quoted(.value))]
    Unsafe { option: String, value: String, reason: &'static str },
    /// The chain was trusted on first use and exists only in the trust store.
    #[error("the master's chain was trusted on first use ({url}) and lives in the trust store, which Fluent Bit cannot read; use --out DIR so det-agent writes it beside the configuration as master-ca.pem")]
    StoredChainNeedsOut { url: String },
    /// `--probe` could not fetch a verified certificate from the master.
    #[error("--probe could not fetch the master's certificate: {explanation}")]
    Probe { explanation: String },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    /// The rendered text did not read back as the configuration (a bug in det-agent).
    #[error("the generated Fluent Bit configuration failed its own check, so it was not written (please report this): {detail}")]
    SelfCheck { detail: String },
}

fn known_names_hint(known: &Option<(String, Vec<String>)>) -> String {
    match known {
        Some((source, names)) if names.is_empty() => {
            format!("; but {source} carries no DNS name at all, so it must be reissued with one (e.g. DNS:master.example.com)")
        }
        Some((source, names)) => format!("; {source} carries: {}", names.join(", ")),
        None => {
            "; `det-agent fluent-bit --probe` (or `det-agent check`) shows the names the master's certificate carries"
                .to_owned()
        }
    }
}

fn describe(cert: &CertSummary) -> String {
    format!("subject {}, sha256 {}, valid {} to {}", cert.subject, cert.sha256, cert.not_before, cert.not_after)
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Service => "SERVICE",
            Kind::Input => "INPUT",
            Kind::Output => "OUTPUT",
        })
    }
}
