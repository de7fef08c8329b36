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
}

/// A flag's help: what it sets, its default when there is one, its variable.
fn help(opt: &Opt, what: &str, default: Option<String>) -> String {
    match default {
        Some(default) => format!("{what} [default: {default}] [env: {}]", opt.env),
        None => format!("{what} [env: {}]", opt.env),
    }
}
