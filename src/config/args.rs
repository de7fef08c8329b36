//! [`ConfigArgs`]: every option as a flag, for the commands that load a configuration.
//! Each help text names the option's environment variable and default from
//! [`names`](super::names) and [`defaults`](super::defaults).

use std::path::PathBuf;

use super::defaults::{self, secs};
use super::names::{self, Opt};

/// Every configuration option as a flag. Each also reads the environment variable named
/// in its help; flags win over the environment, which wins over the file.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ConfigArgs {
    /// Configuration files, read after `config_file`; later ones win key by key.
    #[arg(long, value_name = "FILE", help = format!("Configuration file; give it again to layer another file over it, key by key (det-agent's own keys can live there, away from a Determined agent.yaml) [default: {} when no file is named and it exists]", defaults::DEFAULT_CONFIG_PATH))]
    pub config: Vec<PathBuf>,
    /// `config_file`: Determined's name for the configuration file, read first.
    #[arg(long, value_name = "FILE", help = help(&names::CONFIG_FILE, "Determined agent's configuration file option: read first, before any --config", None))]
    pub config_file: Option<String>,
    /// `master_host`.
    #[arg(long, value_name = "HOST", help = help(&names::MASTER_HOST, "Master host name or IP address to dial", None))]
    pub master_host: Option<String>,
    /// `master_port`.
    #[arg(long, value_name = "PORT", help = help(&names::MASTER_PORT, "Master port", Some(format!("{} with TLS, {} without", defaults::DEFAULT_TLS_PORT, defaults::DEFAULT_PLAIN_PORT))))]
    pub master_port: Option<String>,
    /// `agent_id`.
    #[arg(long, value_name = "ID", help = help(&names::AGENT_ID, "Agent ID", Some("the hostname".to_owned())))]
    pub agent_id: Option<String>,
    /// `resource_pool`.
    #[arg(long, value_name = "POOL", help = help(&names::RESOURCE_POOL, "Resource pool to join", Some(defaults::DEFAULT_RESOURCE_POOL.to_owned())))]
    pub resource_pool: Option<String>,
    /// `container_master_host`.
    #[arg(long, value_name = "HOST", help = help(&names::CONTAINER_HOST, "Master host as seen from task containers", None))]
    pub container_master_host: Option<String>,
    /// `container_master_port`.
    #[arg(long, value_name = "PORT", help = help(&names::CONTAINER_PORT, "Master port as seen from task containers", None))]
    pub container_master_port: Option<String>,
    /// `agent_reconnect_attempts`.
    #[arg(long, value_name = "N", help = help(&names::ATTEMPTS, "Consecutive failed reconnects before exiting; 0 = keep trying", Some(defaults::DEFAULT_RECONNECT_ATTEMPTS.to_string())))]
    pub agent_reconnect_attempts: Option<String>,
    /// `agent_reconnect_backoff`.
    #[arg(long, value_name = "SECONDS", help = help(&names::BACKOFF, "Base reconnect delay in seconds", Some(secs(defaults::DEFAULT_RECONNECT_BACKOFF))))]
    pub agent_reconnect_backoff: Option<String>,
    /// `agent_reconnect_backoff_max`.
    #[arg(long, value_name = "SECONDS", help = help(&names::BACKOFF_MAX, "Longest reconnect delay in seconds (the backoff's cap)", Some(secs(defaults::DEFAULT_RECONNECT_BACKOFF_MAX))))]
    pub agent_reconnect_backoff_max: Option<String>,
    /// `max_message_size`.
    #[arg(long, value_name = "BYTES", help = help(&names::MAX_MESSAGE, "Largest message accepted from the master, in bytes", Some(format!("{} ({})", defaults::DEFAULT_MAX_MESSAGE_SIZE, crate::text::bytes(defaults::DEFAULT_MAX_MESSAGE_SIZE as u64)))))]
    pub max_message_size: Option<String>,
    /// `connect_timeout`.
    #[arg(long, value_name = "SECONDS", help = help(&names::CONNECT_TIMEOUT, "Seconds one TCP connect (per address) may take", Some(secs(defaults::DEFAULT_CONNECT_TIMEOUT))))]
    pub connect_timeout: Option<String>,
    /// `handshake_timeout`.
    #[arg(long, value_name = "SECONDS", help = help(&names::HANDSHAKE_TIMEOUT, "Seconds each of the proxy's answer, TLS, the upgrade, registration and a write may take", Some(secs(defaults::DEFAULT_HANDSHAKE_TIMEOUT))))]
    pub handshake_timeout: Option<String>,
    /// `inbound_buffer_messages`.
    #[arg(long, value_name = "N", help = help(&names::INBOUND_MESSAGES, "Messages from the master held for a slow application before the link is dropped", Some(defaults::DEFAULT_INBOUND_BUFFER_MESSAGES.to_string())))]
    pub inbound_buffer_messages: Option<String>,
    /// `inbound_buffer_bytes`.
    #[arg(long, value_name = "BYTES", help = help(&names::INBOUND_BYTES, "Bytes of messages held for a slow application before the link is dropped", Some(defaults::DEFAULT_INBOUND_BUFFER_BYTES.to_string())))]
    pub inbound_buffer_bytes: Option<String>,
    /// `certificate_warning_days`.
    #[arg(long, value_name = "DAYS", help = help(&names::CERT_WARNING_DAYS, "Warn (once a day) when a certificate the agent relies on expires within this many days", Some(defaults::DEFAULT_CERT_WARNING_DAYS.to_string())))]
    pub certificate_warning_days: Option<String>,
    /// `certificate_error_days`.
    #[arg(long, value_name = "DAYS", help = help(&names::CERT_ERROR_DAYS, "Log an error instead when it expires within this many days", Some(defaults::DEFAULT_CERT_ERROR_DAYS.to_string())))]
    pub certificate_error_days: Option<String>,
    /// `security.tls.enabled`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help = help(&names::TLS_ENABLED, "Use TLS to reach the master", Some("false".to_owned())))]
    pub security_tls_enabled: Option<String>,
    /// `security.tls.skip_verify`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help = help(&names::SKIP_VERIFY, "Encrypt but do not verify the master's identity", Some("false".to_owned())))]
    pub security_tls_skip_verify: Option<String>,
    /// `security.tls.master_cert`.
    #[arg(long, value_name = "FILE", help = help(&names::MASTER_CERT, "File with the master's certificate or its chain: the only trust anchors", None))]
    pub security_tls_master_cert: Option<String>,
    /// `security.tls.master_cert_name`.
    #[arg(long, value_name = "NAME", help = help(&names::CERT_NAME, "DNS name to verify (and send as SNI) instead of the dialed host", None))]
    pub security_tls_master_cert_name: Option<String>,
    /// `security.tls.master_key_pins`.
    #[arg(long, value_name = "PINS", help = help(&names::KEY_PINS, "Pins of the master's public key, comma-separated: sha256:HEX or sha256:BASE64; any one may match", None))]
    pub security_tls_master_key_pins: Option<String>,
    /// `security.tls.client_cert`.
    #[arg(long, value_name = "FILE", help = help(&names::CLIENT_CERT, "Client certificate for mutual TLS", None))]
    pub security_tls_client_cert: Option<String>,
    /// `security.tls.client_key`.
    #[arg(long, value_name = "FILE", help = help(&names::CLIENT_KEY, "Private key of the client certificate", None))]
    pub security_tls_client_key: Option<String>,
    /// `fluent.config_dir`.
    #[arg(long, value_name = "DIR", help = help(&names::FLUENT_DIR, "Folder where `run` keeps a Fluent Bit configuration that follows these trust settings", None))]
    pub fluent_config_dir: Option<String>,
    /// `fluent.format`.
    #[arg(long, value_name = "FORMAT", help = help(&names::FLUENT_FORMAT, "Format of that configuration: classic or yaml", Some(defaults::DEFAULT_FLUENT_FORMAT.as_str().to_owned())))]
    pub fluent_format: Option<String>,
    /// `fluent.listen`.
    #[arg(long, value_name = "IP", help = help(&names::FLUENT_LISTEN, "Address of Fluent Bit's forward input for task logs", Some(defaults::DEFAULT_FLUENT_LISTEN.to_string())))]
    pub fluent_listen: Option<String>,
    /// `fluent.port`.
    #[arg(long, value_name = "PORT", help = help(&names::FLUENT_PORT, "Port of Fluent Bit's forward input", Some(defaults::DEFAULT_FLUENT_PORT.to_string())))]
    pub fluent_port: Option<String>,
    /// `fluent.flush`.
    #[arg(long, value_name = "SECONDS", help = help(&names::FLUENT_FLUSH, "Seconds between Fluent Bit's flushes to the master", Some(defaults::DEFAULT_FLUENT_FLUSH_SECS.to_string())))]
    pub fluent_flush: Option<String>,
    /// `metrics.listen`.
    #[arg(long, value_name = "IP:PORT", help = help(&names::METRICS_LISTEN, "Serve Prometheus metrics (/metrics) and a health check (/healthz) on this address; no authentication, so keep it on 127.0.0.1 or a trusted network", Some("none, metrics off".to_owned())))]
    pub metrics_listen: Option<String>,
    /// `debug`.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help = help(&names::DEBUG, "Log at debug level unless a log level is set", Some("false".to_owned())))]
    pub debug: Option<String>,
    /// `slot_type`.
    #[arg(long, value_name = "TYPE", help = help(&names::SLOT_TYPE, "Devices offered as slots: auto (NVIDIA GPUs, else AMD GPUs, else the CPU), cuda (or gpu), rocm, cpu, none", Some(defaults::DEFAULT_SLOT_TYPE.to_string())))]
    pub slot_type: Option<String>,
    /// `visible_gpus`.
    #[arg(long, value_name = "GPUS", help = help(&names::VISIBLE_GPUS, "GPUs offered, as indices or UUIDs, comma-separated", Some("$ROCR_VISIBLE_DEVICES, else $CUDA_VISIBLE_DEVICES, else every GPU".to_owned())))]
    pub visible_gpus: Option<String>,
    /// `artificial_slots`.
    #[arg(long, value_name = "N", help = help(&names::ARTIFICIAL_SLOTS, "Offer N fake CPU slots instead of the node's devices (for testing a cluster)", Some(defaults::DEFAULT_ARTIFICIAL_SLOTS.to_string())))]
    pub artificial_slots: Option<String>,
    /// `http_proxy`.
    #[arg(long, value_name = "URL", help = help(&names::HTTP_PROXY, "HTTP_PROXY for tasks", None))]
    pub http_proxy: Option<String>,
    /// `https_proxy`.
    #[arg(long, value_name = "URL", help = help(&names::HTTPS_PROXY, "HTTPS_PROXY for tasks", None))]
    pub https_proxy: Option<String>,
    /// `ftp_proxy`.
    #[arg(long, value_name = "URL", help = help(&names::FTP_PROXY, "FTP_PROXY for tasks", None))]
    pub ftp_proxy: Option<String>,
    /// `no_proxy`.
    #[arg(long, value_name = "HOSTS", help = help(&names::NO_PROXY, "NO_PROXY for tasks", None))]
    pub no_proxy: Option<String>,
    /// `state_file`.
    #[arg(long, value_name = "FILE", help = help(&names::STATE_FILE, "Where `run` records the master's identity (cluster and master ID) for `task-env`", Some(defaults::DEFAULT_STATE_FILE.to_owned())))]
    pub state_file: Option<String>,
    /// `api_enabled` of Determined's agent: accepted and ignored.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = IGNORED, help = help(&names::API_ENABLED, "Ignored: det-agent serves no agent API", None))]
    pub api_enabled: Option<String>,
    /// `bind_ip` of Determined's agent: accepted and ignored.
    #[arg(long, value_name = "IP", help_heading = IGNORED, help = help(&names::BIND_IP, "Ignored: det-agent serves no agent API", None))]
    pub bind_ip: Option<String>,
    /// `bind_port` of Determined's agent: accepted and ignored.
    #[arg(long, value_name = "PORT", help_heading = IGNORED, help = help(&names::BIND_PORT, "Ignored: det-agent serves no agent API", None))]
    pub bind_port: Option<String>,
    /// `tls` of Determined's agent (its API server's TLS): accepted and ignored.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true", help_heading = IGNORED, help = help(&names::API_TLS, "Ignored: det-agent serves no agent API", None))]
    pub tls: Option<String>,
    /// `tls_cert` of Determined's agent: accepted and ignored.
    #[arg(long, value_name = "FILE", help_heading = IGNORED, help = help(&names::API_TLS_CERT, "Ignored: det-agent serves no agent API", None))]
    pub tls_cert: Option<String>,
    /// `tls_key` of Determined's agent: accepted and ignored.
    #[arg(long, value_name = "FILE", help_heading = IGNORED, help = help(&names::API_TLS_KEY, "Ignored: det-agent serves no agent API", None))]
    pub tls_key: Option<String>,
    /// `container_runtime` of Determined's agent: accepted and ignored.
    #[arg(long, value_name = "RUNTIME", help_heading = IGNORED, help = help(&names::CONTAINER_RUNTIME, "Ignored: det-agent starts no containers", None))]
    pub container_runtime: Option<String>,
    /// `log.level`, from the command line's global `-l`/`--log-level` flag.
    #[arg(skip)]
    pub log_level: Option<String>,
    /// `log.color`, from the command line's global `--log-color` flag.
    #[arg(skip)]
    pub log_color: Option<String>,
}

/// The help heading of Determined's agent options that det-agent ignores.
const IGNORED: &str = "Options of Determined's agent, accepted and ignored";

/// A flag's help: what it sets, its default when there is one, its variable.
fn help(opt: &Opt, what: &str, default: Option<String>) -> String {
    match default {
        Some(default) => format!("{what} [default: {default}] [env: {}]", opt.env),
        None => format!("{what} [env: {}]", opt.env),
    }
}
