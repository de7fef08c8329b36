//! Why a dial gave no connection.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::proxy::ProxyError;
use super::Attempt;
use crate::config::{DEFAULT_PLAIN_PORT, DEFAULT_TLS_PORT};
use crate::text::seconds;
use crate::tls::{HandshakeError, Rejection};

/// A dial that gave no connection: why, and every address tried.
#[derive(Debug)]
pub struct DialFailure {
    /// Every address tried, in order.
    pub attempts: Vec<Attempt>,
    /// Why the dial ended without a connection.
    pub error: DialError,
}

/// Why a dial ended without a connection.
#[derive(Debug)]
#[non_exhaustive]
pub enum DialError {
    /// The master's (or the proxy's) name did not resolve.
    Resolve {
        /// The name.
        host: String,
        /// Whether it was the proxy's.
        via_proxy: bool,
        /// Why.
        cause: ResolveError,
    },
    /// No address accepted a TCP connection (the attempts say why, address by address).
    Unreachable {
        /// `host:port`, or the proxy.
        target: String,
        /// Whether `target` is the proxy.
        via_proxy: bool,
    },
    /// The proxy refused or broke the tunnel.
    Proxy {
        /// The proxy (credentials never shown).
        proxy: String,
        /// What went wrong.
        error: ProxyError,
    },
    /// The TLS handshake failed; with a certificate the verifier refused, the error
    /// carries the full explanation.
    Tls {
        /// Where.
        address: SocketAddr,
        /// Why.
        error: HandshakeError,
    },
    /// The TLS handshake did not finish in time.
    TlsTimeout {
        /// Where.
        address: SocketAddr,
        /// The limit.
        after: Duration,
    },
}

/// Why a name gave no addresses.
#[derive(Debug)]
#[non_exhaustive]
pub enum ResolveError {
    /// The system resolver's error (no such name, no name server).
    Failed(std::io::Error),
    /// No answer within the limit (the connect timeout).
    TimedOut(Duration),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Failed(error) => error.fmt(f),
            ResolveError::TimedOut(after) => write!(f, "no answer from the resolver after {}", seconds(*after)),
        }
    }
}

impl std::error::Error for ResolveError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResolveError::Failed(error) => Some(error),
            ResolveError::TimedOut(_) => None,
        }
    }
}

impl DialError {
    /// The verifier's explanation, when the master's certificate was refused.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            DialError::Tls { error, .. } => error.rejection(),
            _ => None,
        }
    }
}

impl fmt::Display for DialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DialError::Resolve { host, via_proxy, cause } => {
                let whose = if *via_proxy { "the proxy " } else { "" };
                write!(f, "cannot resolve {whose}{host}: {cause}")?;
                if let ResolveError::TimedOut(_) = cause {
                    write!(f, "; check the resolver (/etc/resolv.conf) and that the name server answers, or use an IP address")?;
                }
                Ok(())
            }
            DialError::Unreachable { target, via_proxy: true } => {
                write!(f, "cannot connect to the proxy {target} at any of its addresses; is it running?")
            }
            DialError::Unreachable { target, via_proxy: false } => write!(
                f,
                "cannot connect to {target} at any of its addresses; is the master running, and is this its port (the master listens on {DEFAULT_TLS_PORT} with TLS, {DEFAULT_PLAIN_PORT} without)?"
            ),
            DialError::Proxy { error, .. } => error.fmt(f),
            DialError::Tls { address, error } => write!(f, "TLS handshake with {address} failed: {error}"),
            DialError::TlsTimeout { address, after } => write!(
                f,
                "TLS handshake with {address} timed out after {}; is this port the master's TLS port, and is TLS on there?",
                seconds(*after)
            ),
        }
    }
}

impl fmt::Display for DialFailure {
    /// The error, then (when no address was reached) what happened at each address.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)?;
        if matches!(self.error, DialError::Unreachable { .. }) {
            let tried: Vec<String> = self.attempts.iter().map(|a| format!("{} ({})", a.address, a.outcome)).collect();
            write!(f, " Tried: {}", tried.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for DialFailure {}
