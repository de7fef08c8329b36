//! HTTP proxies, as the Go agent's websocket dialer uses them: `HTTPS_PROXY` for `wss://`,
//! `HTTP_PROXY` for `ws://` (upper case first, then lower case), `NO_PROXY` for
//! exceptions, loopback never proxied. The tunnel is an HTTP `CONNECT`; TLS and the
//! master's verification then run end to end through it, never with the proxy.
//!
//! tungstenite has no proxy support and the proxy crates bring their own HTTP clients,
//! so this is written out: an environment reader, a `NO_PROXY` matcher and one request.

use std::fmt;
use std::net::IpAddr;

use data_encoding::BASE64;
use percent_encoding::percent_decode_str;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{read_head, Read};
use crate::config::Host;
use crate::text::{escape, seconds};

/// Largest CONNECT response head accepted.
const MAX_HEAD: usize = 16 * 1024;

/// A proxy variable that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{variable}=\"{}\" cannot be used: {why}; expected http://[user:password@]host[:port]", escape(.value))]
pub struct ProxyConfigError {
    /// The variable, e.g. `HTTPS_PROXY`.
    pub variable: &'static str,
    /// Its value.
    pub value: String,
    /// What is wrong with it.
    pub why: String,
}

/// The proxy did not give a tunnel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The CONNECT request could not be sent.
    #[error("proxy {proxy}: cannot send CONNECT: {source}")]
    Send {
        /// The proxy.
        proxy: String,
        /// The write error.
        source: std::io::Error,
    },
    /// Reading the answer failed.
    #[error("proxy {proxy}: reading its answer to CONNECT: {source}")]
    Read {
        /// The proxy.
        proxy: String,
        /// The read error.
        source: std::io::Error,
    },
    /// The proxy closed the connection without answering.
    #[error("proxy {proxy} closed the connection instead of answering CONNECT {target}")]
    Closed {
        /// The proxy.
        proxy: String,
        /// The tunnel asked for.
        target: String,
    },
    /// The answer is not HTTP, or its head is too long.
    #[error("proxy {proxy} did not answer CONNECT with HTTP ({what})")]
    NotHttp {
        /// The proxy.
        proxy: String,
        /// What was wrong.
        what: &'static str,
    },
    /// The proxy refused the tunnel.
    #[error("proxy {proxy} refused CONNECT {target}: HTTP {status} {}{}", escape(.reason), refusal_hint(*.status))]
    Refused {
        /// The proxy.
        proxy: String,
        /// The tunnel asked for.
        target: String,
        /// The HTTP status.
        status: u16,
        /// The proxy's reason phrase, as sent.
        reason: String,
    },
    /// Bytes arrived after the answer, before TLS started.
    #[error("proxy {proxy} sent data after its CONNECT answer, before the master could speak TLS")]
    DataAfterAnswer {
        /// The proxy.
        proxy: String,
    },
    /// No answer in time.
    #[error("the proxy did not answer CONNECT within {}", seconds(*.after))]
    Timeout {
        /// The limit.
        after: std::time::Duration,
    },
}

fn refusal_hint(status: u16) -> &'static str {
    match status {
        407 => "; the proxy wants credentials: put them in the proxy URL, http://user:password@host:port",
        403 => "; the proxy's rules forbid this destination (ports other than 443 are often refused): ask for the master's port to be allowed, or add the master to NO_PROXY",
        _ => "",
    }
}

/// The proxy settings read from the environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    https: Option<Proxy>,
    http: Option<Proxy>,
    no_proxy: Vec<String>,
}

/// One HTTP proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Host name or IP literal (unbracketed).
    pub host: String,
    /// Port.
    pub port: u16,
    /// The variable it came from, for messages.
    pub source: &'static str,
    authorization: Option<String>,
}

// Never print credentials.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = if self.authorization.is_some() { "<credentials>@" } else { "" };
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(ip)) => write!(f, "http://{auth}[{ip}]:{} (from {})", self.port, self.source),
            _ => write!(f, "http://{auth}{}:{} (from {})", self.host, self.port, self.source),
        }
    }
}

impl ProxyEnv {
    /// No proxy at all.
    pub fn none() -> ProxyEnv {
        ProxyEnv::default()
    }

