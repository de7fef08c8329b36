//! One way to reach the master, for every command: `run`, `check`, `trust` and
//! `fluent-bit --probe` all dial through [`Dialer::dial`], so on a node behind a proxy
//! the diagnostics and the daemon give the same answer.
//!
//! A dial resolves the master (or the proxy), tries the addresses in turn, asks an HTTP
//! proxy for a CONNECT tunnel when one applies, and runs TLS with the configured
//! verifier and server name. A refused or timed-out TCP connect, or a TLS handshake that
//! fails for another reason than the certificate, moves on to the next address; a
//! certificate the verifier refused ends the dial, since every address is the same
//! master. Every stage is bounded by a timeout (the name lookup and each TCP connect by
//! the connect timeout, the proxy's answer and each handshake by the handshake timeout),
//! and every address tried is reported.

mod error;
pub(crate) mod http;
mod proxy;
mod stream;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName};
use serde::{Serialize, Serializer};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{Config, Host};
use crate::text::seconds;
use crate::tls::{HandshakeError, ReliedOn, TlsClient};
use crate::x509::Fingerprint;

pub use error::{DialError, DialFailure, ResolveError};
pub use proxy::{Proxy, ProxyConfigError, ProxyEnv, ProxyError};
pub use stream::Stream;

/// How long each stage of a dial may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// The name lookup, and one TCP connect (per address).
    pub connect: Duration,
    /// The proxy's CONNECT answer, and the TLS handshake (each, per address).
    pub handshake: Duration,
}

impl Timeouts {
    /// The same limit for every stage (`check --timeout`).
    pub fn all(limit: Duration) -> Timeouts {
        Timeouts { connect: limit, handshake: limit }
    }
}

/// What to dial and how to verify it.
#[derive(Clone, Debug)]
pub struct Dialer {
    host: Host,
    port: u16,
    tls: Option<(TlsClient, ServerName<'static>)>,
    proxy: ProxyEnv,
    timeouts: Timeouts,
}

/// A verified (or, with TLS off, plain) connection to the master.
#[derive(Debug)]
pub struct Connection {
    /// The byte stream.
    pub stream: Stream,
    /// What was reached and how it was verified.
    pub peer: Peer,
    /// Every address tried, the last one being the one connected.
    pub attempts: Vec<Attempt>,
}

/// What was reached and how it was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The address the TCP connection went to (the proxy's, when tunnelled).
    pub address: SocketAddr,
    /// The proxy tunnelled through, if any (credentials never shown).
    pub proxy: Option<String>,
    /// TLS details; `None` when TLS is off.
    pub tls: Option<TlsInfo>,
}

/// What the TLS handshake settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1_3`.
    pub version: String,
    /// Cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// SHA-256 of the master's leaf certificate.
    pub fingerprint: Fingerprint,
    /// The name the certificate was verified against.
    pub verified_name: String,
    /// Whether that name went out as SNI (a DNS name does, an IP address does not).
    pub sni_sent: bool,
    /// Whether the session was resumed from one made earlier by the same client (its
    /// certificate was verified then, and is not presented again).
    pub resumed: bool,
    /// The chain the master presented, leaf first (for a resumed session, the chain
    /// presented when it was made).
    pub chain: Vec<CertificateDer<'static>>,
    /// The certificates the verifier relied on to accept the master (the leaf, the
    /// validated path's intermediates and its anchor; see
    /// [`Verified::relied_on`](crate::tls::Verified::relied_on)); for a resumed session,
    /// what the client's last full handshake relied on. Their expiry is what
    /// the expiry module (`det_agent::expiry`) watches.
    pub relied_on: Vec<ReliedOn>,
}

/// One address tried, and what happened there.
#[derive(Clone, Debug)]
pub struct Attempt {
    /// The socket address (the proxy's, when tunnelled).
    pub address: SocketAddr,
    /// What happened.
    pub outcome: Outcome,
}

