//! Every option's names: its agent.yaml key, its flag and its environment variable, and
//! what its value is, for messages. The flag and the variable follow Determined's agent
//! (`agent/cmd/determined-agent/init.go`): the key's parts joined with `-` (`_` becoming
//! `-`), and `DET_` plus the flag in upper case with `_` for `-`.

/// One option's three names, and what its value is, for the message when it is blank or
/// invalid.
#[derive(Debug)]
pub(super) struct Opt {
    /// The agent.yaml key, dotted (`security.tls.enabled`).
    pub(super) key: &'static str,
    /// The flag (`--security-tls-enabled`).
    pub(super) flag: &'static str,
    /// The environment variable (`DET_SECURITY_TLS_ENABLED`).
    pub(super) env: &'static str,
    /// What a value is, in words (`true or false`).
    pub(super) value: &'static str,
}

macro_rules! opt {
    ($name:ident, $key:literal, $flag:literal, $env:literal, $value:literal) => {
        pub(super) const $name: Opt = Opt { key: $key, flag: $flag, env: $env, value: $value };
    };
}
opt!(CONFIG_FILE, "config_file", "--config-file", "DET_CONFIG_FILE", "the path of a configuration file");
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
opt!(
    CONNECT_TIMEOUT,
    "connect_timeout",
    "--connect-timeout",
    "DET_CONNECT_TIMEOUT",
    "a number of seconds from 1 to 3600"
);
opt!(
    HANDSHAKE_TIMEOUT,
    "handshake_timeout",
    "--handshake-timeout",
    "DET_HANDSHAKE_TIMEOUT",
    "a number of seconds from 1 to 3600"
);
opt!(
    INBOUND_MESSAGES,
    "inbound_buffer_messages",
    "--inbound-buffer-messages",
    "DET_INBOUND_BUFFER_MESSAGES",
    "a whole number of messages from 1 to 1000000"
);
opt!(
    INBOUND_BYTES,
    "inbound_buffer_bytes",
    "--inbound-buffer-bytes",
    "DET_INBOUND_BUFFER_BYTES",
    "a number of bytes from 65536 to 1073741824"
);
opt!(
    CERT_WARNING_DAYS,
    "certificate_warning_days",
    "--certificate-warning-days",
    "DET_CERTIFICATE_WARNING_DAYS",
    "a whole number of days from 0 to 365"
);
opt!(
    CERT_ERROR_DAYS,
    "certificate_error_days",
    "--certificate-error-days",
    "DET_CERTIFICATE_ERROR_DAYS",
    "a whole number of days from 0 to certificate_warning_days"
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
opt!(
    METRICS_LISTEN,
    "metrics.listen",
    "--metrics-listen",
    "DET_METRICS_LISTEN",
    "an IP address and a port such as 127.0.0.1:9464"
);

opt!(LOG_LEVEL, "log.level", "--log-level", "DET_LOG_LEVEL", "a log level: error, warn, info, debug or trace");
opt!(LOG_COLOR, "log.color", "--log-color", "DET_LOG_COLOR", "true or false");
opt!(DEBUG, "debug", "--debug", "DET_DEBUG", "true or false");
opt!(SLOT_TYPE, "slot_type", "--slot-type", "DET_SLOT_TYPE", "one of auto, cuda, gpu, rocm, cpu, none");
opt!(VISIBLE_GPUS, "visible_gpus", "--visible-gpus", "DET_VISIBLE_GPUS", "GPU indices or UUIDs, comma-separated");
opt!(
    ARTIFICIAL_SLOTS,
    "artificial_slots",
    "--artificial-slots",
    "DET_ARTIFICIAL_SLOTS",
    "a whole number of slots from 0 to 4096"
);
opt!(HTTP_PROXY, "http_proxy", "--http-proxy", "DET_HTTP_PROXY", "a proxy URL for tasks");
opt!(HTTPS_PROXY, "https_proxy", "--https-proxy", "DET_HTTPS_PROXY", "a proxy URL for tasks");
opt!(FTP_PROXY, "ftp_proxy", "--ftp-proxy", "DET_FTP_PROXY", "a proxy URL for tasks");
opt!(NO_PROXY, "no_proxy", "--no-proxy", "DET_NO_PROXY", "hosts tasks reach without the proxy, comma-separated");
opt!(
    STATE_FILE,
    "state_file",
    "--state-file",
    "DET_STATE_FILE",
    "the path of the file where the master's identity is kept"
);

// Only in agent.yaml, as in Determined's agent.
opt!(HOOK, "hooks.on_connection_lost", "", "", "a command as a list, program first");

// Determined's agent options det-agent accepts and ignores.
opt!(API_ENABLED, "api_enabled", "--api-enabled", "DET_API_ENABLED", "true or false");
opt!(BIND_IP, "bind_ip", "--bind-ip", "DET_BIND_IP", "an IP address");
opt!(BIND_PORT, "bind_port", "--bind-port", "DET_BIND_PORT", "a TCP port");
opt!(API_TLS, "tls", "--tls", "DET_TLS", "true or false");
opt!(API_TLS_CERT, "tls_cert", "--tls-cert", "DET_TLS_CERT", "a certificate file");
opt!(API_TLS_KEY, "tls_key", "--tls-key", "DET_TLS_KEY", "a key file");
opt!(CONTAINER_RUNTIME, "container_runtime", "--container-runtime", "DET_CONTAINER_RUNTIME", "docker");
opt!(AUTO_REMOVE_DISABLED, "container_auto_remove_disabled", "", "", "true or false");
opt!(FLUENT_IMAGE, "fluent.image", "", "", "a container image");
opt!(FLUENT_CONTAINER_NAME, "fluent.container_name", "", "", "a container name");

/// Every option that has a flag in [`ConfigArgs`](super::ConfigArgs) and an environment
/// variable. (`log.level` and `log.color` have theirs: global flags of the command line.)
#[cfg(test)]
pub(super) const ALL: &[&Opt] = &[
    &CONFIG_FILE,
    &MASTER_HOST,
    &MASTER_PORT,
    &AGENT_ID,
    &RESOURCE_POOL,
    &CONTAINER_HOST,
    &CONTAINER_PORT,
    &ATTEMPTS,
    &BACKOFF,
    &BACKOFF_MAX,
    &MAX_MESSAGE,
    &CONNECT_TIMEOUT,
    &HANDSHAKE_TIMEOUT,
    &INBOUND_MESSAGES,
    &INBOUND_BYTES,
    &CERT_WARNING_DAYS,
    &CERT_ERROR_DAYS,
    &TLS_ENABLED,
    &SKIP_VERIFY,
    &MASTER_CERT,
    &CERT_NAME,
    &KEY_PINS,
    &CLIENT_CERT,
    &CLIENT_KEY,
    &FLUENT_DIR,
    &FLUENT_FORMAT,
    &FLUENT_LISTEN,
    &FLUENT_PORT,
    &FLUENT_FLUSH,
    &METRICS_LISTEN,
    &DEBUG,
    &SLOT_TYPE,
    &VISIBLE_GPUS,
    &ARTIFICIAL_SLOTS,
    &HTTP_PROXY,
    &HTTPS_PROXY,
    &FTP_PROXY,
    &NO_PROXY,
    &STATE_FILE,
    &API_ENABLED,
    &BIND_IP,
    &BIND_PORT,
    &API_TLS,
    &API_TLS_CERT,
    &API_TLS_KEY,
    &CONTAINER_RUNTIME,
];
