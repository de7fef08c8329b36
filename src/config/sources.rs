//! Raw configuration as the operator typed it (YAML file, environment variables, flags),
//! and the one function that layers and checks it: flag > environment > file > default.
//!
//! Environment variables are read through a function the caller passes in, so tests can
//! supply their own without touching the process environment.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::DnsName;
use serde::Deserialize;

use super::FluentFormat as Format;
use super::{
    ClientIdentity, Config, FluentConfig, Host, PinnedCerts, TlsConfig, Trust, DEFAULT_PLAIN_PORT, DEFAULT_TLS_PORT,
};
use crate::error::{ConfigError, Origin};
use crate::pem;
use crate::x509::KeyPin;

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/determined/agent.yaml";

/// The largest configuration file read: 1 MiB, two hundred times a complete agent.yaml
/// (agent.yaml.example is under 5 KiB), small enough that even a hostile file is
/// parsed in a fraction of a second (with at most [`MAX_FLOW_BRACKETS`] brackets).
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// The most `[` and `{` a configuration file may hold. Each can open a YAML flow
/// collection, and libyaml's scanner (under serde_norway) walks one entry per open level
/// for every token: a file nested 100,000 deep took over 20 s, before serde_norway's own
/// depth limit (128), which applies only once the whole file is scanned. Which brackets
/// open a level depends on quoting rules only a full YAML scanner knows, so every one is
/// counted, in comments and strings too: a bound the nesting can never exceed. 64 leaves
/// room for any real file (the schema nests 4 deep, and needs a bracket pair only for an
/// inline list) and keeps a 1 MiB file nested 64 deep under 0.2 s.
pub const MAX_FLOW_BRACKETS: usize = 64;

/// Longest reconnect backoff accepted, so a typo cannot park an agent for a year.
const MAX_BACKOFF_SECS: f64 = 3600.0;

/// `agent.yaml`, as written. Unknown keys are rejected by the parser, which names them
/// with their line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "agent.yaml's settings, as `key: value` lines")]
struct FileConfig {
    master_host: Option<String>,
    master_port: Option<u16>,
    agent_id: Option<String>,
    resource_pool: Option<String>,
    container_master_host: Option<String>,
    container_master_port: Option<u16>,
    agent_reconnect_attempts: Option<u32>,
    agent_reconnect_backoff: Option<f64>,
    agent_reconnect_backoff_max: Option<f64>,
    max_message_size: Option<u64>,
    security: Option<FileSecurity>,
    fluent: Option<FileFluent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the fluent settings (config_dir, format, listen, port, flush)")]
struct FileFluent {
    config_dir: Option<PathBuf>,
    format: Option<String>,
    listen: Option<String>,
    port: Option<u16>,
    flush: Option<u32>,
    /// Determined's agent ran Fluent Bit in a container; det-agent writes a
    /// configuration instead. Accepted so a Determined agent.yaml loads, and unused.
    #[allow(dead_code)]
    image: Option<String>,
    /// As `image`: accepted for Determined's agent.yaml, unused.
    #[allow(dead_code)]
    container_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the security settings (tls:)")]
struct FileSecurity {
    tls: Option<FileTls>,
}

/// The trust settings. Each key is a [`Field`], so a key written without a value is told
/// apart from an absent one.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "the security.tls settings (enabled, master_cert, …)")]
struct FileTls {
    enabled: Field<bool>,
    skip_verify: Field<bool>,
    master_cert: Field<PathBuf>,
    master_cert_name: Field<String>,
    master_key_pins: Field<Vec<String>>,
    client_cert: Field<PathBuf>,
    client_key: Field<PathBuf>,
}

/// A `security.tls` key as written: absent, present without a value (YAML null:
/// nothing after the colon, `~` or `null`, which is what a template leaves when its
/// variable is empty), or a value. Absent means "not set"; a null is an error, because
/// reading `master_cert: ${CERT}` with CERT unset as "not set" would mean CA mode, and
/// `enabled: ${TLS}` plain TCP.
#[derive(Debug, Default)]
enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Field::Null, Field::Value))
    }
}

/// What a key written without a value is, in the words of a [`ConfigError::Blank`].
const NULL_FOUND: &str =
    "has no value (YAML null: nothing after the colon, `~` or `null`, as a template leaves it when its variable is empty)";

/// Every configuration option as a flag. Each also reads the environment variable named
/// in its help; flags win over the environment, which wins over the file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ConfigArgs {
    /// Agent configuration file [default: /etc/determined/agent.yaml when it exists]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Master host name or IP address to dial [env: DET_MASTER_HOST]
    #[arg(long, value_name = "HOST")]
    pub master_host: Option<String>,
    /// Master port [default: 8443 with TLS, 8080 without] [env: DET_MASTER_PORT]
    #[arg(long, value_name = "PORT")]
    pub master_port: Option<String>,
    /// Agent ID [default: the hostname] [env: DET_AGENT_ID]
    #[arg(long, value_name = "ID")]
    pub agent_id: Option<String>,
    /// Resource pool to join [default: default] [env: DET_RESOURCE_POOL]
    #[arg(long, value_name = "POOL")]
    pub resource_pool: Option<String>,
    /// Master host as seen from task containers [env: DET_CONTAINER_MASTER_HOST]
    #[arg(long, value_name = "HOST")]
    pub container_master_host: Option<String>,
    /// Master port as seen from task containers [env: DET_CONTAINER_MASTER_PORT]
    #[arg(long, value_name = "PORT")]
    pub container_master_port: Option<String>,
    /// Consecutive failed reconnects before exiting; 0 = keep trying [default: 0] [env: DET_AGENT_RECONNECT_ATTEMPTS]
    #[arg(long, value_name = "N")]
    pub agent_reconnect_attempts: Option<String>,
    /// Base reconnect delay in seconds [default: 5] [env: DET_AGENT_RECONNECT_BACKOFF]
    #[arg(long, value_name = "SECONDS")]
    pub agent_reconnect_backoff: Option<String>,
    /// Longest reconnect delay in seconds (the backoff's cap) [default: 60] [env: DET_AGENT_RECONNECT_BACKOFF_MAX]
    #[arg(long, value_name = "SECONDS")]
    pub agent_reconnect_backoff_max: Option<String>,
    /// Largest message accepted from the master, in bytes [default: 134217728 (128 MiB)] [env: DET_MAX_MESSAGE_SIZE]
    #[arg(long, value_name = "BYTES")]
    pub max_message_size: Option<String>,
    /// Use TLS to reach the master [default: false] [env: DET_SECURITY_TLS_ENABLED]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub security_tls_enabled: Option<String>,
    /// Encrypt but do not verify the master's identity [default: false] [env: DET_SECURITY_TLS_SKIP_VERIFY]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub security_tls_skip_verify: Option<String>,
    /// File with the master's certificate or its chain: the only trust anchors [env: DET_SECURITY_TLS_MASTER_CERT]
    #[arg(long, value_name = "FILE")]
    pub security_tls_master_cert: Option<String>,
    /// DNS name to verify (and send as SNI) instead of the dialed host [env: DET_SECURITY_TLS_MASTER_CERT_NAME]
    #[arg(long, value_name = "NAME")]
    pub security_tls_master_cert_name: Option<String>,
    /// Pins of the master's public key, comma-separated: sha256:HEX or sha256:BASE64; any one may match [env: DET_SECURITY_TLS_MASTER_KEY_PINS]
    #[arg(long, value_name = "PINS")]
    pub security_tls_master_key_pins: Option<String>,
    /// Client certificate for mutual TLS [env: DET_SECURITY_TLS_CLIENT_CERT]
    #[arg(long, value_name = "FILE")]
    pub security_tls_client_cert: Option<String>,
    /// Private key of the client certificate [env: DET_SECURITY_TLS_CLIENT_KEY]
    #[arg(long, value_name = "FILE")]
    pub security_tls_client_key: Option<String>,
    /// Folder where `run` keeps a Fluent Bit configuration that follows these trust settings [env: DET_FLUENT_CONFIG_DIR]
    #[arg(long, value_name = "DIR")]
    pub fluent_config_dir: Option<String>,
    /// Format of that configuration: classic or yaml [default: classic] [env: DET_FLUENT_FORMAT]
    #[arg(long, value_name = "FORMAT")]
    pub fluent_format: Option<String>,
    /// Address of Fluent Bit's forward input for task logs [default: 127.0.0.1] [env: DET_FLUENT_LISTEN]
    #[arg(long, value_name = "IP")]
    pub fluent_listen: Option<String>,
    /// Port of Fluent Bit's forward input [default: 24224] [env: DET_FLUENT_PORT]
    #[arg(long, value_name = "PORT")]
    pub fluent_port: Option<String>,
    /// Seconds between Fluent Bit's flushes to the master [default: 1] [env: DET_FLUENT_FLUSH]
    #[arg(long, value_name = "SECONDS")]
    pub fluent_flush: Option<String>,
}