/// What happened at one address.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Connected (and, with TLS, verified).
    Connected,
    /// The TCP connect failed.
    ConnectFailed(String),
    /// The TCP connect did not finish in time.
    ConnectTimedOut(Duration),
    /// The TLS handshake failed; one line (the dial's error carries the explanation).
    TlsFailed(String),
    /// The TLS handshake did not finish in time.
    TlsTimedOut(Duration),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Connected => f.write_str("connected"),
            Outcome::ConnectFailed(why) => write!(f, "connect failed: {why}"),
            Outcome::ConnectTimedOut(after) => write!(f, "connect timed out after {}", seconds(*after)),
            Outcome::TlsFailed(why) => write!(f, "TLS handshake failed: {why}"),
            Outcome::TlsTimedOut(after) => write!(f, "TLS handshake timed out after {}", seconds(*after)),
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Attempt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Attempt", 2)?;
        st.serialize_field("address", &self.address)?;
        st.serialize_field("outcome", &self.outcome)?;
        st.end()
    }
}

impl Dialer {
    /// Dials `config`'s master with `tls` (which must be built from `config.tls`; `None`
    /// when TLS is off), through `proxy` when it applies.
    pub fn new(config: &Config, tls: Option<TlsClient>, proxy: ProxyEnv, timeouts: Timeouts) -> Dialer {
        let tls = tls.map(|client| (client, config.server_name()));
        Dialer { host: config.master_host.clone(), port: config.master_port, tls, proxy, timeouts }
    }

    /// `host:port` as dialed, IPv6 bracketed.
    pub fn authority(&self) -> String {
        crate::config::authority(&self.host, self.port)
    }

    /// The proxy a dial goes through, if one applies.
    pub fn proxy(&self) -> Option<&Proxy> {
        self.proxy.proxy_for(self.tls.is_some(), &self.host, self.port)
    }

    /// Whether TLS is on.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Reaches the master: see the module documentation.
    ///
    /// # Errors
    /// Why no address gave a verified connection, with every address tried.
    pub async fn dial(&self) -> Result<Connection, Box<DialFailure>> {
        let lookup = |host: String, port| async move {
            tokio::net::lookup_host((host.as_str(), port)).await.map(|found| found.collect::<Vec<_>>().into_iter())
        };
        self.dial_looking_up(lookup).await
    }

    /// [`dial`](Self::dial), with `lookup` as the system resolver (a test's stand-in).
    async fn dial_looking_up<F, L, A>(&self, lookup: F) -> Result<Connection, Box<DialFailure>>
    where
        F: FnOnce(String, u16) -> L,
        L: std::future::Future<Output = std::io::Result<A>>,
        A: Iterator<Item = SocketAddr>,
    {
        let attempts = Vec::new();
        let proxy = self.proxy();
        let (host, port) = match proxy {
            Some(p) => (p.host.clone(), p.port),
            None => (self.host.to_string(), self.port),
        };
        let fail = |attempts: Vec<Attempt>, error| Err(Box::new(DialFailure { attempts, error }));
        let lookup = lookup(host.clone(), port);
        let addresses = match resolve(&host, port, self.timeouts.connect, lookup).await {
            Ok(found) => found,
            Err(cause) => return fail(attempts, DialError::Resolve { host, via_proxy: proxy.is_some(), cause }),
        };
        self.dial_each(addresses, attempts).await
    }

