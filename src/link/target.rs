//! What a link dials and how it registers, fixed for one configuration generation.

use super::protocol::Device;
use super::LinkSettings;
use crate::config::Config;
use crate::dial::{Dialer, ProxyEnv, Timeouts};
use crate::tls::{TlsClient, TlsSetupError};

/// Everything fixed for one configuration generation. Build a new one when the
/// configuration changes: its TLS client (and so its session cache) is new.
#[derive(Clone, Debug)]
pub struct Target {
    /// The checked configuration.
    pub config: Config,
    /// How the master is reached.
    pub dialer: Dialer,
    /// Limits.
    pub settings: LinkSettings,
    /// The devices `AgentStarted` reports.
    pub devices: Vec<Device>,
}

/// What the master knows this agent by: if any of it changes, a reconnect is a new
/// registration, which the master refuses to merge with the old one (`AgentShutdown`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// `agent_id`.
    pub agent_id: String,
    /// The pool joined (`default` when unset).
    pub resource_pool: String,
    /// The devices reported.
    pub devices: Vec<Device>,
}

impl Target {
    /// Builds the TLS client for `config`. The message limit is the configuration's
    /// `max_message_size`, whatever `settings` says. It reports no devices until given
    /// them with [`with_devices`](Self::with_devices) (`daemon::load` detects them as the
    /// configuration's `slot_type` says).
    ///
    /// # Errors
    /// rustls refused the configuration (e.g. the client certificate).
    pub fn new(config: Config, proxy: ProxyEnv, settings: LinkSettings) -> Result<Target, TlsSetupError> {
        let tls = config.tls.as_ref().map(TlsClient::new).transpose()?;
        Ok(Target::with_client(config, tls, proxy, settings))
    }

    /// Like [`new`](Self::new), with a TLS client you built (`None` when TLS is off).
    pub fn with_client(config: Config, tls: Option<TlsClient>, proxy: ProxyEnv, mut settings: LinkSettings) -> Target {
        settings.max_message_size = config.max_message_size;
        let timeouts = Timeouts { connect: settings.connect_timeout, handshake: settings.handshake_timeout };
        let dialer = Dialer::new(&config, tls, proxy, timeouts);
        Target { config, dialer, settings, devices: Vec::new() }
    }

    /// The same target reporting `devices` (for a caller that detects them itself).
    pub fn with_devices(mut self, devices: Vec<Device>) -> Target {
        self.devices = devices;
        self
    }

    /// `host:port` as dialed, IPv6 bracketed.
    pub fn authority(&self) -> String {
        self.dialer.authority()
    }

    /// The pool this agent joins: `resource_pool`, or `default` when it is empty (the
    /// master's choice for an empty one).
    pub fn resource_pool(&self) -> &str {
        match self.config.resource_pool.as_str() {
            "" => "default",
            pool => pool,
        }
    }

    /// What the master knows this agent by.
    pub fn registration(&self) -> Registration {
        Registration {
            agent_id: self.config.agent_id.clone(),
            resource_pool: self.resource_pool().to_owned(),
            devices: self.devices.clone(),
        }
    }

    /// The path and query of `/agents` for this agent, every value URL-encoded.
    pub fn agents_path(&self, reconnect: bool) -> String {
        let c = &self.config;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("id", &c.agent_id)
            .append_pair("version", env!("CARGO_PKG_VERSION"))
            .append_pair("resource_pool", &c.resource_pool)
            .append_pair("reconnect", if reconnect { "true" } else { "false" })
            .append_pair("hostname", &hostname())
            .finish();
        format!("/agents?{query}")
    }

    /// The websocket URL of `/agents` for this agent.
    pub fn agents_url(&self, reconnect: bool) -> String {
        let scheme = if self.dialer.tls() { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.authority(), self.agents_path(reconnect))
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