/// One option's three names, and what its value is, for the message when it is blank.
struct Opt {
    key: &'static str,
    flag: &'static str,
    env: &'static str,
    value: &'static str,
}

macro_rules! opt {
    ($name:ident, $key:literal, $flag:literal, $env:literal, $value:literal) => {
        const $name: Opt = Opt { key: $key, flag: $flag, env: $env, value: $value };
    };
}
opt!(MASTER_HOST, "master_host", "--master-host", "DET_MASTER_HOST", "the master's DNS name or IP address");
opt!(MASTER_PORT, "master_port", "--master-port", "DET_MASTER_PORT", "a TCP port from 1 to 65535");
opt!(AGENT_ID, "agent_id", "--agent-id", "DET_AGENT_ID", "this agent's name");
opt!(RESOURCE_POOL, "resource_pool", "--resource-pool", "DET_RESOURCE_POOL", "a resource pool's name");
opt!(
    CONTAINER_HOST,
    "container_master_host",
    "--container-master-host",
    "DET_CONTAINER_MASTER_HOST",
    "the master's DNS name or IP address as task containers reach it"
);
opt!(
    CONTAINER_PORT,
    "container_master_port",
    "--container-master-port",
    "DET_CONTAINER_MASTER_PORT",
    "a TCP port from 1 to 65535"
);
opt!(
    ATTEMPTS,
    "agent_reconnect_attempts",
    "--agent-reconnect-attempts",
    "DET_AGENT_RECONNECT_ATTEMPTS",
    "a whole number of attempts (0 = keep trying)"
);
opt!(
    BACKOFF,
    "agent_reconnect_backoff",
    "--agent-reconnect-backoff",
    "DET_AGENT_RECONNECT_BACKOFF",
    "a number of seconds from 0 to 3600"
);
opt!(
    BACKOFF_MAX,
    "agent_reconnect_backoff_max",
    "--agent-reconnect-backoff-max",
    "DET_AGENT_RECONNECT_BACKOFF_MAX",
    "a number of seconds from 0 to 3600"
);
opt!(
    MAX_MESSAGE,
    "max_message_size",
    "--max-message-size",
    "DET_MAX_MESSAGE_SIZE",
    "a number of bytes from 4096 to 1073741824"
);
opt!(TLS_ENABLED, "security.tls.enabled", "--security-tls-enabled", "DET_SECURITY_TLS_ENABLED", "true or false");
opt!(
    SKIP_VERIFY,
    "security.tls.skip_verify",
    "--security-tls-skip-verify",
    "DET_SECURITY_TLS_SKIP_VERIFY",
    "true or false"
);
opt!(
    MASTER_CERT,
    "security.tls.master_cert",
    "--security-tls-master-cert",
    "DET_SECURITY_TLS_MASTER_CERT",
    "the path of a PEM file holding the master's certificate or its chain"
);
opt!(
    CERT_NAME,
    "security.tls.master_cert_name",
    "--security-tls-master-cert-name",
    "DET_SECURITY_TLS_MASTER_CERT_NAME",
    "a DNS name the master's certificate carries"
);
opt!(
    KEY_PINS,
    "security.tls.master_key_pins",
    "--security-tls-master-key-pins",
    "DET_SECURITY_TLS_MASTER_KEY_PINS",
    "one or more key pins (sha256:..., as the key pin lines of `det-agent check`)"
);
opt!(
    CLIENT_CERT,
    "security.tls.client_cert",
    "--security-tls-client-cert",
    "DET_SECURITY_TLS_CLIENT_CERT",
    "the path of the client certificate's PEM file"
);
opt!(
    CLIENT_KEY,
    "security.tls.client_key",
    "--security-tls-client-key",
    "DET_SECURITY_TLS_CLIENT_KEY",
    "the path of the client certificate's private key"
);
opt!(FLUENT_DIR, "fluent.config_dir", "--fluent-config-dir", "DET_FLUENT_CONFIG_DIR", "a folder's path");
opt!(FLUENT_FORMAT, "fluent.format", "--fluent-format", "DET_FLUENT_FORMAT", "classic or yaml");
opt!(FLUENT_LISTEN, "fluent.listen", "--fluent-listen", "DET_FLUENT_LISTEN", "an IP address such as 127.0.0.1");
opt!(FLUENT_PORT, "fluent.port", "--fluent-port", "DET_FLUENT_PORT", "a TCP port from 1 to 65535");
opt!(FLUENT_FLUSH, "fluent.flush", "--fluent-flush", "DET_FLUENT_FLUSH", "a whole number of seconds from 1 to 3600");

/// A value and where it came from.
struct Setting<T> {
    value: T,
    origin: Origin,
}

