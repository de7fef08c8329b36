//! How a link attempt fails, and how a registered link ends: typed values whose `Display`
//! explains in words what happened and what to do.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio_tungstenite::tungstenite;

use super::protocol::{is_past_reconnect, DecodeError};
use super::refusal::Refusal;
use crate::dial::DialFailure;
use crate::text::{escape, seconds};
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
    /// A stage after the TLS handshake did not finish in time.
    #[error("{stage} with {address} timed out after {}; the master may be overloaded (it is tried again)", seconds(*.after))]
    Timeout { stage: Stage, address: SocketAddr, after: Duration },
    /// The master refused the websocket upgrade.
    #[error("the master at {address} refused the websocket upgrade to /agents with HTTP {status}: {refusal}")]
    Upgrade { address: SocketAddr, status: u16, refusal: Refusal },
    /// The master says this agent was away too long to reattach; register afresh.
    #[error("the master says this agent is past its reconnect period and must register afresh ({said_in})")]
    PastReconnect { said_in: SaidIn },
    /// The connection broke after the TLS handshake, before the agent registered.
    #[error("the connection to {address} broke during the {stage}: {error}")]
    Broken { address: SocketAddr, stage: Stage, error: std::io::Error },
    /// The master spoke something other than the agent protocol.
    #[error("the master at {address} {violation}")]
    Protocol { address: SocketAddr, violation: Violation },
}

impl LinkError {
    /// The verifier's explanation, when the master's certificate was refused.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            LinkError::Dial(failure) => failure.error.rejection(),
            LinkError::Tls { error, .. } => error.rejection(),
            _ => None,
        }
    }
}

/// A stage of a connection attempt after the TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// The websocket upgrade: the request, and the master's answer.
    Upgrade,
    /// Waiting for the master's first message, `MasterSetAgentOptions`.
    Options,
    /// Sending `AgentStarted`.
    Register,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Upgrade => "websocket upgrade",
            Stage::Options => "wait for the master's MasterSetAgentOptions",
            Stage::Register => "sending of AgentStarted",
        })
    }
}

/// Where the master said the agent is past its reconnect period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SaidIn {
    /// In the `message` of its HTTP error answer to the upgrade.
    UpgradeAnswer,
    /// In an `AgentShutdown`.
    AgentShutdown,
    /// As the reason of its websocket close.
    CloseReason,
}

impl fmt::Display for SaidIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SaidIn::UpgradeAnswer => "its answer to the websocket upgrade",
            SaidIn::AgentShutdown => "AgentShutdown",
            SaidIn::CloseReason => "the reason of its websocket close",
        })
    }
}

/// How the master broke the agent protocol before registration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// The answer to the upgrade is not HTTP.
    #[error("did not answer the websocket upgrade in HTTP ({0})")]
    NotHttp(&'static str),
    /// `101` without the websocket headers RFC 6455 requires.
    #[error(
        "answered the websocket upgrade with 101 but {0}; is something other than the master (a proxy?) answering?"
    )]
    BadUpgrade(&'static str),
    /// The connection closed before the master answered the upgrade.
    #[error("closed the connection without answering the websocket upgrade")]
    ClosedDuringUpgrade,
    /// The connection ended before `MasterSetAgentOptions`.
    #[error("closed the connection before sending MasterSetAgentOptions")]
    ClosedBeforeOptions,
    /// A websocket close before `MasterSetAgentOptions`.
    #[error("closed the websocket before sending MasterSetAgentOptions{}", close_words(*.code, .reason))]
    CloseBeforeOptions {
        /// The close code, if any.
        code: Option<u16>,
        /// The close reason, as sent.
        reason: String,
    },
    /// `AgentShutdown` instead of `MasterSetAgentOptions` (for another reason than the
    /// reconnect period).
    #[error("sent AgentShutdown instead of MasterSetAgentOptions: {}", escape(.err_msg))]
    ShutdownBeforeOptions {
        /// The master's reason.
        err_msg: String,
    },
    /// Another message first.
    #[error("sent {0} before MasterSetAgentOptions, which must come first")]
    NotOptionsFirst(&'static str),
    /// A frame that is not a message.
    #[error("sent a frame that is not an agent message: {0}")]
    Undecodable(DecodeError),
    /// The websocket broke.
    #[error("broke the websocket before registration: {0}")]
    Websocket(LinkFailure),
}

/// Why a link failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkFailure {
    /// The TCP (or TLS) connection ended without a websocket close.
    #[error("the connection closed without a websocket close")]
    ClosedWithoutClose,
    /// A message or frame over `max_message_size`, refused from its header.
    #[error("the master sent a message of {size} bytes, over the limit of {max} (max_message_size); dropped before reading it")]
    TooLarge {
        /// Its announced size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The websocket framing was broken.
    #[error("the master broke the websocket protocol: {}", escape(&.0.to_string()))]
    Protocol(tungstenite::error::ProtocolError),
    /// TLS failed (e.g. the master sent an alert).
    #[error("TLS failed: {0}")]
    Tls(HandshakeError),
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(std::io::Error),
    /// Writing to the master did not finish in time.
    #[error("{what} to the master took over {}: the master or the path to it is not reading", seconds(*.after))]
    WriteTimedOut {
        /// What was written.
        what: Outgoing,
        /// The limit.
        after: Duration,
    },
    /// A message that cannot be decoded (other than an unknown name, which is ignored).
    #[error("the master sent a message det-agent cannot read: {0}")]
    Undecodable(DecodeError),
    /// Another websocket error.
    #[error("websocket error: {}", escape(&.0.to_string()))]
    Websocket(tungstenite::Error),
}

impl LinkFailure {
    /// Classifies a websocket error.
    pub(super) fn from_ws(error: tungstenite::Error, client_cert: bool) -> LinkFailure {
        use tungstenite::error::CapacityError;
        match error {
            tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                LinkFailure::TooLarge { size, max: max_size }
            }
            tungstenite::Error::Protocol(p) => LinkFailure::Protocol(p),
            tungstenite::Error::Io(io) if io.get_ref().is_some_and(|e| e.is::<rustls::Error>()) => {
                LinkFailure::Tls(HandshakeError::from_io(io, client_cert))
            }
            tungstenite::Error::Io(io) => LinkFailure::Io(io),
            tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => LinkFailure::ClosedWithoutClose,
            other => LinkFailure::Websocket(other),
        }
    }
}

