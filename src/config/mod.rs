//! The agent's configuration: raw sources (YAML file, environment, flags) layered and
//! checked into a [`Config`] whose types cannot express a contradiction (pinned *and*
//! unverified, a client certificate without its key).
//!
//! By job: `file.rs` reads agent.yaml into serde types; `names.rs` holds every option's
//! key, flag and variable, and `args.rs` the flags ([`ConfigArgs`]); `resolve.rs` layers
//! flag > environment > file > default; `parse.rs` checks values; `tls.rs` assembles the
//! trust settings (their types are in `tls_types.rs`), and `trust_files.rs` says which of
//! the files they name another local user can change; `defaults.rs` holds every default.

mod args;
mod defaults;
mod file;
mod ignored;
mod listen;
mod log;
mod names;
mod node;
mod parse;
mod read;
mod resolve;
mod tls;
mod tls_types;
mod trust_files;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::ServerName;

pub use crate::host::{authority, Host, HostError};
pub use args::ConfigArgs;
pub use defaults::*;
pub use ignored::{warning as ignored_warning, IgnoredKey};
pub use listen::{Listen, ListenError};
pub use log::{LogConfig, LogLevel, LogLevelError};
pub use node::{Hooks, TaskProxy, MAX_ARTIFICIAL_SLOTS};
pub use read::{MAX_CONFIG_SIZE, MAX_FLOW_BRACKETS};
pub use tls_types::{ClientIdentity, PinnedCerts, TlsConfig, Trust};
pub use trust_files::{trust_file_warnings, TrustFile, TrustFileWarning};

/// Timeouts and buffer bounds of the link to the master.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkLimits {
    /// One TCP connect (per address).
    pub connect_timeout: Duration,
    /// Each later stage: the proxy's answer, TLS, the upgrade, registration, a write.
    pub handshake_timeout: Duration,
    /// Messages held for an application slower than the master.
    pub inbound_buffer_messages: usize,
    /// Bytes of messages held for it.
    pub inbound_buffer_bytes: usize,
}

impl Default for LinkLimits {
    fn default() -> Self {
        LinkLimits {
            connect_timeout: defaults::DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: defaults::DEFAULT_HANDSHAKE_TIMEOUT,
            inbound_buffer_messages: defaults::DEFAULT_INBOUND_BUFFER_MESSAGES,
            inbound_buffer_bytes: defaults::DEFAULT_INBOUND_BUFFER_BYTES,
        }
    }
}

/// When a certificate's coming expiry is warned about (days before its notAfter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExpiryDays {
    /// Warn, once a day, within this many days.
    pub warning: u32,
    /// Log an error instead within this many days (at most `warning`).
    pub error: u32,
}

impl Default for ExpiryDays {
    fn default() -> Self {
        ExpiryDays { warning: defaults::DEFAULT_CERT_WARNING_DAYS, error: defaults::DEFAULT_CERT_ERROR_DAYS }
    }
}

