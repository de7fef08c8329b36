//! Errors a user can cause before any byte goes over the network: configuration, the
//! certificate and key files it names, and the trust store. A leaf: it depends on no
//! other module but `text` and `fsutil` (the StrictModes words), so every layer can use
//! these types.
//!
//! Every message names what was wrong (the option, where its value came from, the file),
//! what was found, and how to fix it. Causes are written into the message rather than
//! chained through `source()`, so a printed error never repeats itself.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::fsutil::{self, Access};

/// Where a configuration value came from, so an error can point at the right place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Built-in default.
    Default,
    /// The YAML configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(&'static str),
    /// Set by code using the library (the demo, tests).
    Api,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(p) => write!(f, "set in {}", p.display()),
            Origin::Env(name) => write!(f, "set by ${name}"),
            Origin::Flag(flag) => write!(f, "set by {flag}"),
            Origin::Api => f.write_str("set by the caller"),
        }
    }
}

/// A certificate or key file that could not be used.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; their fields (path, option, origin, …) name themselves.
#[non_exhaustive]
pub enum PemError {
    /// The file does not exist.
    #[error("{}: no such file; check the path (a relative path in agent.yaml is read from the folder agent.yaml is in)", path.display())]
    NotFound { path: PathBuf },
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}; check that the user det-agent runs as may read it", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    /// The file has no content.
    #[error("{}: the file is empty; copy the PEM text (\"-----BEGIN …\") into it", path.display())]
    Empty { path: PathBuf },
    /// A certificate was expected, but the file holds only a private key.
    #[error("{}: holds a private key but no certificate; point this option at the certificate file (BEGIN CERTIFICATE) instead", path.display())]
    OnlyKey { path: PathBuf },
    /// No `BEGIN CERTIFICATE` section.
    #[error("{}: holds no PEM certificate (no \"-----BEGIN CERTIFICATE-----\" section){}", path.display(), der_hint(*.looks_like_der, path))]
    NoCertificate { path: PathBuf, looks_like_der: bool },
    /// A private key was expected, but none was found.
    #[error("{}: holds no private key (expected \"-----BEGIN PRIVATE KEY-----\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\"){}", path.display(), if *.holds_certificate { "; it holds a certificate, which belongs in the matching *_cert option" } else { "" })]
    NoKey { path: PathBuf, holds_certificate: bool },
    /// The key is encrypted with a passphrase, which a daemon cannot type in.
    #[error("{}: the private key is encrypted; decrypt it once with `openssl pkey -in {} -out KEY.pem` and point the option at the result", path.display(), path.display())]
    EncryptedKey { path: PathBuf },
    /// The file is larger than any certificate chain or key, and is not read further.
    #[error("{}: the file is over {} ({limit} bytes), far more than a certificate chain or a private key (a few KiB); check that the option names the right file", path.display(), crate::text::bytes(*.limit))]
    TooLarge { path: PathBuf, limit: u64 },
    /// PEM framing or base64 is broken.
    #[error("{}: malformed PEM: {detail}; copy the PEM text again, from its -----BEGIN line to its -----END line", path.display())]
    Malformed { path: PathBuf, detail: String },
    /// A section decoded, but it is not an X.509 certificate.
    #[error("{}: certificate #{index} is not a valid X.509 certificate: {detail}; copy the certificate again", path.display())]
    BadCertificate { path: PathBuf, index: usize, detail: String },
}

fn der_hint(looks_like_der: bool, path: &std::path::Path) -> String {
    if looks_like_der {
        format!(
            "; it looks like binary DER, convert it with `openssl x509 -inform der -in {} -out master.pem`",
            path.display()
        )
    } else {
        String::new()
    }
}

