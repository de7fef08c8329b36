//! A master's address as configured: a DNS name or an IP literal ([`Host`]), and its
//! `host:port` form ([`authority`]). A leaf: config, the dialer and the trust store all
//! name hosts.

use std::fmt;
use std::net::IpAddr;

use rustls_pki_types::{DnsName, ServerName};

/// Why a host cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// Nothing was given.
    #[error("expected a DNS name or an IP address, got an empty value")]
    Empty,
    /// A URL was given.
    #[error("expected a bare host name or IP address, not a URL; drop the scheme and put the port in master_port")]
    Url,
    /// A port was given with the host.
    #[error("expected a host without a port; use {} and put {port} in master_port", crate::text::quoted(.host))]
    WithPort {
        /// The host part.
        host: String,
        /// The port part.
        port: String,
    },
    /// Neither a DNS name nor an IP literal.
    #[error("expected a DNS name (letters, digits, '-' and '.') or an IP address")]
    NotAName,
}

/// A master address: a DNS name or an IP literal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    /// A DNS name, checked for syntax.
    Dns(DnsName<'static>),
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
}

impl Host {
    /// Parses a host as written in configuration: a DNS name, an IP literal, or a
    /// bracketed IPv6 literal.
    ///
    /// # Errors
    /// The expected form, with a hint for the usual mistakes (a URL, a port).
    pub fn parse(text: &str) -> Result<Host, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if text.contains("://") {
            return Err(HostError::Url);
        }
        let unbracketed = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if let Some((host, port)) = text.rsplit_once(':') {
            if !host.contains(':') && port.parse::<u16>().is_ok() {
                return Err(HostError::WithPort { host: host.to_owned(), port: port.to_owned() });
            }
        }
        match DnsName::try_from(text.to_owned()) {
            Ok(name) => Ok(Host::Dns(name)),
            Err(_) => Err(HostError::NotAName),
        }
    }

    /// The name to verify when this host is dialed without `master_cert_name`.
    pub fn server_name(&self) -> ServerName<'static> {
        match self {
            Host::Dns(name) => ServerName::DnsName(name.clone()),
            Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Dns(name) => f.write_str(name.as_ref()),
            Host::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// `host:port`, an IPv6 literal bracketed.
pub fn authority(host: &Host, port: u16) -> String {
    match host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        other => format!("{other}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_with_helpful_errors() {
        assert_eq!(Host::parse("10.0.0.5").unwrap(), Host::Ip("10.0.0.5".parse().unwrap()));
        assert_eq!(Host::parse("[::1]").unwrap(), Host::Ip("::1".parse().unwrap()));
        assert_eq!(Host::parse("fe80::1").unwrap(), Host::Ip("fe80::1".parse().unwrap()));
        assert!(matches!(Host::parse("master.example.com").unwrap(), Host::Dns(_)));
        assert!(Host::parse("https://m.example.com").unwrap_err().to_string().contains("not a URL"));
        assert!(Host::parse("m.example.com:8443").unwrap_err().to_string().contains("put 8443 in master_port"));
        assert!(Host::parse("bad host").is_err());
        assert!(Host::parse("").is_err());
    }
}
