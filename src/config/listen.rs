//! `metrics.listen`: where the metrics endpoint listens, parsed with errors that say how
//! to write it. Binding it is the metrics endpoint's job (the `metrics` module).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The example every error suggests.
const EXAMPLE: &str = "127.0.0.1:9464";

/// A checked `metrics.listen` value: an IP address and a port other than 0.
///
/// Parse it with `str::parse` (flag, environment variable or YAML string alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Listen(SocketAddr);

impl Listen {
    /// The address to bind.
    pub fn addr(&self) -> SocketAddr {
        self.0
    }

    /// Whether only this host can reach it. The endpoint has no authentication, so a
    /// daemon listening elsewhere should say so in its log.
    pub fn is_loopback(&self) -> bool {
        self.0.ip().is_loopback()
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<SocketAddr> for Listen {
    /// For code and tests that already hold an address; port 0 binds a free port.
    fn from(addr: SocketAddr) -> Self {
        Listen(addr)
    }
}

/// Why a `metrics.listen` value was refused. The message starts with "expected", so it
/// reads well after the configuration's "`metrics.listen` (origin): "VALUE" is not valid: ".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// Nothing was given.
    #[error("expected an IP address and a port such as {EXAMPLE}; to turn metrics off, remove the setting")]
    Empty,
    /// Only a port (`9464` or `:9464`).
    #[error("expected an IP address before the port: {EXAMPLE} serves this host only, 0.0.0.0:{port} every interface (the endpoint has no authentication)")]
    NoAddress {
        /// The port that was given.
        port: String,
    },
    /// An IP address without a port.
    #[error("expected a port after the address, such as {}", with_port(*ip))]
    NoPort {
        /// The address that was given.
        ip: IpAddr,
    },
    /// A host name instead of an IP address.
    #[error("expected an IP address, not a host name (it would be resolved once, at start); write 127.0.0.1:{port} for this host only, or [::1]:{port} for IPv6")]
    HostName {
        /// The port that was given.
        port: u16,
    },
    /// An IPv6 address without brackets.
    #[error("expected an IPv6 address in brackets before the port, such as [::1]:9464")]
    Ipv6Brackets,
    /// The port is not a number from 1 to 65535.
    #[error("expected a port from 1 to 65535 after the address")]
    BadPort,
    /// Port 0, which would pick a random port no scraper knows.
    #[error(
        "expected a fixed port: port 0 picks a random one that Prometheus cannot know; choose one such as {EXAMPLE}"
    )]
    PortZero,
    /// Anything else.
    #[error("expected an IP address and a port such as {EXAMPLE} or [::1]:9464")]
    Malformed,
}

fn with_port(ip: IpAddr) -> String {
    SocketAddr::new(ip, 9464).to_string()
}

impl FromStr for Listen {
    type Err = ListenError;

    fn from_str(text: &str) -> Result<Listen, ListenError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(ListenError::Empty);
        }
        if let Ok(addr) = text.parse::<SocketAddr>() {
            return if addr.port() == 0 { Err(ListenError::PortZero) } else { Ok(Listen(addr)) };
        }
        // Not IP:PORT: find out what the operator meant, to say how to write it.
        let bare = text.strip_prefix(':').unwrap_or(text);
        if !bare.is_empty() && bare.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ListenError::NoAddress { port: bare.to_owned() });
        }
        if let Ok(ip) = text.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Err(ListenError::NoPort { ip });
        }
        let ipv6_like = text.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if ipv6_like && text.matches(':').count() > 1 {
            return Err(ListenError::Ipv6Brackets);
        }
        let Some((host, port)) = text.rsplit_once(':') else { return Err(ListenError::Malformed) };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.parse::<IpAddr>().is_ok() {
            return Err(ListenError::BadPort);
        }
        let is_name = !host.is_empty()
            && host
                .split('.')
                .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        match port.parse::<u16>() {
            Ok(port) if is_name && port != 0 => Err(ListenError::HostName { port }),
            _ => Err(ListenError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        text.parse::<Listen>().unwrap_err().to_string()
    }

    #[test]
    fn accepts_ip_and_port() {
        assert_eq!("127.0.0.1:9464".parse::<Listen>().unwrap().addr(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(" [::1]:9100 ".parse::<Listen>().unwrap().to_string(), "[::1]:9100");
        assert!("[::1]:9100".parse::<Listen>().unwrap().is_loopback());
        assert!(!"0.0.0.0:9100".parse::<Listen>().unwrap().is_loopback());
    }

    #[test]
    fn refusals_say_how_to_write_it() {
        assert_eq!(err(""), ListenError::Empty.to_string());
        assert_eq!(
            err("9464"),
            "expected an IP address before the port: 127.0.0.1:9464 serves this host only, 0.0.0.0:9464 every interface (the endpoint has no authentication)"
        );
        assert_eq!(err(":9100"), ListenError::NoAddress { port: "9100".into() }.to_string());
        assert_eq!(err("127.0.0.1"), "expected a port after the address, such as 127.0.0.1:9464");
        assert_eq!(err("::1"), "expected a port after the address, such as [::1]:9464");
        assert_eq!(err("[::1]"), "expected a port after the address, such as [::1]:9464");
        assert!(err("localhost:9100").contains("not a host name") && err("localhost:9100").contains("127.0.0.1:9100"));
        assert_eq!(err("metrics.example.com:9100"), ListenError::HostName { port: 9100 }.to_string());
        assert_eq!(err("2001:db8:0:0:0:0:0:1:9464"), ListenError::Ipv6Brackets.to_string());
        // Without brackets, "::1:9464" is a complete IPv6 address: the hint shows how it was read.
        assert_eq!(err("::1:9464"), "expected a port after the address, such as [::1:9464]:9464");
        assert_eq!(err("127.0.0.1:70000"), ListenError::BadPort.to_string());
        assert_eq!(err("127.0.0.1:http"), ListenError::BadPort.to_string());
        assert_eq!(err("127.0.0.1:0"), ListenError::PortZero.to_string());
        assert_eq!(err("http://127.0.0.1:9464"), ListenError::Malformed.to_string());
        assert_eq!(err("\u{1b}[2J:1"), ListenError::Malformed.to_string());
        // No message repeats the value: the configuration's error already shows it.
        assert!(!err("localhost:9100").contains("localhost"));
    }
}