/// A configuration that cannot be used. Detected before any network activity.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; their fields (path, option, origin, …) name themselves.
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The configuration file is larger than det-agent reads.
    #[error("{}: the file is over {} ({limit} bytes), the most det-agent reads of a configuration file (a complete agent.yaml is a few KiB); check that --config names the right file", path.display(), crate::text::bytes(*.limit))]
    TooLarge { path: PathBuf, limit: u64 },
    /// The configuration file holds more `[` and `{` than det-agent parses: each may open
    /// a nested YAML flow collection, and the YAML scanner slows down with every level
    /// open at once (a file nested 100,000 deep took over 20 s).
    #[error("{}: line {line}, column {column} holds the {}th '[' or '{{' of the file, over the limit of {limit}: each can open a nested YAML flow collection, and parsing slows down with every level nested. agent.yaml needs a few at most (master_key_pins: [a, b]); remove the extra brackets, or write lists as \"- item\" lines", path.display(), limit + 1)]
    TooNested { path: PathBuf, line: usize, column: usize, limit: usize },
    /// The YAML does not match the schema (an unknown key, a wrong type). The parser's
    /// message names the key and its line.
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    /// A value does not have the form the option needs.
    #[error("{option} ({origin}): {} is not valid: {expected}", crate::text::quoted(value))]
    Invalid { option: &'static str, origin: Origin, value: String, expected: String },
    /// An option is set, but to nothing: an empty flag, a blank environment variable, a
    /// YAML null or blank string in the file, a key pin list without a pin. Never read as
    /// "not set": for a security option that could silently weaken how the master is
    /// trusted (a templated `master_cert: ${CERT}` with CERT unset would mean CA mode).
    #[error("{option} ({origin}) {found}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {expected}, or {}", unset_hint(option, origin))]
    Blank { option: &'static str, origin: Origin, found: String, expected: &'static str },
    /// A required option is missing.
    #[error("{option} is not set; set it in agent.yaml, with {flag} or with ${env}")]
    Missing { option: &'static str, flag: &'static str, env: &'static str },
    /// Two options contradict each other.
    #[error("{first} ({first_origin}) and {second} ({second_origin}) cannot be used together: {fix}")]
    Conflict {
        first: &'static str,
        first_origin: Origin,
        second: &'static str,
        second_origin: Origin,
        fix: &'static str,
    },
    /// Half of a pair is set.
    #[error("{present} is set ({origin}) but {missing} is not; a client certificate needs both its certificate and its private key, so set {missing} or remove {present}")]
    HalfPair { present: &'static str, origin: Origin, missing: &'static str },
    /// TLS options are set while TLS is off, which would silently do nothing.
    #[error("security.tls.enabled is false ({origin}) but {} {} set; these take effect only with TLS, so set security.tls.enabled: true or remove {}", list(options), if options.len() == 1 { "is" } else { "are" }, if options.len() == 1 { "it" } else { "them" })]
    TlsOptionsWithoutTls { origin: Origin, options: Vec<String> },
    /// A certificate or key file named by an option cannot be used.
    #[error("{option} ({origin}): {error}")]
    File { option: &'static str, origin: Origin, error: PemError },
    /// The trust store (`det-agent trust`) cannot be read.
    #[error("{0}")]
    TrustStore(StoreError),
    /// The client key does not belong to the client certificate.
    #[error("security.tls.client_key {} does not match the public key of security.tls.client_cert {} ({detail}); use the key that was generated with this certificate", key.display(), cert.display())]
    ClientKeyMismatch { cert: PathBuf, key: PathBuf, detail: String },
}

/// How to leave `option` unset, for the source that set it.
fn unset_hint(option: &str, origin: &Origin) -> String {
    match origin {
        Origin::File(path) => {
            let key = option.rsplit('.').next().unwrap_or(option);
            format!("delete the {key} key from {} to leave it unset", path.display())
        }
        // An empty variable reads as unset except for the security options (see
        // config::resolve), so only the others may be unset that way.
        Origin::Env(name) if option.starts_with("security.") => format!("unset ${name} to leave it unset"),
        Origin::Env(name) => format!("unset ${name} to leave it unset (an empty variable counts as unset)"),
        Origin::Flag(flag) => format!("drop {flag} to leave it unset"),
        Origin::Default | Origin::Api => "leave it unset".to_owned(),
    }
}

fn list(items: &[String]) -> String {
    items.join(", ")
}

/// A store that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; fields name themselves.
#[non_exhaustive]
pub enum StoreError {
    /// Neither XDG_CONFIG_HOME nor HOME is set.
    #[error("cannot find the trust store: neither XDG_CONFIG_HOME nor HOME is set")]
    NoLocation,
    /// The file or its folder cannot be read or written.
    #[error("trust store {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The file is not a JSON object mapping URLs to PEM strings.
    #[error("trust store {} is corrupt ({detail}); it must be a JSON object mapping master URLs to PEM certificates. det-agent neither trusts nor rewrites it: repair it, or move it aside and trust the master again", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// The file, its folder or the lock file can be changed by a user other than this
    /// one (and root): writable by its group or by everyone, or owned by someone else.
    #[error("{} {} {} (mode {mode:04o}, owner uid {owner}); another user could change which masters det-agent trusts, so det-agent neither reads nor writes the store until this is fixed: {}, then check the stored masters with `det-agent trust --list`", what, path.display(), unsafe_problem(*.mode, *.owner, *.me), unsafe_fix(path, what, *.mode, *.owner, *.me))]
    Unsafe { path: PathBuf, what: &'static str, mode: u32, owner: u32, me: u32 },
    /// The file is larger than det-agent reads.
    #[error("trust store {} is over 16 MiB ({limit} bytes), more than thousands of stored chains would take; det-agent neither trusts nor rewrites it: check what wrote it, then repair it, or move it aside and trust the masters again", path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// An entry's PEM holds no usable certificate.
    #[error("trust store {}, entry {url:?}: {detail}; forget it with `det-agent trust --forget {url}` and trust the master again", path.display())]
    BadEntry { path: PathBuf, url: String, detail: String },
}

fn unsafe_problem(mode: u32, owner: u32, me: u32) -> String {
    Access { mode, owner, me }.problems()
}

fn unsafe_fix(path: &Path, what: &str, mode: u32, owner: u32, me: u32) -> String {
    let access = Access { mode, owner, me };
    let noun = if what.ends_with("folder") { "folder" } else { "file" };
    let chown_to = (!access.owned_well()).then(|| me.to_string());
    fsutil::fix_command(path, noun, access.writable_by_others(), chown_to.as_deref())
}