    /// Reads `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (each also in lower case) through
    /// `env`. Empty values count as unset.
    ///
    /// # Errors
    /// A proxy URL that cannot be used, naming the variable and the accepted form.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<ProxyEnv, ProxyConfigError> {
        let get = |upper: &'static str, lower: &'static str| {
            [upper, lower].into_iter().find_map(|name| env(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v)))
        };
        let https = get("HTTPS_PROXY", "https_proxy").map(|(n, v)| Proxy::parse(n, &v)).transpose()?;
        let http = get("HTTP_PROXY", "http_proxy").map(|(n, v)| Proxy::parse(n, &v)).transpose()?;
        let no_proxy = get("NO_PROXY", "no_proxy")
            .map(|(_, v)| v.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).collect())
            .unwrap_or_default();
        Ok(ProxyEnv { https, http, no_proxy })
    }

    /// The proxy to reach `host:port` through, if any.
    pub fn proxy_for(&self, tls: bool, host: &Host, port: u16) -> Option<&Proxy> {
        let proxy = if tls { self.https.as_ref() } else { self.http.as_ref() }?;
        if is_loopback(host) || self.no_proxy.iter().any(|entry| no_proxy_matches(entry, host, port)) {
            return None;
        }
        Some(proxy)
    }
}

impl Proxy {
    /// Parses `[http://][user:password@]host[:port]`, as Go does (no scheme means http).
    ///
    /// # Errors
    /// Another scheme, a path, or an unusable host or port.
    pub fn parse(source: &'static str, text: &str) -> Result<Proxy, ProxyConfigError> {
        let bad = |why: &str| ProxyConfigError { variable: source, value: text.to_owned(), why: why.to_owned() };
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(&format!("det-agent only tunnels through http:// proxies, not {scheme}://")))
            }
            None => text,
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(bad("a proxy URL has no path, query or fragment"));
        }
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("no host"))?;
        let port = match port {
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port is not 1 to 65535"))?,
            None => 80,
        };
        let authorization = userinfo.map(|userinfo| {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            format!("Basic {}", BASE64.encode(format!("{}:{}", decode(user), decode(password)).as_bytes()))
        });
        Ok(Proxy { host: host.to_owned(), port, source, authorization })
    }

    /// Asks the proxy, already connected on `tcp`, for a tunnel to `target` (`host:port`,
    /// IPv6 bracketed). On success `tcp` carries bytes to and from the target.
    ///
    /// # Errors
    /// The proxy refused (its status line, with a hint for 403 and 407) or did not speak
    /// HTTP.
    pub async fn connect(&self, tcp: &mut TcpStream, target: &str) -> Result<(), ProxyError> {
        let proxy = self.to_string();
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(auth) = &self.authorization {
            request.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        request.push_str("\r\n");
        if let Err(source) = tcp.write_all(request.as_bytes()).await {
            return Err(ProxyError::Send { proxy, source });
        }
        let (head, end) = match read_head(tcp, MAX_HEAD).await {
            Ok(Read::Complete { bytes, end }) => (bytes, end),
            Ok(Read::ClosedEmpty | Read::ClosedInside) => {
                return Err(ProxyError::Closed { proxy, target: target.to_owned() })
            }
            Ok(Read::TooLong) => return Err(ProxyError::NotHttp { proxy, what: "its answer head is over 16 KiB" }),
            Err(source) => return Err(ProxyError::Read { proxy, source }),
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&head[..end]) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(ProxyError::NotHttp { proxy, what: "no valid status line and headers" }),
        }
        let status = response.code.unwrap_or(0);
        if !(200..300).contains(&status) {
            let reason = response.reason.unwrap_or("").to_owned();
            return Err(ProxyError::Refused { proxy, target: target.to_owned(), status, reason });
        }
        if head.len() > end {
            // Nothing may arrive before we speak TLS; bytes here would be lost or forged.
            return Err(ProxyError::DataAfterAnswer { proxy });
        }
        Ok(())
    }
}

fn split_host_port(hostport: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':');
        return (!host.is_empty() && (after.is_empty() || port.is_some())).then_some((host, port));
    }
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (hostport, None),
    };
    (!host.is_empty()).then_some((host, port))
}

fn is_loopback(host: &Host) -> bool {
    match host {
        Host::Ip(ip) => ip.is_loopback(),
        Host::Dns(name) => name.as_ref().eq_ignore_ascii_case("localhost"),
    }
}