    /// Tries `addresses` in order (see the module documentation).
    async fn dial_each(
        &self,
        addresses: Vec<SocketAddr>,
        mut attempts: Vec<Attempt>,
    ) -> Result<Connection, Box<DialFailure>> {
        let proxy = self.proxy();
        let fail = |attempts: Vec<Attempt>, error| Err(Box::new(DialFailure { attempts, error }));
        let mut last_tls_error = None;
        for address in addresses {
            let mut tcp = match timeout(self.timeouts.connect, TcpStream::connect(address)).await {
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => {
                    attempts.push(Attempt { address, outcome: Outcome::ConnectFailed(e.to_string()) });
                    continue;
                }
                Err(_) => {
                    attempts.push(Attempt { address, outcome: Outcome::ConnectTimedOut(self.timeouts.connect) });
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            if let Some(p) = proxy {
                let answer = timeout(self.timeouts.handshake, p.connect(&mut tcp, &self.authority())).await;
                let error = match answer {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error),
                    Err(_) => Some(ProxyError::Timeout { after: self.timeouts.handshake }),
                };
                if let Some(error) = error {
                    attempts.push(Attempt { address, outcome: Outcome::ConnectFailed(error.to_string()) });
                    return fail(attempts, DialError::Proxy { proxy: p.to_string(), error });
                }
            }
            let Some((client, name)) = &self.tls else {
                attempts.push(Attempt { address, outcome: Outcome::Connected });
                let peer = Peer { address, proxy: proxy.map(ToString::to_string), tls: None };
                return Ok(Connection { stream: Stream::Plain(tcp), peer, attempts });
            };
            match timeout(self.timeouts.handshake, client.handshake(name.clone(), tcp)).await {
                Ok(Ok((tls, relied_on))) => {
                    attempts.push(Attempt { address, outcome: Outcome::Connected });
                    let info = tls_info(&tls, name, relied_on);
                    let peer = Peer { address, proxy: proxy.map(ToString::to_string), tls: Some(info) };
                    return Ok(Connection { stream: Stream::Tls(Box::new(tls)), peer, attempts });
                }
                Ok(Err(error)) => {
                    attempts.push(Attempt { address, outcome: Outcome::TlsFailed(error.one_line()) });
                    if matches!(error, HandshakeError::Rejected(_) | HandshakeError::KeyNotProven) {
                        // The same master answers at every address: its certificate decides.
                        return fail(attempts, DialError::Tls { address, error });
                    }
                    last_tls_error = Some(DialError::Tls { address, error });
                }
                Err(_) => {
                    let after = self.timeouts.handshake;
                    attempts.push(Attempt { address, outcome: Outcome::TlsTimedOut(after) });
                    last_tls_error = Some(DialError::TlsTimeout { address, after });
                }
            }
        }
        let error = last_tls_error.unwrap_or_else(|| DialError::Unreachable {
            target: match proxy {
                Some(p) => p.to_string(),
                None => self.authority(),
            },
            via_proxy: proxy.is_some(),
        });
        fail(attempts, error)
    }
}

/// The addresses of `host`: an IP address as it is; `localhost` and its subdomains as the
/// loopback addresses, without asking anyone (RFC 6761, section 6.3; curl and the browsers
/// do the same), so a root without `/etc/hosts`, as in a `FROM scratch` image, still
/// reaches a master on the same machine; any other name from `lookup`, bounded by `limit`.
/// A lookup that outlives its limit is abandoned, not cancelled: the system resolver has
/// no cancel, so its thread finishes on its own.
async fn resolve(
    host: &str,
    port: u16,
    limit: Duration,
    lookup: impl std::future::Future<Output = std::io::Result<impl Iterator<Item = SocketAddr>>>,
) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    if name == "localhost" || name.ends_with(".localhost") {
        return Ok(vec![
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port),
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), port),
        ]);
    }
    match timeout(limit, lookup).await {
        Ok(Ok(found)) => Ok(found.collect()),
        Ok(Err(error)) => Err(ResolveError::Failed(error)),
        Err(_) => Err(ResolveError::TimedOut(limit)),
    }
}

