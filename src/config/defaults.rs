//! Every default of the configuration, written once: the resolver, [`Config::new`] and
//! the flags' help all read them from here.
//!
//! [`Config::new`]: super::Config::new

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use std::path::Path;

use super::{FluentFormat, LogLevel};
use crate::devices::SlotType;

/// Read when no configuration file is named and this one exists (Determined's own path).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/determined/agent.yaml";

/// The master's TLS port when TLS is on (the master's own default).
pub const DEFAULT_TLS_PORT: u16 = 8443;
/// The master's port when TLS is off.
pub const DEFAULT_PLAIN_PORT: u16 = 8080;

/// The resource pool an agent joins when none is named.
pub const DEFAULT_RESOURCE_POOL: &str = "default";

/// Consecutive failed reconnects before giving up: 0, keep trying.
pub const DEFAULT_RECONNECT_ATTEMPTS: u32 = 0;
/// The reconnect schedule's base delay.
pub const DEFAULT_RECONNECT_BACKOFF: Duration = Duration::from_secs(5);
/// The cap on one reconnect delay.
pub const DEFAULT_RECONNECT_BACKOFF_MAX: Duration = crate::backoff::DEFAULT_CAP;

/// The largest message accepted from the master by default: the master's own limit
/// (Determined's master/pkg/ws/ws.go `maxMessageSize`, 128 MiB).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 << 20;

/// How long one TCP connect to the master (or its proxy) may take, per address: as long
/// as the Go agent's whole websocket handshake (gorilla/websocket's 45 s), so a master
/// busy after a restart is not abandoned.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
/// How long each later stage may take (the proxy's answer, TLS, the upgrade, the
/// master's first message, a write): the Go agent's 45 s.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(45);
/// Messages from the master the application has not taken yet that the link holds
/// before it gives up on the application and reconnects.
pub const DEFAULT_INBOUND_BUFFER_MESSAGES: usize = 1024;
/// The same bound in bytes: one message of the master's largest size.
pub const DEFAULT_INBOUND_BUFFER_BYTES: usize = 128 << 20;

/// A certificate the agent relies on that expires within this many days is warned about,
/// once a day.
pub const DEFAULT_CERT_WARNING_DAYS: u32 = 30;
/// Within this many days, the warning is an error.
pub const DEFAULT_CERT_ERROR_DAYS: u32 = 7;

/// The Fluent Bit configuration format written.
pub const DEFAULT_FLUENT_FORMAT: FluentFormat = FluentFormat::Classic;
/// Address of Fluent Bit's `forward` input: this host only.
pub const DEFAULT_FLUENT_LISTEN: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Fluent Bit's own default for the `forward` input.
pub const DEFAULT_FLUENT_PORT: u16 = 24224;
/// Seconds between Fluent Bit's flushes to the master.
pub const DEFAULT_FLUENT_FLUSH_SECS: u32 = 1;

/// The level logged when none is set and `debug` is off.
pub const DEFAULT_LOG_LEVEL: LogLevel = LogLevel::Info;
/// Colors on (on a terminal only), as Determined's default.
pub const DEFAULT_LOG_COLOR: bool = true;

/// Which devices become slots: NVIDIA GPUs, else AMD GPUs, else the CPU (Determined's
/// default).
pub const DEFAULT_SLOT_TYPE: SlotType = SlotType::Auto;
/// No artificial slots.
pub const DEFAULT_ARTIFICIAL_SLOTS: u32 = 0;

/// Where `det-agent run` records the master's identity for `det-agent task-env`: in the
/// state directory the systemd unit gives det-agent (`StateDirectory=det-agent`).
pub const DEFAULT_STATE_FILE: &str = "/var/lib/det-agent/master.json";

/// [`DEFAULT_STATE_FILE`] as a path.
pub fn default_state_file() -> &'static Path {
    Path::new(DEFAULT_STATE_FILE)
}

/// The hostname, as Determined uses it for the default agent ID (`det-agent` when the
/// host has no name).
pub fn default_agent_id() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    if name.is_empty() {
        "det-agent".to_owned()
    } else {
        name
    }
}

/// A number of seconds as the flags' help shows it: `5`, `2.5`.
pub(super) fn secs(d: Duration) -> String {
    d.as_secs_f64().to_string()
}