/// One `NO_PROXY` entry against the destination, with Go's rules: `*` matches all; an IP
/// or CIDR matches addresses; `example.com` matches it and its subdomains, `.example.com`
/// only subdomains; an optional `:port` must then match too.
fn no_proxy_matches(entry: &str, host: &Host, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    if let Some((net, bits)) = entry.split_once('/') {
        let (Ok(net), Ok(bits), Host::Ip(ip)) = (net.parse::<IpAddr>(), bits.parse::<u32>(), host) else {
            return false;
        };
        return in_cidr(*ip, net, bits);
    }
    let (name, entry_port) = match split_host_port(entry) {
        Some((name, Some(p))) => (name, p.parse::<u16>().ok()),
        Some((name, None)) => (name, None),
        None => return false,
    };
    if entry_port.is_some_and(|p| p != port) {
        return false;
    }
    match host {
        Host::Ip(ip) => name.parse::<IpAddr>().is_ok_and(|n| n == *ip),
        Host::Dns(dns) => {
            let dns = dns.as_ref().to_ascii_lowercase();
            let dns = dns.trim_end_matches('.');
            match name.strip_prefix('.') {
                Some(suffix) => dns.ends_with(&format!(".{suffix}")),
                None => dns == name || dns.ends_with(&format!(".{name}")),
            }
        }
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<ProxyEnv, ProxyConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ProxyEnv::from_env(&move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    fn host(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[test]
    fn picks_the_proxy_by_scheme_upper_case_first() {
        let e = env(&[("HTTPS_PROXY", "http://p1:3128"), ("https_proxy", "p2:1"), ("http_proxy", "p3")]).unwrap();
        assert_eq!(e.proxy_for(true, &host("m.example.com"), 8443).unwrap().host, "p1");
        let plain = e.proxy_for(false, &host("m.example.com"), 8080).unwrap();
        assert_eq!((plain.host.as_str(), plain.port, plain.source), ("p3", 80, "http_proxy"));
        assert!(env(&[("HTTPS_PROXY", "")]).unwrap().proxy_for(true, &host("m"), 1).is_none());
    }

    #[test]
    fn loopback_and_no_proxy_entries_bypass() {
        let e = env(&[
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("NO_PROXY", "internal.example.com, .corp.example, 10.0.0.0/8, 192.168.1.5, fd00::/8, m.example.org:9443"),
        ])
        .unwrap();
        let direct = |h: &str, port| e.proxy_for(true, &host(h), port).is_none();
        assert!(direct("127.0.0.1", 8443) && direct("::1", 8443) && direct("localhost", 8443));
        assert!(direct("internal.example.com", 1) && direct("a.internal.example.com", 1));
        assert!(!direct("xinternal.example.com", 1));
        assert!(direct("a.corp.example", 1) && !direct("corp.example", 1));
        assert!(direct("10.1.2.3", 1) && !direct("11.1.2.3", 1));
        assert!(direct("192.168.1.5", 1) && !direct("192.168.1.6", 1));
        assert!(direct("fd12::1", 1) && !direct("fe80::1", 1));
        assert!(direct("m.example.org", 9443) && !direct("m.example.org", 8443));
        assert!(!direct("master.example.com", 8443));
        assert!(env(&[("HTTPS_PROXY", "proxy:1"), ("no_proxy", "*")])
            .unwrap()
            .proxy_for(true, &host("x"), 1)
            .is_none());
    }

    #[test]
    fn proxy_urls_are_parsed_like_go_and_credentials_never_printed() {
        let p = Proxy::parse("HTTPS_PROXY", "http://us%40er:p%3Ass@[fd00::1]:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("fd00::1", 3128));
        assert_eq!(p.authorization.as_deref(), Some(format!("Basic {}", BASE64.encode(b"us@er:p:ss")).as_str()));
        assert_eq!(p.to_string(), "http://<credentials>@[fd00::1]:3128 (from HTTPS_PROXY)");
        assert!(!format!("{p:?}").contains("p:ss"));
        for (bad, why) in [
            ("https://proxy:443", "only tunnels through http://"),
            ("socks5://proxy:1080", "not socks5://"),
            ("http://proxy:0", "port"),
            ("http://proxy:99999", "port"),
            ("http://proxy/path", "no path"),
            ("http://", "no host"),
        ] {
            let err = Proxy::parse("HTTPS_PROXY", bad).unwrap_err().to_string();
            assert!(err.contains(why) && err.contains("HTTPS_PROXY"), "{bad}: {err}");
        }
    }
}