impl ConfigArgs {
    /// Loads the configuration file (the `--config` one, else the default path when it
    /// exists), layers environment and flags over it, and checks the result.
    ///
    /// `env` looks up an environment variable; pass `|k| std::env::var(k).ok()` in a
    /// program. Empty variables count as unset.
    ///
    /// # Errors
    /// Any [`ConfigError`]: the file is unreadable or malformed, a value has the wrong
    /// form, options contradict each other, or a certificate or key file cannot be used.
    pub fn load(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let path = match &self.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        let file = match &path {
            Some(path) => parse_file(&read_file(path)?, path)?,
            None => FileConfig::default(),
        };
        Resolver { args: self, env, file_path: path.as_deref() }.resolve(file)
    }
}

/// The configuration file's text: at most [`MAX_CONFIG_SIZE`] bytes of UTF-8.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let bytes = crate::fsutil::read_limited(file, MAX_CONFIG_SIZE)
        .map_err(read_error)?
        .ok_or_else(|| ConfigError::TooLarge { path: path.to_owned(), limit: MAX_CONFIG_SIZE })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        ConfigError::Parse {
            path: path.to_owned(),
            message: format!(
                "not UTF-8 text (byte {at} starts an invalid sequence); agent.yaml must be UTF-8 YAML, so check that this is the right file, or convert it with iconv"
            ),
        }
    })
}

fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    if text.len() as u64 > MAX_CONFIG_SIZE {
        return Err(ConfigError::TooLarge { path: path.to_owned(), limit: MAX_CONFIG_SIZE });
    }
    check_flow_brackets(text, path)?;
    // An empty file, or one holding only comments, is an empty configuration.
    let parsed: Option<FileConfig> = serde_norway::from_str(text)
        .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
    Ok(parsed.unwrap_or_default())
}

/// Refuses a file with more than [`MAX_FLOW_BRACKETS`] `[` and `{`, naming where the
/// first one over the limit is.
fn check_flow_brackets(text: &str, path: &Path) -> Result<(), ConfigError> {
    let Some((offset, _)) = text.match_indices(['[', '{']).nth(MAX_FLOW_BRACKETS) else { return Ok(()) };
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Err(ConfigError::TooNested {
        path: path.to_owned(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        limit: MAX_FLOW_BRACKETS,
    })
}

struct Resolver<'a> {
    args: &'a ConfigArgs,
    env: &'a dyn Fn(&str) -> Option<String>,
    file_path: Option<&'a Path>,
}

