//! `det-agent check`: dial the master once with the configured verifier and report what
//! happened, in enough detail to fix whatever went wrong.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use rustls_pki_types::ServerName;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{Config, Host};
use crate::tls::{HandshakeError, RejectionKind, TlsClient};
use crate::x509::CertSummary;

/// How long one TCP connect, and then one TLS handshake, may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome of one dial.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ca`, `pinned`, `skip-verify`, `key-pin` (skip_verify with pins), or `plain` (TLS off).
    pub mode: &'static str,
    /// The trust settings in words.
    pub trust: String,
    /// `master_host:master_port` as configured.
    pub target: String,
    /// Every address tried, in order, and what happened there.
    pub attempts: Vec<Attempt>,
    /// The name verified (and sent as SNI when it is a DNS name).
    pub verified_name: Option<String>,
    /// Whether that name was sent as SNI.
    pub sni_sent: bool,
    /// Negotiated TLS version.
    pub tls_version: Option<String>,
    /// Negotiated cipher suite.
    pub cipher_suite: Option<String>,
    /// The chain the master presented, leaf first.
    pub chain: Vec<CertSummary>,
    /// The conclusion.
    pub verdict: Verdict,
}

/// One address tried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The socket address.
    pub address: SocketAddr,
    /// `connected`, or what went wrong.
    pub outcome: String,
}

/// The conclusion of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Exit 0: the master was verified (or skip_verify accepted it) and the handshake completed.
    pub ok: bool,
    /// One line.
    pub summary: String,
    /// The full explanation of a failure.
    pub error: Option<String>,
    /// The verifier's classification, when it rejected the certificate.
    pub rejection: Option<RejectionKind>,
}

/// Dials the master once as `config` says, building the TLS client configuration from it.
pub async fn check(config: &Config, limit: Duration) -> Report {
    let client = match &config.tls {
        Some(tls) => match TlsClient::new(tls) {
            Ok(client) => Some(client),
            Err(err) => return Report::failed_setup(config, err.to_string()),
        },
        None => None,
    };
    check_with(config, client, limit).await
}

/// Like [`check`], with a client configuration you built (`None` for plain TCP).
pub async fn check_with(config: &Config, client: Option<TlsClient>, limit: Duration) -> Report {
    let mut report = Report::new(config);
    let addrs = match resolve(&config.master_host, config.master_port).await {
        Ok(addrs) => addrs,
        Err(err) => {
            report.verdict = Verdict::fail(format!("cannot resolve {}: {err}", config.master_host), None);
            return report;
        }
    };
    dial_addresses(config, client, addrs, limit, report).await
}

/// Tries `addrs` in order: on to the next after a connection-level failure, but not after
/// the master was reached and refused its certificate (other addresses are the same master).
async fn dial_addresses(
    config: &Config,
    client: Option<TlsClient>,
    addrs: Vec<SocketAddr>,
    limit: Duration,
    mut report: Report,
) -> Report {
    let server_name = config.server_name();
    for addr in addrs {
        let tcp = match timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(err)) => {
                report.attempts.push(Attempt { address: addr, outcome: format!("connect failed: {err}") });
                continue;
            }
            Err(_) => {
                report.attempts.push(Attempt { address: addr, outcome: format!("connect timed out after {limit:?}") });
                continue;
            }
        };
        let Some(client) = &client else {
            report.attempts.push(Attempt { address: addr, outcome: "connected".to_owned() });
            report.verdict = Verdict {
                ok: true,
                summary:
                    "connected over plain TCP: TLS is off, so traffic is not encrypted and the master is not verified"
                        .to_owned(),
                error: None,
                rejection: None,
            };
            return report;
        };
        match timeout(limit, client.connect(server_name.clone(), tcp)).await {
            Ok(Ok(stream)) => {
                report.attempts.push(Attempt { address: addr, outcome: "connected".to_owned() });
                let (_, conn) = stream.get_ref();
                report.tls_version = conn.protocol_version().map(|v| format!("{v:?}"));
                report.cipher_suite = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite()));
                report.chain = conn
                    .peer_certificates()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|c| CertSummary::parse(c).ok())
                    .collect();
                let fingerprint = report.chain.first().map(|c| c.sha256.to_string()).unwrap_or_default();
                let pins = config.tls.as_ref().map_or(&[][..], |t| &t.master_key_pins[..]);
                let pinned_keys: Vec<String> =
                    report.chain.iter().filter(|c| pins.contains(&c.key_pin)).map(|c| c.key_pin.to_string()).collect();
                report.verdict = match config.tls.as_ref().map(|t| &t.trust) {
                    Some(crate::Trust::SkipVerify) if !pins.is_empty() => Verdict {
                        ok: true,
                        summary: format!(
                            "master authenticated by its pinned key {} (skip_verify: chain and name not checked)",
                            pinned_keys.join(", ")
                        ),
                        error: None,
                        rejection: None,
                    },
                    Some(crate::Trust::SkipVerify) => Verdict {
                        ok: true,
                        summary: format!(
                            "accepted WITHOUT verification (skip_verify); the master presented sha256 {fingerprint}"
                        ),
                        error: None,
                        rejection: None,
                    },
                    _ if !pins.is_empty() => Verdict {
                        ok: true,
                        summary: match pinned_keys.is_empty() {
                            true => format!(
                                "master verified as {}, with the pinned key of its trust anchor (which the master does not present)",
                                server_name.to_str()
                            ),
                            false => format!(
                                "master verified as {}, with pinned key {}",
                                server_name.to_str(),
                                pinned_keys.join(", ")
                            ),
                        },
                        error: None,
                        rejection: None,
                    },
                    _ => Verdict {
                        ok: true,
                        summary: format!("master verified as {}", server_name.to_str()),
                        error: None,
                        rejection: None,
                    },
                };
                return report;
            }
            Ok(Err(err)) => {
                report.attempts.push(Attempt {
                    address: addr,
                    outcome: format!("TLS handshake failed: {}", one_line_cause(&err)),
                });
                if let HandshakeError::Rejected(rejection) = err {
                    report.chain = rejection.presented().iter().flatten().cloned().collect();
                    report.verdict = Verdict::fail(rejection.to_string(), Some(rejection.kind()));
                    return report;
                }
                report.verdict = Verdict::fail(format!("TLS handshake with {addr} failed: {err}"), None);
            }
            Err(_) => {
                report
                    .attempts
                    .push(Attempt { address: addr, outcome: format!("TLS handshake timed out after {limit:?}") });
                report.verdict = Verdict::fail(
                    format!("TLS handshake with {addr} timed out after {limit:?}; is this port the master's TLS port?"),
                    None,
                );
            }
        }
    }
    if report.attempts.iter().all(|a| a.outcome.starts_with("connect")) {
        report.verdict = Verdict::fail(
            format!(
                "could not connect to {} at any of its addresses; is the master running, and is {} its port ({} with TLS, {} without)?",
                report.target,
                config.master_port,
                crate::config::DEFAULT_TLS_PORT,
                crate::config::DEFAULT_PLAIN_PORT
            ),
            None,
        );
    }
    report
}

