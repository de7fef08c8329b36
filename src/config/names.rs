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

/// Every option that has a flag and an environment variable.
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
];