impl Resolver<'_> {
    /// The text of one option from a flag, else from the environment, and where it came
    /// from. An environment variable that is exactly empty counts as unset (that is how
    /// shells and systemd unset one); a blank flag or a whitespace-only variable is an
    /// error.
    fn flag_or_env(&self, opt: &Opt, flag: &Option<String>) -> Result<Option<(String, Origin)>, ConfigError> {
        let text = match (flag, (self.env)(opt.env).filter(|v| !v.is_empty())) {
            (Some(v), _) => Some((v.clone(), Origin::Flag(opt.flag))),
            (None, Some(v)) => Some((v, Origin::Env(opt.env))),
            (None, None) => None,
        };
        match text {
            Some((value, origin)) if value.trim().is_empty() => Err(blank(opt, origin, &value)),
            text => Ok(text),
        }
    }

    /// Picks the highest-precedence value of one option and parses it.
    fn pick<T>(
        &self,
        opt: &Opt,
        flag: &Option<String>,
        file: Option<T>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Setting<T>>, ConfigError> {
        match self.flag_or_env(opt, flag)? {
            Some((value, origin)) => match parse(&value) {
                Ok(v) => Ok(Some(Setting { value: v, origin })),
                Err(expected) => Err(ConfigError::Invalid { option: opt.key, origin, value, expected }),
            },
            None => Ok(file.map(|value| Setting { value, origin: self.file_origin() })),
        }
    }

    /// Like [`pick`](Self::pick), for options whose file value must pass the same parser
    /// as a flag or the environment: YAML has checked its type, but not what the type
    /// cannot say (port 0, an empty agent ID, a host that is a URL).
    fn pick_parsed<T>(
        &self,
        opt: &Opt,
        flag: &Option<String>,
        file: Option<impl ToString>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Setting<T>>, ConfigError> {
        let file = file
            .map(|v| {
                let text = v.to_string();
                if text.trim().is_empty() {
                    return Err(blank(opt, self.file_origin(), &text));
                }
                parse(&text).map_err(|expected| ConfigError::Invalid {
                    option: opt.key,
                    origin: self.file_origin(),
                    value: text,
                    expected,
                })
            })
            .transpose()?;
        self.pick(opt, flag, file, parse)
    }

    fn file_origin(&self) -> Origin {
        Origin::File(self.file_path.map(Path::to_owned).unwrap_or_default())
    }

    /// A path from the file is relative to the file's folder; one from a flag or the
    /// environment is relative to the working directory.
    fn file_relative(&self, path: PathBuf) -> PathBuf {
        match self.file_path.and_then(Path::parent) {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// A `security.tls` key from the file: absent is "not set", a key without a value an
    /// error.
    fn tls_key<T>(&self, opt: &Opt, field: Field<T>) -> Result<Option<T>, ConfigError> {
        match field {
            Field::Absent => Ok(None),
            Field::Null => Err(ConfigError::Blank {
                option: opt.key,
                origin: self.file_origin(),
                found: NULL_FOUND.to_owned(),
                expected: opt.value,
            }),
            Field::Value(value) => Ok(Some(value)),
        }
    }

    /// A path from the file: a blank one is an error (`""` would otherwise name the
    /// file's own folder), a relative one follows the file.
    fn file_path_value(&self, opt: &Opt, path: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
        match path {
            Some(path) if path.to_string_lossy().trim().is_empty() => {
                Err(blank(opt, self.file_origin(), &path.to_string_lossy()))
            }
            path => Ok(path.map(|p| self.file_relative(p))),
        }
    }

    /// Text from the file; a blank one is an error.
    fn file_text(&self, opt: &Opt, text: Option<String>) -> Result<Option<String>, ConfigError> {
        match text {
            Some(text) if text.trim().is_empty() => Err(blank(opt, self.file_origin(), &text)),
            text => Ok(text),
        }
    }

    fn resolve(&self, file: FileConfig) -> Result<Config, ConfigError> {
        let a = self.args;
        let ftls = file.security.and_then(|s| s.tls).unwrap_or_default();

        let master_host = self
            .pick_parsed(&MASTER_HOST, &a.master_host, file.master_host, |s| Host::parse(s).map_err(|e| e.to_string()))?
            .ok_or(ConfigError::Missing { option: MASTER_HOST.key, flag: MASTER_HOST.flag, env: MASTER_HOST.env })?;
        let master_port = self.pick_parsed(&MASTER_PORT, &a.master_port, file.master_port, parse_port)?;
        let agent_id = self.pick_parsed(&AGENT_ID, &a.agent_id, file.agent_id, parse_label)?;
        let resource_pool = self.pick_parsed(&RESOURCE_POOL, &a.resource_pool, file.resource_pool, parse_label)?;
        let container_master_host =
            self.pick_parsed(&CONTAINER_HOST, &a.container_master_host, file.container_master_host, |s| {
                Host::parse(s).map_err(|e| e.to_string())
            })?;
        let container_master_port =
            self.pick_parsed(&CONTAINER_PORT, &a.container_master_port, file.container_master_port, parse_port)?;
        let attempts = self.pick(&ATTEMPTS, &a.agent_reconnect_attempts, file.agent_reconnect_attempts, |s| {
            s.parse::<u32>().map_err(|_| "expected a whole number of attempts (0 = keep trying)".to_owned())
        })?;
        let backoff = self.pick(&BACKOFF, &a.agent_reconnect_backoff, file.agent_reconnect_backoff, |s| {
            s.parse::<f64>().map_err(|_| "expected a number of seconds".to_owned())
        })?;
        let backoff = match backoff {
            Some(s) => check_backoff(&BACKOFF, s)?,
            None => Duration::from_secs(5),
        };
        let backoff_max =
            self.pick(&BACKOFF_MAX, &a.agent_reconnect_backoff_max, file.agent_reconnect_backoff_max, |s| {
                s.parse::<f64>().map_err(|_| "expected a number of seconds".to_owned())
            })?;
        let backoff_max = match backoff_max {
            Some(s) => {
                let origin = s.origin.clone();
                let max = check_backoff(&BACKOFF_MAX, s)?;
                if max < backoff {
                    return Err(ConfigError::Invalid {
                        option: BACKOFF_MAX.key,
                        origin,
                        value: max.as_secs_f64().to_string(),
                        expected: format!(
                            "expected at least agent_reconnect_backoff ({} s): the cap cannot be below the base",
                            backoff.as_secs_f64()
                        ),
                    });
                }
                max
            }
            None => crate::backoff::DEFAULT_CAP.max(backoff),
        };
        let max_message_size =
            self.pick_parsed(&MAX_MESSAGE, &a.max_message_size, file.max_message_size, parse_message_size)?;

        // Every file value is checked, even one a flag or variable overrides: a key
        // without a value is a broken file either way.
        let file_enabled = self.tls_key(&TLS_ENABLED, ftls.enabled)?;
        let enabled = self.pick(&TLS_ENABLED, &a.security_tls_enabled, file_enabled, parse_bool)?;
        let file_skip = self.tls_key(&SKIP_VERIFY, ftls.skip_verify)?;
        let skip_verify = self.pick(&SKIP_VERIFY, &a.security_tls_skip_verify, file_skip, parse_bool)?;
        let file_cert = self.file_path_value(&MASTER_CERT, self.tls_key(&MASTER_CERT, ftls.master_cert)?)?;
        let master_cert = self.pick(&MASTER_CERT, &a.security_tls_master_cert, file_cert, parse_path)?;
        let file_name = self.file_text(&CERT_NAME, self.tls_key(&CERT_NAME, ftls.master_cert_name)?)?;
        let cert_name = self.pick(&CERT_NAME, &a.security_tls_master_cert_name, file_name, |s| Ok(s.to_owned()))?;
        let file_pins = match self.tls_key(&KEY_PINS, ftls.master_key_pins)? {
            Some(list) => Some(pin_list(&list, None, self.file_origin())?),
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
        let client_cert = self.pick(&CLIENT_CERT, &a.security_tls_client_cert, file_client_cert, parse_path)?;
        let file_client_key = self.file_path_value(&CLIENT_KEY, self.tls_key(&CLIENT_KEY, ftls.client_key)?)?;
        let client_key = self.pick(&CLIENT_KEY, &a.security_tls_client_key, file_client_key, parse_path)?;

        let fluent = self.fluent(file.fluent.unwrap_or_default())?;

        let tls_on = enabled.as_ref().is_some_and(|s| s.value);
        let tls = if tls_on {
            let mut tls = tls_config(skip_verify, master_cert, cert_name, client_cert, client_key)?;
            tls.master_key_pins = key_pins.map(|s| s.value).unwrap_or_default();
            if matches!(tls.trust, Trust::PublicRoots) {
                let port = master_port.as_ref().map_or(DEFAULT_TLS_PORT, |s| s.value);
                if let Some(stored) = self.stored_chain(&master_host.value, port)? {
                    tls.trust = Trust::Pinned(stored);
                }
            }
            Some(tls)
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
            None
        };

        let default_port = if tls.is_some() { DEFAULT_TLS_PORT } else { DEFAULT_PLAIN_PORT };
        Ok(Config {
            master_host: master_host.value,
            master_port: master_port.map_or(default_port, |s| s.value),
            agent_id: agent_id.map_or_else(default_agent_id, |s| s.value),
            resource_pool: resource_pool.map_or_else(|| "default".to_owned(), |s| s.value),
            container_master_host: container_master_host.map(|s| s.value),
            container_master_port: container_master_port.map(|s| s.value),
            agent_reconnect_attempts: attempts.map_or(0, |s| s.value),
            agent_reconnect_backoff: backoff,
            agent_reconnect_backoff_max: backoff_max,
            max_message_size: max_message_size.map_or(super::DEFAULT_MAX_MESSAGE_SIZE, |s| s.value),
            tls,
            fluent,
        })
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

    fn fluent(&self, file: FileFluent) -> Result<FluentConfig, ConfigError> {
        let a = self.args;
        let defaults = FluentConfig::default();
        let file_dir = self.file_path_value(&FLUENT_DIR, file.config_dir)?;
        let config_dir = self.pick(&FLUENT_DIR, &a.fluent_config_dir, file_dir, parse_path)?;
        let format = self.pick_parsed(&FLUENT_FORMAT, &a.fluent_format, file.format, |s| s.parse::<Format>())?;
        let listen = self.pick_parsed(&FLUENT_LISTEN, &a.fluent_listen, file.listen, |s| {
            s.parse::<IpAddr>().map_err(|_| "expected an IP address such as 127.0.0.1 or 0.0.0.0".to_owned())
        })?;
        let port = self.pick_parsed(&FLUENT_PORT, &a.fluent_port, file.port, parse_port)?;
        let flush = self.pick_parsed(&FLUENT_FLUSH, &a.fluent_flush, file.flush, |s| match s.parse::<u32>() {
            Ok(n) if (1..=3600).contains(&n) => Ok(n),
            _ => Err("expected a whole number of seconds from 1 to 3600".to_owned()),
        })?;
        Ok(FluentConfig {
            config_dir: config_dir.map(|s| s.value),
            format: format.map_or(defaults.format, |s| s.value),
            listen: listen.map_or(defaults.listen, |s| s.value),
            port: port.map_or(defaults.port, |s| s.value),
            flush_secs: flush.map_or(defaults.flush_secs, |s| s.value),
        })
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

fn check_backoff(opt: &Opt, s: Setting<f64>) -> Result<Duration, ConfigError> {
    if s.value.is_finite() && (0.0..=MAX_BACKOFF_SECS).contains(&s.value) {
        Ok(Duration::from_secs_f64(s.value))
    } else {
        Err(ConfigError::Invalid {
            option: opt.key,
            origin: s.origin,
            value: s.value.to_string(),
            expected: format!("expected a number of seconds from 0 to {MAX_BACKOFF_SECS}"),
        })
    }
}

/// 4 KiB to 1 GiB: below, the master's own messages do not fit; above, one hostile
/// message could take a node's memory.
fn parse_message_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (4 << 10..=1 << 30).contains(&n) => Ok(n),
        _ => Err("expected a number of bytes from 4096 to 1073741824 (the master sends up to 134217728)".to_owned()),
    }
}

/// An error for an option set to nothing: empty, or only whitespace.
fn blank(opt: &Opt, origin: Origin, value: &str) -> ConfigError {
    let found = if value.is_empty() { "is empty".to_owned() } else { format!("is blank ({value:?})") };
    ConfigError::Blank { option: opt.key, origin, found, expected: opt.value }
}

/// A key pin list, each entry checked; an error names the entry by position. `text` is
/// the comma-separated list of a flag or variable (neither hex nor base64 has a comma),
/// `None` for the file's YAML list. A list that holds no pin is an error, never "no
/// pins": with skip_verify that would turn key-pin mode into an unauthenticated
/// connection. So is an empty entry (`a,,b`), which is never skipped.
fn pin_list(entries: &[String], text: Option<&str>, origin: Origin) -> Result<Setting<Vec<KeyPin>>, ConfigError> {
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

fn parse_port(s: &str) -> Result<u16, String> {
    match s.parse::<u16>() {
        Ok(0) | Err(_) => Err("expected a TCP port from 1 to 65535".to_owned()),
        Ok(port) => Ok(port),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

/// Agent IDs and pool names travel in the websocket URL and in logs: no control
/// characters, no surrounding whitespace, not empty.
fn parse_label(s: &str) -> Result<String, String> {
    if s.is_empty() || s.trim() != s || s.chars().any(char::is_control) {
        Err("expected a non-empty name without control characters or surrounding spaces".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// The hostname, as Determined uses it for the default agent ID.
pub(super) fn default_agent_id() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.is_empty() {
        "det-agent".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn pki(name: &str) -> String {
        format!("{}/fixtures/pki/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    fn resolve(yaml: &str, args: ConfigArgs, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let lookup = move |k: &str| env.get(k).cloned();
        let path = Path::new("/etc/determined/agent.yaml");
        let file = parse_file(yaml, path)?;
        Resolver { args: &args, env: &lookup, file_path: Some(path) }.resolve(file)
    }

    #[test]
    fn key_pins_come_from_the_file_the_environment_or_a_flag() {
        let (a, b) = (KeyPin([0xAA; 32]), KeyPin([0xBB; 32]));
        let b64 = data_encoding::BASE64.encode(&b.0);
        let yaml = format!(
            "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n    master_key_pins:\n      - {a}\n      - sha256:{b64}\n"
        );
        let pins = |c: Config| c.tls.unwrap().master_key_pins;
        assert_eq!(pins(resolve(&yaml, ConfigArgs::default(), &[]).unwrap()), [a, b]);
        let env = format!("{b}, {a}");
        assert_eq!(
            pins(resolve(&yaml, ConfigArgs::default(), &[("DET_SECURITY_TLS_MASTER_KEY_PINS", &env)]).unwrap()),
            [b, a]
        );
        let flag = ConfigArgs { security_tls_master_key_pins: Some(a.to_string()), ..ConfigArgs::default() };
        assert_eq!(pins(resolve(&yaml, flag, &[("DET_SECURITY_TLS_MASTER_KEY_PINS", &env)]).unwrap()), [a]);
        assert_eq!(resolve(&yaml, ConfigArgs::default(), &[]).unwrap().mode_name(), "key-pin");
    }

    #[test]
    fn a_bad_key_pin_is_named_by_its_position() {
        let yaml = format!(
            "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    master_key_pins: [{}, \"sha256:{}\"]\n",
            KeyPin([1; 32]),
            crate::x509::Fingerprint([2; 32])
        );
        let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("security.tls.master_key_pins") && msg.contains("entry 2 of 2"), "{msg}");
        assert!(msg.contains("certificate fingerprint") && msg.contains("det-agent check"), "{msg}");
        let env = [("DET_SECURITY_TLS_MASTER_KEY_PINS", "sha256:nothex")];
        let msg = resolve("master_host: m\nsecurity:\n  tls:\n    enabled: true\n", ConfigArgs::default(), &env)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("$DET_SECURITY_TLS_MASTER_KEY_PINS") && msg.contains("entry 1 of 1"), "{msg}");
        // Pins without TLS would silently do nothing.
        let yaml = format!("master_host: m\nsecurity:\n  tls:\n    master_key_pins: [{}]\n", KeyPin([1; 32]));
        let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("security.tls.master_key_pins"), "{msg}");
    }

    /// skip_verify with a pin: key-pin mode, where the pin is what authenticates the master.
    fn key_pin_yaml(pins: &str) -> String {
        format!(
            "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n    master_key_pins:{pins}\n"
        )
    }

    #[test]
    fn a_pin_list_without_a_pin_never_drops_key_pins() {
        let pin = KeyPin([0xAA; 32]).to_string();
        let yaml = key_pin_yaml(&format!(" [{pin}]"));
        assert_eq!(resolve(&yaml, ConfigArgs::default(), &[]).unwrap().mode_name(), "key-pin");
        let env = |v: &'static str| [("DET_SECURITY_TLS_MASTER_KEY_PINS", v)];
        let flag = |v: &str| ConfigArgs { security_tls_master_key_pins: Some(v.to_owned()), ..ConfigArgs::default() };
        let expected = "one or more key pins (sha256:..., as the key pin lines of `det-agent check`)";
        for (args, env, found, unset) in [
            (
                ConfigArgs::default(),
                env(" "),
                "set by $DET_SECURITY_TLS_MASTER_KEY_PINS) is blank (\" \")",
                "unset $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset (an empty variable counts as unset)",
            ),
            (
                ConfigArgs::default(),
                env(","),
                "set by $DET_SECURITY_TLS_MASTER_KEY_PINS) holds no pin (\",\")",
                "unset $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset (an empty variable counts as unset)",
            ),
            (
                ConfigArgs::default(),
                env(" , ,"),
                "set by $DET_SECURITY_TLS_MASTER_KEY_PINS) holds no pin (\" , ,\")",
                "unset $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset (an empty variable counts as unset)",
            ),
            (
                flag(""),
                env(""),
                "set by --security-tls-master-key-pins) is empty",
                "drop --security-tls-master-key-pins to leave it unset",
            ),
            (
                flag(","),
                env(""),
                "set by --security-tls-master-key-pins) holds no pin (\",\")",
                "drop --security-tls-master-key-pins to leave it unset",
            ),
        ] {
            let msg = resolve(&yaml, args, &env).unwrap_err().to_string();
            assert_eq!(
                msg,
                format!("security.tls.master_key_pins ({found}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {expected}, or {unset}")
            );
        }
        let in_file = "set in /etc/determined/agent.yaml";
        let delete = "delete the master_key_pins key from /etc/determined/agent.yaml to leave it unset";
        for (pins, found) in [
            (" []", "holds no pin (an empty list)"),
            (" [\"\"]", "holds no pin (its one entry is empty)"),
            (" [\" \", \"\"]", "holds no pin (all 2 entries are empty)"),
            ("", NULL_FOUND),
            (" ~", NULL_FOUND),
        ] {
            let msg = resolve(&key_pin_yaml(pins), ConfigArgs::default(), &[]).unwrap_err().to_string();
            assert_eq!(
                msg,
                format!("security.tls.master_key_pins ({in_file}) {found}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {expected}, or {delete}"),
                "{pins:?}"
            );
        }
    }

    #[test]
    fn an_empty_pin_entry_is_named_by_its_position_not_skipped() {
        let (a, b) = (KeyPin([0xAA; 32]), KeyPin([0xBB; 32]));
        let commas = "two commas in a row, or one at an end; remove the extra comma, or put the missing pin there";
        for (text, position) in
            [(format!("{a},,{b}"), "2 of 3"), (format!("{a},"), "2 of 2"), (format!(",{a}"), "1 of 2")]
        {
            let env = [("DET_SECURITY_TLS_MASTER_KEY_PINS", text.as_str())];
            let msg = resolve(&key_pin_yaml(&format!(" [{a}]")), ConfigArgs::default(), &env).unwrap_err().to_string();
            assert_eq!(
                msg,
                format!("security.tls.master_key_pins (set by $DET_SECURITY_TLS_MASTER_KEY_PINS): {text:?} is not valid: entry {position} is empty ({commas})")
            );
        }
        let msg = resolve(&key_pin_yaml(&format!(" [{a}, \"\"]")), ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert_eq!(
            msg,
            "security.tls.master_key_pins (set in /etc/determined/agent.yaml): \"\" is not valid: entry 2 of 2 is empty (remove it from the list, or put the missing pin there)"
        );
    }

    #[test]
    fn a_security_key_without_a_value_is_an_error_not_unset() {
        // As a template writes `key: ${VAR}` when VAR is unset or empty.
        let base = "master_host: m\nsecurity:\n  tls:\n";
        for (key, rest, expected) in [
            ("enabled", "", "true or false"),
            ("skip_verify", "    enabled: true\n", "true or false"),
            (
                "master_cert",
                "    enabled: true\n",
                "the path of a PEM file holding the master's certificate or its chain",
            ),
            ("master_cert_name", "    enabled: true\n", "a DNS name the master's certificate carries"),
            ("client_cert", "    enabled: true\n", "the path of the client certificate's PEM file"),
            ("client_key", "    enabled: true\n", "the path of the client certificate's private key"),
        ] {
            for null in ["", " ~", " null"] {
                let yaml = format!("{base}{rest}    {key}:{null}\n");
                let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
                assert_eq!(
                    msg,
                    format!("security.tls.{key} (set in /etc/determined/agent.yaml) {NULL_FOUND}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {expected}, or delete the {key} key from /etc/determined/agent.yaml to leave it unset"),
                    "{yaml}"
                );
            }
        }
    }

    #[test]
    fn a_blank_path_or_name_in_the_file_is_an_error() {
        let base = "master_host: m\nsecurity:\n  tls:\n    enabled: true\n";
        for key in ["master_cert", "master_cert_name", "client_cert", "client_key"] {
            for (value, found) in [("\"\"", "is empty"), ("\"  \"", "is blank (\"  \")")] {
                let yaml = format!("{base}    {key}: {value}\n");
                let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
                assert!(
                    msg.starts_with(&format!("security.tls.{key} (set in /etc/determined/agent.yaml) {found}; ")),
                    "{msg}"
                );
            }
        }
        // Not "the file's own folder".
        let msg = resolve("master_host: m\nfluent:\n  config_dir: \"\"\n", ConfigArgs::default(), &[]).unwrap_err();
        assert!(
            msg.to_string().starts_with("fluent.config_dir (set in /etc/determined/agent.yaml) is empty; "),
            "{msg}"
        );
        // A string where a boolean belongs is the parser's error, with its line.
        let msg = resolve(&format!("{base}    skip_verify: \"\"\n"), ConfigArgs::default(), &[]).unwrap_err();
        assert_eq!(
            msg.to_string(),
            "/etc/determined/agent.yaml: security.tls.skip_verify: invalid type: string \"\", expected a boolean at line 5 column 18"
        );
    }

    #[test]
    fn a_blank_flag_or_whitespace_variable_is_an_error_for_every_option() {
        let yaml = "master_host: m\n";
        type Field = fn(&mut ConfigArgs) -> &mut Option<String>;
        let flags: [(&Opt, Field); 10] = [
            (&TLS_ENABLED, |a| &mut a.security_tls_enabled),
            (&SKIP_VERIFY, |a| &mut a.security_tls_skip_verify),
            (&MASTER_CERT, |a| &mut a.security_tls_master_cert),
            (&CERT_NAME, |a| &mut a.security_tls_master_cert_name),
            (&KEY_PINS, |a| &mut a.security_tls_master_key_pins),
            (&CLIENT_CERT, |a| &mut a.security_tls_client_cert),
            (&CLIENT_KEY, |a| &mut a.security_tls_client_key),
            (&MASTER_HOST, |a| &mut a.master_host),
            (&MASTER_PORT, |a| &mut a.master_port),
            (&FLUENT_DIR, |a| &mut a.fluent_config_dir),
        ];
        for (opt, field) in flags {
            for value in ["", " ", "\t\n"] {
                let mut args = ConfigArgs::default();
                *field(&mut args) = Some(value.to_owned());
                let msg = resolve(yaml, args, &[]).unwrap_err().to_string();
                let found = if value.is_empty() { "is empty".to_owned() } else { format!("is blank ({value:?})") };
                assert_eq!(
                    msg,
                    format!("{} (set by {}) {found}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {}, or drop {} to leave it unset", opt.key, opt.flag, opt.value, opt.flag)
                );
            }
            let msg = resolve(yaml, ConfigArgs::default(), &[(opt.env, "  ")]).unwrap_err().to_string();
            assert!(msg.starts_with(&format!("{} (set by ${}) is blank (\"  \"); ", opt.key, opt.env)), "{msg}");
            // Exactly empty: unset, as shells and systemd unset a variable.
            let cfg = resolve(yaml, ConfigArgs::default(), &[(opt.env, "")]);
            assert!(cfg.is_ok(), "{}: {}", opt.env, cfg.unwrap_err());
        }
    }

    #[test]
    fn check_and_run_refuse_a_trust_store_others_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let store = crate::store::Store::at(home.path().join("determined/certs.json"));
        let url = crate::store::MasterUrl::parse("https://m.example.com:8443").unwrap();
        store.put(&url, &crate::dev_master::fixtures::certs("master.pem")).unwrap();
        let yaml = "master_host: m.example.com\nsecurity:\n  tls:\n    enabled: true\n";
        let env = [("XDG_CONFIG_HOME", home.path().to_str().unwrap())];
        assert_eq!(resolve(yaml, ConfigArgs::default(), &env).unwrap().mode_name(), "pinned");
        std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        let msg = resolve(yaml, ConfigArgs::default(), &env).unwrap_err().to_string();
        let p = store.path().display();
        assert!(
            msg.starts_with(&format!(
                "trust store {p} is writable by its group and by every user (mode 0666, owner uid "
            )) && msg.contains(&format!("run `chmod go-w {p}`")),
            "{msg}"
        );
    }

    #[test]
    fn defaults_follow_the_master() {
        let plain = resolve("master_host: m.example.com\n", ConfigArgs::default(), &[]).unwrap();
        assert_eq!(plain.master_port, 8080);
        assert!(plain.tls.is_none());
        assert_eq!(plain.resource_pool, "default");
        assert_eq!(plain.agent_id, default_agent_id());
        assert_eq!(plain.agent_reconnect_attempts, 0);
        assert_eq!(plain.agent_reconnect_backoff, Duration::from_secs(5));
        let tls =
            resolve("master_host: m.example.com\nsecurity:\n  tls:\n    enabled: true\n", ConfigArgs::default(), &[])
                .unwrap();
        assert_eq!(tls.master_port, 8443);
        assert!(matches!(tls.tls.unwrap().trust, Trust::PublicRoots));
    }

    #[test]
    fn flag_beats_env_beats_file() {
        let yaml = "master_host: file.example.com\nmaster_port: 1111\nagent_id: from-file\n";
        let env = [("DET_MASTER_HOST", "env.example.com"), ("DET_MASTER_PORT", "2222")];
        let args = ConfigArgs { master_host: Some("flag.example.com".into()), ..Default::default() };
        let cfg = resolve(yaml, args, &env).unwrap();
        assert_eq!(cfg.master_host.to_string(), "flag.example.com");
        assert_eq!(cfg.master_port, 2222);
        assert_eq!(cfg.agent_id, "from-file");
    }

    #[test]
    fn file_values_are_checked_like_flags() {
        for (yaml, needle) in [
            ("master_host: m\nmaster_port: 0\n", "master_port (set in /etc/determined/agent.yaml): \"0\" is not valid"),
            ("master_host: m\nagent_id: \"\"\n", "agent_id (set in /etc/determined/agent.yaml)"),
            ("master_host: m\nresource_pool: \" gpu\"\n", "resource_pool"),
            ("master_host: https://m.example.com\n", "not a URL"),
            ("master_host: m\ncontainer_master_port: 0\n", "container_master_port"),
        ] {
            let msg = resolve(yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
            assert!(msg.contains(needle), "{yaml:?}: {msg}");
        }
    }

    #[test]
    fn fluent_section_layers_and_is_checked() {
        let yaml = "master_host: m\nfluent:\n  config_dir: fluent-bit\n  format: yaml\n  port: 24225\n  image: fluent/fluent-bit:1.9\n";
        let cfg = resolve(yaml, ConfigArgs::default(), &[("DET_FLUENT_LISTEN", "0.0.0.0")]).unwrap();
        assert_eq!(cfg.fluent.config_dir, Some(PathBuf::from("/etc/determined/fluent-bit")));
        assert_eq!(cfg.fluent.format, Format::Yaml);
        assert_eq!(cfg.fluent.port, 24225);
        assert_eq!(cfg.fluent.listen, "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(cfg.fluent.flush_secs, 1);
        let defaults = resolve("master_host: m\n", ConfigArgs::default(), &[]).unwrap();
        assert_eq!(defaults.fluent, FluentConfig::default());
        for (fluent, needle) in [
            (
                "format: json",
                "fluent.format (set in /etc/determined/agent.yaml): \"json\" is not valid: expected classic or yaml",
            ),
            ("listen: localhost", "expected an IP address"),
            ("flush: 0", "from 1 to 3600"),
            ("port: 0", "fluent.port"),
            ("tag: x", "unknown field `tag`"),
        ] {
            let yaml = format!("master_host: m\nfluent:\n  {fluent}\n");
            let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
            assert!(msg.contains(needle), "{fluent}: {msg}");
        }
    }

    #[test]
    fn empty_env_counts_as_unset() {
        let cfg =
            resolve("master_host: file.example.com\n", ConfigArgs::default(), &[("DET_MASTER_HOST", "")]).unwrap();
        assert_eq!(cfg.master_host.to_string(), "file.example.com");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = resolve(
            "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    verify_name: x\n",
            ConfigArgs::default(),
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("verify_name") && msg.contains("line 5"), "{msg}");
    }

    #[test]
    fn missing_host_says_every_way_to_set_it() {
        let msg = resolve("", ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("--master-host") && msg.contains("DET_MASTER_HOST"), "{msg}");
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let msg =
            resolve("master_host: m\n", ConfigArgs::default(), &[("DET_MASTER_PORT", "http")]).unwrap_err().to_string();
        assert!(msg.contains("master_port") && msg.contains("$DET_MASTER_PORT") && msg.contains("\"http\""), "{msg}");
    }

    #[test]
    fn pinned_and_skip_verify_conflict() {
        let yaml =
            format!("master_host: m\nsecurity:\n  tls:\n    enabled: true\n    master_cert: {}\n", pki("root-ca.pem"));
        let env = [("DET_SECURITY_TLS_SKIP_VERIFY", "true")];
        let msg = resolve(&yaml, ConfigArgs::default(), &env).unwrap_err().to_string();
        assert!(msg.contains("cannot be used together") && msg.contains("$DET_SECURITY_TLS_SKIP_VERIFY"), "{msg}");
    }

    #[test]
    fn half_client_pair_is_refused_both_ways() {
        let base = "master_host: m\nsecurity:\n  tls:\n    enabled: true\n";
        let cert_only = format!("{base}    client_cert: {}\n", pki("client.pem"));
        let msg = resolve(&cert_only, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("security.tls.client_cert is set") && msg.contains("client_key is not"), "{msg}");
        let key_only = format!("{base}    client_key: {}\n", pki("client.key"));
        let msg = resolve(&key_only, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("security.tls.client_key is set"), "{msg}");
    }

    #[test]
    fn tls_options_without_tls_are_refused() {
        let yaml = "master_host: m\nsecurity:\n  tls:\n    master_cert_name: m.example.com\n    skip_verify: true\n";
        let msg = resolve(yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("security.tls.skip_verify, security.tls.master_cert_name are set"), "{msg}");
        // skip_verify: false does nothing and is not an error.
        assert!(
            resolve("master_host: m\nsecurity:\n  tls:\n    skip_verify: false\n", ConfigArgs::default(), &[]).is_ok()
        );
    }

    #[test]
    fn master_cert_problems_name_the_option_and_file() {
        let base = "master_host: m\nsecurity:\n  tls:\n    enabled: true\n";
        for (file, needle) in
            [("does-not-exist.pem", "no such file"), ("master.key", "holds a private key but no certificate")]
        {
            let msg = resolve(&format!("{base}    master_cert: {}\n", pki(file)), ConfigArgs::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(
                msg.starts_with("security.tls.master_cert (set in /etc/determined/agent.yaml)")
                    && msg.contains(file)
                    && msg.contains(needle),
                "{msg}"
            );
        }
    }

    #[test]
    fn relative_paths_in_the_file_follow_the_file() {
        let r = Resolver {
            args: &ConfigArgs::default(),
            env: &|_| None,
            file_path: Some(Path::new("/etc/determined/agent.yaml")),
        };
        assert_eq!(r.file_relative("master.crt".into()), PathBuf::from("/etc/determined/master.crt"));
        assert_eq!(r.file_relative("/abs/master.crt".into()), PathBuf::from("/abs/master.crt"));
    }

    #[test]
    fn cert_name_must_be_a_dns_name() {
        let base = "master_host: 10.0.0.5\nsecurity:\n  tls:\n    enabled: true\n    master_cert_name: ";
        for (value, needle) in [
            ("10.0.0.6", "is an IP address"),
            ("\"*.example.com\"", "wildcard"),
            ("\"bad name\"", "expected a DNS name"),
        ] {
            let msg = resolve(&format!("{base}{value}\n"), ConfigArgs::default(), &[]).unwrap_err().to_string();
            assert!(msg.contains("security.tls.master_cert_name") && msg.contains(needle), "{msg}");
        }
    }

    #[test]
    fn client_key_must_match_client_cert() {
        let yaml = format!(
            "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    client_cert: {}\n    client_key: {}\n",
            pki("client.pem"),
            pki("unrelated.key")
        );
        let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("does not match") && msg.contains("unrelated.key"), "{msg}");
        let good = yaml.replace("unrelated.key", "client.key");
        assert!(resolve(&good, ConfigArgs::default(), &[]).unwrap().tls.unwrap().client_identity.is_some());
    }

    #[test]
    fn bool_flags_accept_common_spellings() {
        for (text, want) in [("true", true), ("YES", true), ("1", true), ("off", false), ("False", false)] {
            assert_eq!(parse_bool(text), Ok(want));
        }
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn backoff_is_bounded() {
        assert!(resolve("master_host: m\nagent_reconnect_backoff: -1\n", ConfigArgs::default(), &[]).is_err());
        let cfg = resolve("master_host: m\nagent_reconnect_backoff: 2.5\n", ConfigArgs::default(), &[]).unwrap();
        assert_eq!(cfg.agent_reconnect_backoff, Duration::from_millis(2500));
    }

    #[test]
    fn a_deeply_nested_file_is_refused_before_it_is_parsed() {
        let path = Path::new("/etc/determined/agent.yaml");
        let levels = 100_000;
        let yaml = format!("master_host: {}{}\n", "[".repeat(levels), "]".repeat(levels));
        let err = parse_file(&yaml, path).unwrap_err();
        assert!(matches!(err, ConfigError::TooNested { line: 1, column: 78, limit: 64, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "/etc/determined/agent.yaml: line 1, column 78 holds the 65th '[' or '{' of the file, over the limit of 64: \
             each can open a nested YAML flow collection, and parsing slows down with every level nested. agent.yaml \
             needs a few at most (master_key_pins: [a, b]); remove the extra brackets, or write lists as \"- item\" lines"
        );
        // Flow mappings count too, and so does a bracket in a comment or a string: the
        // bound must hold whatever the quoting.
        let mappings = format!("master_host: m\n# {}\nagent_id: \"{}\"\n", "{".repeat(40), "[".repeat(25));
        assert!(matches!(
            parse_file(&mappings, path),
            Err(ConfigError::TooNested { line: 3, column: 36, limit: 64, .. })
        ));
        // 64 is accepted, and then nested collections meet serde_norway's own checks.
        let yaml = format!("master_host: m\nagent_id: \"{}\"\n", "[".repeat(64));
        assert!(parse_file(&yaml, path).is_ok());
        let yaml = format!("master_host: {}{}\n", "[".repeat(64), "]".repeat(64));
        let msg = parse_file(&yaml, path).unwrap_err().to_string();
        assert_eq!(
            msg,
            "/etc/determined/agent.yaml: master_host: invalid type: sequence, expected a string at line 1 column 14"
        );
    }

    #[test]
    fn a_file_over_1_mib_is_refused_unparsed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        let padding = "#".repeat(1 << 20);
        std::fs::write(&path, format!("master_host: m\n{padding}")).unwrap();
        let args = ConfigArgs { config: Some(path.clone()), ..ConfigArgs::default() };
        let err = args.load(&|_| None).unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { limit: 1048576, .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{}: the file is over 1 MiB (1048576 bytes), the most det-agent reads of a configuration file (a complete agent.yaml is a few KiB); check that --config names the right file", path.display())
        );
        // Exactly 1 MiB is read.
        std::fs::write(&path, format!("master_host: m\n{}", &padding[15..])).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        assert!(args.load(&|_| None).is_ok());
        // An endless file is not read for ever.
        let args = ConfigArgs { config: Some(PathBuf::from("/dev/zero")), ..ConfigArgs::default() };
        assert!(matches!(args.load(&|_| None), Err(ConfigError::TooLarge { .. })));
    }

    #[test]
    fn a_file_that_is_not_utf8_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, b"master_host: m\xff\n").unwrap();
        let args = ConfigArgs { config: Some(path.clone()), ..ConfigArgs::default() };
        assert_eq!(
            args.load(&|_| None).unwrap_err().to_string(),
            format!("{}: not UTF-8 text (byte 14 starts an invalid sequence); agent.yaml must be UTF-8 YAML, so check that this is the right file, or convert it with iconv", path.display())
        );
    }

    #[test]
    fn a_wrong_shape_is_named_in_words_not_rust_types() {
        for (yaml, needle) in [
            ("- a\n", "invalid type: sequence, expected agent.yaml's settings, as `key: value` lines"),
            ("security: 5\n", "invalid type: integer `5`, expected the security settings (tls:)"),
            ("security:\n  tls: [1]\n", "expected the security.tls settings (enabled, master_cert, …)"),
            ("fluent: x\n", "expected the fluent settings (config_dir, format, listen, port, flush)"),
        ] {
            let msg = parse_file(yaml, Path::new("a.yaml")).unwrap_err().to_string();
            assert!(msg.contains(needle) && !msg.contains("struct"), "{msg}");
        }
    }

    #[test]
    fn empty_or_comment_only_file_is_empty_config() {
        assert!(parse_file("", Path::new("a.yaml")).is_ok());
        assert!(parse_file("# nothing here\n", Path::new("a.yaml")).is_ok());
    }
}