/// A checked agent configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Host dialed over TCP.
    pub master_host: Host,
    /// Port dialed over TCP.
    pub master_port: u16,
    /// This agent's ID (default: the hostname).
    pub agent_id: String,
    /// The resource pool the agent joins.
    pub resource_pool: String,
    /// The master's address as seen from inside task containers, when it differs.
    pub container_master_host: Option<Host>,
    /// The master's port as seen from inside task containers, when it differs.
    pub container_master_port: Option<u16>,
    /// Consecutive failed reconnects before giving up; 0 means never give up.
    pub agent_reconnect_attempts: u32,
    /// Base delay between reconnects (see [`crate::backoff`]).
    pub agent_reconnect_backoff: Duration,
    /// Cap on one reconnect delay.
    pub agent_reconnect_backoff_max: Duration,
    /// Largest message accepted from the master, in bytes.
    pub max_message_size: usize,
    /// `connect_timeout`, `handshake_timeout`, `inbound_buffer_messages`,
    /// `inbound_buffer_bytes`: how long each stage of reaching the master may take, and
    /// what the link holds for a slow application.
    pub link: LinkLimits,
    /// `certificate_warning_days`, `certificate_error_days`: when `run` warns about, then
    /// logs as errors, certificates it relies on that expire soon.
    pub certificate_expiry: ExpiryDays,
    /// TLS settings; `None` when TLS is off.
    pub tls: Option<TlsConfig>,
    /// The Fluent Bit configuration det-agent writes (the `fluent` section).
    pub fluent: FluentConfig,
    /// The metrics endpoint (the `metrics` section).
    pub metrics: MetricsConfig,
    /// The configuration files read, in order (later ones won key by key); empty when
    /// none was.
    pub files: Vec<PathBuf>,
    /// Logging: `log.level`, `log.color`, `debug`.
    pub log: LogConfig,
    /// What device detection is asked for: `slot_type` (default auto), `visible_gpus`
    /// (default `$ROCR_VISIBLE_DEVICES`, else `$CUDA_VISIBLE_DEVICES`, else every GPU, read
    /// when the configuration is loaded), `artificial_slots` (default 0), and the agent
    /// ID. Pass it to [`crate::devices::detect`] or [`crate::devices::detect_this_node`].
    pub devices: crate::devices::DetectOptions,
    /// `http_proxy`, `https_proxy`, `ftp_proxy`, `no_proxy`: given to tasks as
    /// `HTTP_PROXY`, … (see [`TaskProxy::vars`]); never used for det-agent's own connection.
    pub task_proxy: TaskProxy,
    /// `hooks.on_connection_lost`: the command to run when the agent gives up on the master.
    pub hooks: Hooks,
    /// `state_file`: where `det-agent run` records the master's identity (cluster ID,
    /// master ID) when the master accepts the agent, and where `det-agent task-env` reads
    /// it. Default [`DEFAULT_STATE_FILE`], in the systemd unit's state directory.
    pub state_file: PathBuf,
    /// Options of Determined's agent that were set and are ignored, each once; warn with
    /// [`Config::ignored_warning`].
    pub ignored: Vec<IgnoredKey>,
    /// The files deciding what det-agent trusts (`master_cert`, `SSL_CERT_FILE` in CA
    /// mode, `client_key`) that another local user can change or read, found when the
    /// configuration was loaded; used anyway, to be warned about.
    pub trust_file_warnings: Vec<TrustFileWarning>,
}

impl Config {
    /// A configuration with every default, for the given master, TLS as given.
    pub fn new(master_host: Host, tls: Option<TlsConfig>) -> Self {
        let master_port = if tls.is_some() { DEFAULT_TLS_PORT } else { DEFAULT_PLAIN_PORT };
        let agent_id = default_agent_id();
        Config {
            master_host,
            master_port,
            agent_id: agent_id.clone(),
            resource_pool: DEFAULT_RESOURCE_POOL.to_owned(),
            container_master_host: None,
            container_master_port: None,
            agent_reconnect_attempts: DEFAULT_RECONNECT_ATTEMPTS,
            agent_reconnect_backoff: DEFAULT_RECONNECT_BACKOFF,
            agent_reconnect_backoff_max: DEFAULT_RECONNECT_BACKOFF_MAX,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            link: LinkLimits::default(),
            certificate_expiry: ExpiryDays::default(),
            tls,
            fluent: FluentConfig::default(),
            metrics: MetricsConfig::default(),
            files: Vec::new(),
            log: LogConfig::default(),
            devices: crate::devices::DetectOptions {
                artificial_slots: DEFAULT_ARTIFICIAL_SLOTS,
                ..crate::devices::DetectOptions::new(DEFAULT_SLOT_TYPE, agent_id)
            },
            task_proxy: TaskProxy::default(),
            hooks: Hooks::default(),
            state_file: default_state_file().to_owned(),
            ignored: Vec::new(),
            trust_file_warnings: Vec::new(),
        }
    }

