//! The master link: one verified websocket to the master's `/agents` endpoint.
//!
//! [`Target`] holds everything fixed for one configuration generation (the checked
//! config, its [`Dialer`](crate::dial::Dialer) with the TLS client and proxy settings,
//! the limits, the devices reported). [`connect`] dials it (see [`crate::dial`]),
//! upgrades to the websocket and registers (`MasterSetAgentOptions` in, `AgentStarted`
//! out); a refusal is explained from what the master answered ([`Refusal`]).
//! [`Link::run`] then keeps the link alive until the master goes away, the link breaks,
//! the application falls too far behind, or the caller stops it ([`Ended`]).

mod connect;
mod error;
pub mod protocol;
mod refusal;
mod run;
mod target;

use std::time::Duration;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use crate::config::DEFAULT_MAX_MESSAGE_SIZE;
pub use crate::dial::{Peer, ProxyEnv, TlsInfo};
pub use connect::connect;
pub use error::{Bound, Ended, LinkError, LinkFailure, Outgoing, SaidIn, Stage, Violation};
pub use protocol::{AgentStarted, Device, FromMaster, MasterInfo, MasterSetAgentOptions, RawJson, ToMaster};
pub use refusal::Refusal;
pub use run::{Link, Tap};
pub use target::{Registration, Target};

/// The Go agent's websocket dialer gives its whole handshake this long (gorilla's
/// `DefaultDialer.HandshakeTimeout`, used by `agent/internal/agent.go`, `connect`).
pub const GO_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(45);

/// Timing and size limits of a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// One TCP connect, per address. Default 45 s: a master whose accept queue overflows
    /// after a restart drops SYNs, which the kernel resends after 1, 3, 7, 15 and 31 s;
    /// a refused connect fails at once whatever this is.
    pub connect_timeout: Duration,
    /// Each of: the proxy's CONNECT answer, the TLS handshake, the websocket upgrade
    /// (request, answer and a refusal's body), the master's first message, sending
    /// `AgentStarted`, and every later write. Default 45 s, the Go agent's, so a master
    /// busy after a restart is not abandoned sooner than the Go agent would.
    pub handshake_timeout: Duration,
    /// How often the agent pings the master. Default 15 s (the master's `pingInterval`).
    pub ping_interval: Duration,
    /// No frame from the master for this long means it is gone. Default 60 s (the
    /// master's `pongWait`).
    pub read_deadline: Duration,
    /// How long the close handshake may take when the agent stops. Default 5 s (the
    /// master's `closeWait`).
    pub close_timeout: Duration,
    /// Largest message (and frame) accepted from the master; larger ones drop the link
    /// before their payload is read. Always the configuration's `max_message_size`.
    pub max_message_size: usize,
    /// Messages from the master the application has not taken (beyond its channel's
    /// capacity) that the link holds before it gives up on the application. Default 1,024.
    pub inbound_buffer_messages: usize,
    /// The same bound in bytes, as received. Default 128 MiB (one message always fits).
    pub inbound_buffer_bytes: usize,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings::limited(&crate::config::LinkLimits::default())
    }
}

impl LinkSettings {
    /// The settings with the configuration's limits (`connect_timeout`,
    /// `handshake_timeout`, the inbound buffer's bounds); the rest are the master's.
    pub fn limited(limits: &crate::config::LinkLimits) -> LinkSettings {
        LinkSettings {
            connect_timeout: limits.connect_timeout,
            handshake_timeout: limits.handshake_timeout,
            ping_interval: Duration::from_secs(15),
            read_deadline: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            inbound_buffer_messages: limits.inbound_buffer_messages,
            inbound_buffer_bytes: limits.inbound_buffer_bytes,
        }
    }
}

impl LinkSettings {
    fn websocket(&self) -> WebSocketConfig {
        let mut ws = WebSocketConfig::default();
        // An idle agent holds one link: a small read buffer keeps it small; messages
        // grow it as needed, up to the limits.
        ws.read_buffer_size = 16 * 1024;
        ws.write_buffer_size = 0;
        // Every send is flushed before the next, so the buffer holds at most one message.
        ws.max_write_buffer_size = self.max_message_size.saturating_add(64 * 1024);
        ws.max_message_size = Some(self.max_message_size);
        ws.max_frame_size = Some(self.max_message_size);
        ws
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_timeouts_are_never_shorter_than_the_go_agents() {
        let s = LinkSettings::default();
        assert_eq!(GO_HANDSHAKE_TIMEOUT, Duration::from_secs(45));
        assert_eq!((s.connect_timeout, s.handshake_timeout), (GO_HANDSHAKE_TIMEOUT, GO_HANDSHAKE_TIMEOUT));
        assert_eq!(
            (s.ping_interval, s.read_deadline, s.close_timeout),
            (Duration::from_secs(15), Duration::from_secs(60), Duration::from_secs(5))
        );
        assert_eq!((s.inbound_buffer_messages, s.inbound_buffer_bytes), (1024, 128 << 20));
        assert!(s.inbound_buffer_bytes >= s.max_message_size);
    }
}