/// What the agent was writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outgoing {
    /// A ping.
    Ping,
    /// A pong (the answer to the master's ping).
    Pong,
    /// A message from the application.
    Message,
}

impl fmt::Display for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outgoing::Ping => "a ping",
            Outgoing::Pong => "a pong",
            Outgoing::Message => "a message",
        })
    }
}

/// How a registered link ended.
#[derive(Debug)]
#[allow(missing_docs)] // Variants are documented; their fields name themselves.
#[non_exhaustive]
pub enum Ended<S> {
    /// The caller's `stop` future completed; the websocket was closed.
    Stopped(S),
    /// The master closed the websocket.
    MasterClosed { code: Option<u16>, reason: String },
    /// The master sent `AgentShutdown`.
    MasterShutdown { err_msg: String },
    /// No frame arrived for this long.
    Silent { after: Duration },
    /// The application did not take the master's messages: the buffer between them
    /// reached its bound, and the link was closed rather than stop reading.
    Overflow { messages: usize, bytes: usize, bound: Bound },
    /// The connection or the protocol broke.
    Failed(LinkFailure),
}

/// Which bound of the inbound buffer was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bound {
    /// `inbound_buffer_messages`.
    Messages(usize),
    /// `inbound_buffer_bytes`.
    Bytes(usize),
}

impl<S> Ended<S> {
    /// The same end, without the output of the caller's `stop`.
    pub fn discard_output(self) -> Ended<()> {
        match self {
            Ended::Stopped(_) => Ended::Stopped(()),
            Ended::MasterClosed { code, reason } => Ended::MasterClosed { code, reason },
            Ended::MasterShutdown { err_msg } => Ended::MasterShutdown { err_msg },
            Ended::Silent { after } => Ended::Silent { after },
            Ended::Overflow { messages, bytes, bound } => Ended::Overflow { messages, bytes, bound },
            Ended::Failed(failure) => Ended::Failed(failure),
        }
    }

    /// Whether the master said, in `AgentShutdown` or as the close reason, that this
    /// agent is past its reconnect period and must register afresh.
    pub fn past_reconnect(&self) -> bool {
        match self {
            Ended::MasterShutdown { err_msg } => is_past_reconnect(err_msg),
            Ended::MasterClosed { reason, .. } => is_past_reconnect(reason),
            _ => false,
        }
    }
}

fn close_words(code: Option<u16>, reason: &str) -> String {
    let mut words = String::new();
    if let Some(code) = code {
        words.push_str(&format!(" (code {code})"));
    }
    if !reason.is_empty() {
        words.push_str(&format!(": {}", escape(reason)));
    }
    words
}

impl<S> fmt::Display for Ended<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Stopped(_) => f.write_str("stopped by the agent"),
            Ended::MasterClosed { code, reason } => {
                write!(f, "the master closed the connection{}", close_words(*code, reason))
            }
            Ended::MasterShutdown { err_msg } => {
                write!(f, "the master told the agent to shut down: {}", escape(err_msg))
            }
            Ended::Silent { after } => write!(
                f,
                "no frame from the master for {} (pings unanswered): the master or the path to it is gone",
                seconds(*after)
            ),
            Ended::Overflow { messages, bytes, bound } => {
                let (what, limit) = match bound {
                    Bound::Messages(n) => ("inbound_buffer_messages", format!("{n} messages")),
                    Bound::Bytes(n) => ("inbound_buffer_bytes", crate::text::bytes(*n as u64)),
                };
                write!(
                    f,
                    "the application fell behind the master: {messages} messages ({}) waited for it, over the bound of {limit} ({what}); the link was closed so that the master sees the agent go, rather than stop reading and answering pings",
                    crate::text::bytes(*bytes as u64)
                )
            }
            Ended::Failed(why) => why.fmt(f),
        }
    }
}
