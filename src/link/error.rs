//! How a link attempt fails, and how a registered link ends.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_tungstenite::tungstenite;

use super::PAST_RECONNECT;
use crate::dial::DialFailure;
use crate::tls::{HandshakeError, Rejection};

/// Why [`connect`](super::connect) did not produce a registered link.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; their fields name themselves.
#[non_exhaustive]
pub enum LinkError {
    /// The master could not be reached, or its certificate was refused.
    #[error("{0}")]
    Dial(Box<DialFailure>),
    /// TLS failed after the handshake: under TLS 1.3 a master that refuses the client
    /// certificate says so only when the upgrade is read.
    #[error("TLS with {address} failed after the handshake: {error}")]
    Tls { address: SocketAddr, error: HandshakeError },
    /// A stage did not finish in time.
    #[error("{stage} with {address} timed out after {}{}", crate::text::seconds(*.after), if *.stage == "TLS handshake" { "; is this port the master's TLS port, and is TLS on there?" } else { "" })]
    Timeout { stage: &'static str, address: SocketAddr, after: Duration },
    /// The master refused the websocket upgrade.
    #[error("the master at {address} refused the websocket upgrade to /agents: HTTP {status}{}{}",
        if .body.is_empty() { String::new() } else { format!(": {}", crate::text::escape(.body)) },
        if *.status == 401 || *.status == 403 { "; does the master require a client certificate (security.tls.client_cert / client_key)?" } else { "" })]
    Upgrade { address: SocketAddr, status: u16, body: String },
    /// The master says this agent was away too long to reattach; register afresh.
    #[error("the master says this agent must register afresh: {}", crate::text::escape(.message))]
    PastReconnect { message: String },
    /// The master spoke something other than the agent protocol.
    #[error("master at {address}: {what}")]
    Protocol { address: SocketAddr, what: String },
}

impl LinkError {
    pub(super) fn upgrade(address: SocketAddr, error: tungstenite::Error, client_cert: bool) -> LinkError {
        match error {
            tungstenite::Error::Http(response) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).trim().to_owned())
                    .unwrap_or_default();
                if body.contains(PAST_RECONNECT) {
                    LinkError::PastReconnect { message: body }
                } else {
                    LinkError::Upgrade { address, status, body }
                }
            }
            // Under TLS 1.3 a master that refuses our client certificate says so only
            // after the handshake, so the refusal surfaces here.
            tungstenite::Error::Io(error) if error.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
                LinkError::Tls { address, error: HandshakeError::from_io(error, client_cert) }
            }
            other => LinkError::Protocol { address, what: format!("websocket upgrade failed: {other}") },
        }
    }

    /// The verifier's explanation, when the master's certificate was refused.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            LinkError::Dial(failure) => failure.error.rejection(),
            LinkError::Tls { error, .. } => error.rejection(),
            _ => None,
        }
    }
}

/// How a registered link ended.
#[derive(Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Variants are documented; their fields name themselves.
pub enum Ended<S> {
    /// The caller's `stop` future completed; the websocket was closed.
    Stopped(S),
    /// The master closed the websocket.
    MasterClosed { code: Option<u16>, reason: String },
    /// The master sent `AgentShutdown`.
    MasterShutdown { err_msg: String },
    /// No frame arrived for this long.
    Silent { after: Duration },
    /// The connection or the protocol broke.
    Failed(String),
}

impl<S> fmt::Display for Ended<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Stopped(_) => f.write_str("stopped by the agent"),
            Ended::MasterClosed { code, reason } => {
                write!(f, "the master closed the connection")?;
                if let Some(code) = code {
                    write!(f, " (code {code})")?;
                }
                if !reason.is_empty() {
                    write!(f, ": {}", crate::text::escape(reason))?;
                }
                Ok(())
            }
            Ended::MasterShutdown { err_msg } => {
                write!(f, "the master told the agent to shut down: {}", crate::text::escape(err_msg))
            }
            Ended::Silent { after } => {
                write!(
                    f,
                    "no frame from the master for {} (pings unanswered): the master or the path to it is gone",
                    crate::text::seconds(*after)
                )
            }
            Ended::Failed(why) => f.write_str(why),
        }
    }
}