fn tls_info(
    tls: &tokio_rustls::client::TlsStream<TcpStream>,
    name: &ServerName<'static>,
    relied_on: Vec<ReliedOn>,
) -> TlsInfo {
    let (_, conn) = tls.get_ref();
    let chain: Vec<CertificateDer<'static>> =
        conn.peer_certificates().unwrap_or_default().iter().map(|c| c.clone().into_owned()).collect();
    TlsInfo {
        version: conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("unknown").to_owned(),
        cipher_suite: conn.negotiated_cipher_suite().and_then(|s| s.suite().as_str()).unwrap_or("unknown").to_owned(),
        fingerprint: chain.first().map(|c| Fingerprint::of(c)).unwrap_or(Fingerprint([0; 32])),
        verified_name: name.to_str().into_owned(),
        sni_sent: matches!(name, ServerName::DnsName(_)),
        resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        chain,
        relied_on,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PinnedCerts, TlsConfig, Trust};
    use crate::dev_master::{fixtures, DevMaster};

    #[tokio::test]
    async fn moves_on_to_the_next_address_after_a_refused_connect() {
        let master = DevMaster::with_fixture("master").await.unwrap();
        // A port nobody listens on: bind, note it, drop it.
        let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let pinned = Trust::Pinned(PinnedCerts {
            path: fixtures::path("root-ca.pem"),
            certs: fixtures::certs("root-ca.pem"),
            store_entry: None,
        });
        let mut config = Config::new(Host::parse("localhost").unwrap(), Some(TlsConfig::new(pinned)));
        config.master_port = master.addr().port();
        let client = TlsClient::new(config.tls.as_ref().unwrap()).unwrap();
        let dialer = Dialer::new(&config, Some(client), ProxyEnv::none(), Timeouts::all(Duration::from_secs(5)));
        let connection = dialer.dial_each(vec![refused, master.addr()], Vec::new()).await.unwrap();
        let outcomes: Vec<String> = connection.attempts.iter().map(|a| a.outcome.to_string()).collect();
        assert_eq!(connection.attempts.len(), 2, "{outcomes:?}");
        assert!(outcomes[0].starts_with("connect failed"), "{outcomes:?}");
        assert_eq!((connection.attempts[1].address, outcomes[1].as_str()), (master.addr(), "connected"));
        assert_eq!(connection.peer.tls.unwrap().verified_name, "localhost");
    }

    /// A lookup that is never asked: resolving these would be a bug.
    fn no_lookup() -> std::future::Ready<std::io::Result<std::vec::IntoIter<SocketAddr>>> {
        panic!("the resolver was asked")
    }

    #[tokio::test]
    async fn localhost_and_ip_addresses_resolve_without_a_lookup() {
        let loopback: Vec<SocketAddr> = vec!["127.0.0.1:8443".parse().unwrap(), "[::1]:8443".parse().unwrap()];
        let limit = Duration::from_secs(1);
        for name in ["localhost", "LocalHost.", "master.localhost", "a.b.LOCALHOST"] {
            assert_eq!(resolve(name, 8443, limit, async { no_lookup().await }).await.unwrap(), loopback, "{name}");
        }
        let ip = resolve("::1", 8443, limit, async { no_lookup().await }).await.unwrap();
        assert_eq!(ip, vec!["[::1]:8443".parse::<SocketAddr>().unwrap()]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dial_whose_lookup_hangs_ends_at_the_connect_timeout() {
        let config = Config::new(Host::parse("master.example.com").unwrap(), None);
        let timeouts = Timeouts { connect: Duration::from_secs(3), handshake: Duration::from_secs(100) };
        let dialer = Dialer::new(&config, None, ProxyEnv::none(), timeouts);
        let hangs = |_, _| std::future::pending::<std::io::Result<std::vec::IntoIter<SocketAddr>>>();
        let started = tokio::time::Instant::now();
        let failure = dialer.dial_looking_up(hangs).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(
            failure.error.to_string(),
            "cannot resolve master.example.com: no answer from the resolver after 3 s; check the resolver \
             (/etc/resolv.conf) and that the name server answers, or use an IP address"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_that_hangs_ends_at_the_connect_timeout() {
        let hangs = std::future::pending::<std::io::Result<std::vec::IntoIter<SocketAddr>>>();
        let error = resolve("master.example.com", 8443, Duration::from_secs(10), hangs).await.unwrap_err();
        assert_eq!(error.to_string(), "no answer from the resolver after 10 s");
        // Names that merely end in "localhost" are looked up like any other.
        let answered = std::future::ready(Ok(vec!["192.0.2.7:8443".parse::<SocketAddr>().unwrap()].into_iter()));
        let found = resolve("notlocalhost", 8443, Duration::from_secs(10), answered).await.unwrap();
        assert_eq!(found, vec!["192.0.2.7:8443".parse::<SocketAddr>().unwrap()]);
    }
}
