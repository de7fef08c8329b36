//! Master addresses as the `det` CLI takes them (`-m`, `DET_MASTER`), canonicalized
//! exactly as it does: the canonical form is the key of the trust store both tools share.

use std::fmt;
use std::net::IpAddr;

use crate::host::Host;

/// A master URL in canonical form: explicit scheme and port, lower-case host, no
/// trailing `/`, no user, password, query or fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterUrl {
    /// Whether the scheme is `https`.
    pub tls: bool,
    /// The host, lower-cased.
    pub host: Host,
    /// The port: as given, else 443 for `https://`, 80 for `http://`, 8080 for a bare host.
    pub port: u16,
    /// A path prefix the master is served under (rare), without a trailing `/`.
    pub path: String,
}

const FORMS: &str = "expected https://HOST[:PORT] (port 443 when omitted), http://HOST[:PORT] (port 80), \
                     or HOST[:PORT] (taken as http://, port 8080); an IPv6 address goes in brackets: https://[fd00::1]:8443";

impl MasterUrl {
    /// Parses and canonicalizes a master address as `det -m` does.
    ///
    /// # Errors
    /// What is wrong and the forms expected.
    pub fn parse(text: &str) -> Result<MasterUrl, String> {
        let invalid = |why: &str| format!("invalid master address {}: {why}; {FORMS}", crate::text::quoted(text));
        let (tls, default_port, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, 443, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, 80, rest)
        } else if let Some((scheme, _)) = text.split_once("://") {
            return Err(invalid(&format!(
                "the scheme {} is not http or https (schemes are lower case)",
                crate::text::quoted(scheme)
            )));
        } else {
            (false, 8080, text)
        };
        // Query and fragment: like the CLI, an empty one is dropped, any other refused.
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, authority),
        };
        if !query.is_empty() || !fragment.is_empty() || userinfo.is_some_and(|u| !u.is_empty() && u != ":") {
            return Err(invalid("a master address must not contain a user name, password, query or fragment"));
        }
        let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
            let (inside, after) = bracketed.split_once(']').ok_or_else(|| invalid("an unclosed '['"))?;
            let ip: std::net::Ipv6Addr =
                inside.parse().map_err(|_| invalid("the bracketed host is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| invalid("text after ']' that is not :PORT"))?),
            };
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            };
            if port.is_some_and(|p| p.contains(':')) {
                return Err(invalid("an IPv6 address must be written in brackets"));
            }
            if host.is_empty() {
                return Err(invalid("a master address must contain a non-empty host name"));
            }
            (Host::parse(&host.to_ascii_lowercase()).map_err(|e| invalid(&e.to_string()))?, port)
        };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => port,
                _ => return Err(invalid(&format!("{} is not a port from 1 to 65535", crate::text::quoted(p)))),
            },
        };
        Ok(MasterUrl { tls, host, port, path: path.trim_end_matches('/').to_owned() })
    }

    /// The URL for an agent's own `master_host`/`master_port`.
    pub fn for_agent(host: &Host, port: u16, tls: bool) -> MasterUrl {
        let host = match host {
            Host::Dns(name) => Host::parse(&name.as_ref().to_ascii_lowercase()).unwrap_or_else(|_| host.clone()),
            ip => ip.clone(),
        };
        MasterUrl { tls, host, port, path: String::new() }
    }

    /// The key of the shared trust store, byte for byte as the `det` CLI writes it. The
    /// CLI drops the brackets of an IPv6 host (`https://fd00::1:8443`); so does this, or
    /// the two tools would not find each other's entries.
    pub fn store_key(&self) -> String {
        format!("{}://{}:{}{}", self.scheme(), self.host, self.port, self.path)
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// A URL to print and dial: like [`MasterUrl::store_key`], with IPv6 hosts bracketed.
impl fmt::Display for MasterUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), crate::host::authority(&self.host, self.port), self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_match_the_cli() {
        for (input, key) in [
            ("host", "http://host:8080"),
            ("host:99", "http://host:99"),
            ("http://host", "http://host:80"),
            ("https://host", "https://host:443"),
            ("http://host/", "http://host:80"),
            ("http://host:99/", "http://host:99"),
            ("http://host:99/path", "http://host:99/path"),
            ("http://host:99/path/", "http://host:99/path"),
            ("http://@host:8080", "http://host:8080"),
            ("https://Master.Example.COM:8443", "https://master.example.com:8443"),
            ("https://[FD00::1]:8443", "https://fd00::1:8443"),
            ("[::1]", "http://::1:8080"),
            ("10.0.0.5:8443", "http://10.0.0.5:8443"),
            ("https://host?#", "https://host:443"),
        ] {
            let url = MasterUrl::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(url.store_key(), key, "{input}");
        }
        assert_eq!(MasterUrl::parse("https://[fd00::1]").unwrap().to_string(), "https://[fd00::1]:443");
    }

    #[test]
    fn invalid_addresses_say_what_was_expected() {
        for (input, why) in [
            ("http://user@host:8080", "user name, password, query or fragment"),
            ("http://user:pass@host:8080", "user name, password, query or fragment"),
            ("http://host?query=bad", "user name, password, query or fragment"),
            ("http://host#fragment", "user name, password, query or fragment"),
            ("http://:8080", "non-empty host name"),
            ("http://", "non-empty host name"),
            ("ftp://host", "not http or https"),
            ("HTTPS://host", "not http or https"),
            ("fd00::1", "in brackets"),
            ("https://[fd00::1", "unclosed"),
            ("host:99999", "not a port"),
            ("host:0", "not a port"),
            ("host:+1", "not a port"),
            ("bad host", "expected a DNS name"),
        ] {
            let err = MasterUrl::parse(input).unwrap_err();
            assert!(err.contains(why), "{input}: {err}");
            assert!(err.contains("expected https://HOST[:PORT]"), "{err}");
        }
    }
}