    /// The one warning naming every ignored option of Determined's agent that was set,
    /// and why it is ignored; `None` when there is none.
    pub fn ignored_warning(&self) -> Option<String> {
        ignored::warning(&self.ignored)
    }

    /// The trust mode's short name (`ca`, `pinned`, `skip-verify`, `key-pin`), or `plain`
    /// when TLS is off.
    pub fn mode_name(&self) -> &'static str {
        self.tls.as_ref().map_or("plain", TlsConfig::mode_name)
    }

    /// The name the master's certificate is verified against (and sent as SNI when it is
    /// a DNS name): `master_cert_name` when set, else the dialed host.
    pub fn server_name(&self) -> ServerName<'static> {
        match self.tls.as_ref().and_then(|t| t.master_cert_name.as_ref()) {
            Some(name) => ServerName::DnsName(name.clone()),
            None => self.master_host.server_name(),
        }
    }
}

/// The `metrics` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `metrics.listen`: where `det-agent run` serves `/metrics` (Prometheus/OpenMetrics)
    /// and `/healthz`. `None` (the default): metrics off, nothing listens.
    pub listen: Option<Listen>,
}

/// The `fluent` section: where `det-agent run` keeps a Fluent Bit configuration that
/// follows the agent's trust settings, and the log input it describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FluentConfig {
    /// When set, `det-agent run` writes the Fluent Bit configuration here at start and
    /// after every SIGHUP reload.
    pub config_dir: Option<PathBuf>,
    /// The configuration format written.
    pub format: FluentFormat,
    /// Address of Fluent Bit's `forward` input, where tasks send their logs.
    pub listen: IpAddr,
    /// Port of the `forward` input (Determined's `fluent.port`).
    pub port: u16,
    /// Seconds between Fluent Bit's flushes to the master.
    pub flush_secs: u32,
}

/// Fluent Bit's two configuration formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FluentFormat {
    /// `[SECTION]` blocks of `Key value` lines (`fluent-bit.conf`).
    Classic,
    /// YAML (`fluent-bit.yaml`; Fluent Bit needs the .yaml extension to read it as YAML).
    Yaml,
}

impl FluentFormat {
    /// The name in agent.yaml: `classic` or `yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            FluentFormat::Classic => "classic",
            FluentFormat::Yaml => "yaml",
        }
    }

    /// The file name this format is written to.
    pub fn file_name(self) -> &'static str {
        match self {
            FluentFormat::Classic => "fluent-bit.conf",
            FluentFormat::Yaml => "fluent-bit.yaml",
        }
    }
}

/// A `fluent.format` that is neither `classic` nor `yaml`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected classic or yaml")]
pub struct FluentFormatError;

impl std::str::FromStr for FluentFormat {
    type Err = FluentFormatError;

    fn from_str(s: &str) -> Result<Self, FluentFormatError> {
        match s.to_ascii_lowercase().as_str() {
            "classic" => Ok(FluentFormat::Classic),
            "yaml" => Ok(FluentFormat::Yaml),
            _ => Err(FluentFormatError),
        }
    }
}

impl Default for FluentConfig {
    fn default() -> Self {
        FluentConfig {
            config_dir: None,
            format: DEFAULT_FLUENT_FORMAT,
            listen: DEFAULT_FLUENT_LISTEN,
            port: DEFAULT_FLUENT_PORT,
            flush_secs: DEFAULT_FLUENT_FLUSH_SECS,
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod unit {
    use super::*;
    use rustls_pki_types::DnsName;

    #[test]
    fn name_override_wins_over_dialed_ip() {
        let mut tls = TlsConfig::new(Trust::PublicRoots);
        tls.master_cert_name = Some(DnsName::try_from("master.example.com").unwrap().to_owned());
        let cfg = Config::new(Host::parse("10.0.0.5").unwrap(), Some(tls));
        assert_eq!(cfg.server_name(), ServerName::try_from("master.example.com").unwrap());
        assert_eq!(cfg.master_port, DEFAULT_TLS_PORT);
    }
}