impl Report {
    fn new(config: &Config) -> Report {
        let server_name = config.server_name();
        let (mode, trust) = match &config.tls {
            Some(tls) => (tls.mode_name(), tls.to_string()),
            None => ("plain", "TLS off".to_owned()),
        };
        let tls_on = config.tls.is_some();
        Report {
            mode,
            trust,
            target: crate::link::authority(&config.master_host, config.master_port),
            attempts: Vec::new(),
            verified_name: tls_on.then(|| server_name.to_str().into_owned()),
            sni_sent: tls_on && matches!(server_name, ServerName::DnsName(_)),
            tls_version: None,
            cipher_suite: None,
            chain: Vec::new(),
            verdict: Verdict::fail("not attempted".to_owned(), None),
        }
    }

    fn failed_setup(config: &Config, error: String) -> Report {
        let mut report = Report::new(config);
        report.verdict = Verdict::fail(error, None);
        report
    }
}

impl Verdict {
    fn fail(error: String, rejection: Option<RejectionKind>) -> Verdict {
        Verdict { ok: false, summary: first_line(&error).to_owned(), error: Some(error), rejection }
    }
}

/// One line for an address's outcome; the verdict carries the full explanation once.
fn one_line_cause(err: &HandshakeError) -> String {
    match err {
        HandshakeError::Rejected(rejection) => format!("certificate rejected ({})", kind_name(rejection.kind())),
        other => first_line(&other.to_string()).to_owned(),
    }
}

/// A rejection kind's name as JSON and the demo write it, e.g. `unknown_issuer`.
fn kind_name(kind: RejectionKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Every address of `host`, in resolver order; an IP literal is its own single address.
async fn resolve(host: &Host, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    match host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
        Host::Dns(name) => Ok(tokio::net::lookup_host((name.as_ref(), port)).await?.collect()),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mode           {} — {}", self.mode, self.trust)?;
        writeln!(f, "master         {}", self.target)?;
        for a in &self.attempts {
            writeln!(f, "  dialed       {} — {}", a.address, a.outcome)?;
        }
        if let Some(name) = &self.verified_name {
            writeln!(
                f,
                "verified name  {name}{}",
                if self.sni_sent { " (sent as SNI)" } else { " (IP address: no SNI sent)" }
            )?;
        }
        if let (Some(v), Some(c)) = (&self.tls_version, &self.cipher_suite) {
            writeln!(f, "tls            {v}, {c}")?;
        }
        for (i, c) in self.chain.iter().enumerate() {
            writeln!(f, "certificate [{i}]")?;
            writeln!(f, "  subject      {}", c.subject)?;
            writeln!(f, "  names        {}", c.names())?;
            writeln!(f, "  issuer       {}", c.issuer)?;
            writeln!(f, "  valid        {} to {}", c.not_before, c.not_after)?;
            writeln!(f, "  sha256       {}", c.sha256)?;
            writeln!(f, "  key pin      {}", c.key_pin)?;
        }
        match (&self.verdict.ok, &self.verdict.error) {
            (true, _) => write!(f, "verdict        OK: {}", self.verdict.summary),
            (false, Some(error)) => write!(f, "verdict        FAILED: {error}"),
            (false, None) => write!(f, "verdict        FAILED: {}", self.verdict.summary),
        }
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
        let report =
            dial_addresses(&config, Some(client), vec![refused, master.addr()], DEFAULT_TIMEOUT, Report::new(&config))
                .await;
        assert!(report.verdict.ok, "{}", report.verdict.summary);
        assert_eq!(report.attempts.len(), 2);
        assert!(report.attempts[0].outcome.starts_with("connect failed"), "{:?}", report.attempts);
        assert_eq!(report.attempts[1].address, master.addr());
    }
}
