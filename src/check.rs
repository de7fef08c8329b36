//! `det-agent check`: dial the master once, through the same [`Dialer`] as the daemon,
//! and report what happened, in enough detail to fix whatever went wrong; then ask the
//! verified connection `GET /info` (the master's unauthenticated info endpoint, which
//! registers nothing) to prove that a Determined master answered.
//!
//! It also says how long each certificate the agent relies on (and its client
//! certificate) has left, warning in the verdict when one ends within the
//! [`expiry`] windows, and advises against a pinned leaf that a public CA
//! issued, which its next renewal breaks. Its warnings also list the files deciding
//! trust that another local user can change ([`Config::trust_file_warnings`]).

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::timeout;

use rustls_pki_types::CertificateDer;

use crate::config::Config;
use crate::dial::{http, Attempt, Connection, DialError, Dialer, ProxyEnv, Timeouts};
use crate::expiry::{self, Level, Status, Windows};
use crate::link::MasterInfo;
use crate::text::{escape, seconds};
use crate::tls::{Anchors, HandshakeError, Rejection, RejectionKind, ReliedOn, TlsClient};
use crate::x509::{CertSummary, Timestamp};

/// How long one TCP connect, and then each handshake, may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of `/info`'s answer that is read (a master sends a few hundred bytes).
const MAX_INFO_BODY: usize = 64 * 1024;

/// One check, configured: `Check::new(&config).proxy(env).run().await`.
#[derive(Debug)]
pub struct Check<'a> {
    config: &'a Config,
    client: Option<TlsClient>,
    proxy: ProxyEnv,
    limit: Duration,
    ask_info: bool,
    windows: Windows,
    public_roots: Option<Anchors>,
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ca`, `pinned`, `skip-verify`, `key-pin` (skip_verify with pins), or `plain` (TLS off).
    pub mode: &'static str,
    /// The trust settings in words.
    pub trust: String,
    /// `master_host:master_port` as configured.
    pub target: String,
    /// The HTTP proxy the dial went through, if any (credentials never shown).
    pub proxy: Option<String>,
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
    /// Each certificate the verifier relied on (leaf, the validated path's
    /// intermediates, the anchor), then the client certificate when one is configured,
    /// with the days it has left at the time the check ran.
    pub relied_on: Vec<Status>,
    /// When the master's own certificate is pinned and a public CA issued it: why the
    /// CA's next renewal breaks the pin, and what to pin instead.
    pub renewal_advice: Option<String>,
    /// What the master said about itself (`GET /info`), when asked and it answered so.
    pub master: Option<MasterInfo>,
    /// The conclusion.
    pub verdict: Verdict,
    /// The verifier's refusal, when it refused the master's certificate (its kind and
    /// explanation are in the verdict).
    #[serde(skip)]
    pub rejection: Option<Box<Rejection>>,
}

/// The conclusion of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Exit 0: the master was verified (or accepted under skip_verify, or authenticated by
    /// its key pin), the handshake completed, and (when asked) a Determined master
    /// answered `/info`.
    pub ok: bool,
    /// One line.
    pub summary: String,
    /// The full explanation of a failure.
    pub error: Option<String>,
    /// The verifier's classification, when it rejected the certificate.
    pub rejection: Option<RejectionKind>,
    /// One line for each certificate that ends within the expiry windows (see
    /// [`expiry::status`]), then one for each file deciding trust that another local user
    /// can change or read ([`Config::trust_file_warnings`]); they do not fail the check.
    pub warnings: Vec<String>,
}

impl<'a> Check<'a> {
    /// A check of `config`'s master: no proxy, [`DEFAULT_TIMEOUT`], `/info` asked.
    pub fn new(config: &'a Config) -> Check<'a> {
        Check {
            config,
            client: None,
            proxy: ProxyEnv::none(),
            limit: DEFAULT_TIMEOUT,
            ask_info: true,
            windows: Windows::default(),
            public_roots: None,
        }
    }

    /// How far ahead of a certificate's end to warn, and to call it an error (30 and 7
    /// days by default).
    pub fn expiry_windows(mut self, windows: Windows) -> Self {
        self.windows = windows;
        self
    }

    /// The roots that count as public CAs for the renewal advice: the bundled Mozilla
    /// roots ([`Anchors::bundled`]) unless a test gives others.
    pub fn public_roots(mut self, roots: Anchors) -> Self {
        self.public_roots = Some(roots);
        self
    }

    /// Dial through the proxy these settings name for the master, as the daemon does.
    pub fn proxy(mut self, proxy: ProxyEnv) -> Self {
        self.proxy = proxy;
        self
    }

    /// How long each connect and each handshake may take.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Use this TLS client instead of one built from the configuration (custom anchors
    /// in tests).
    pub fn client(mut self, client: TlsClient) -> Self {
        self.client = Some(client);
        self
    }

    /// Whether to ask `GET /info` after the handshake (on by default). Off, the check
    /// ends at the TLS handshake, and a server that speaks no HTTP still passes.
    pub fn ask_info(mut self, ask: bool) -> Self {
        self.ask_info = ask;
        self
    }

    /// Dials once and reports.
    pub async fn run(mut self) -> Report {
        let config = self.config;
        let windows = self.windows;
        let public_roots = self.public_roots.take();
        let mut seen = Seen::default();
        let mut report = self.dial(&mut seen).await;
        // Judged at the time the certificates were verified at.
        let now = seen.now.unwrap_or_else(Timestamp::now);
        let client_cert =
            config.tls.as_ref().and_then(|t| t.client_identity.as_ref()).and_then(expiry::client_certificate);
        report.relied_on = expiry::assess(&[seen.relied_on, client_cert.into_iter().collect()].concat(), now, windows);
        report.verdict.warnings = report.relied_on.iter().filter_map(|s| s.message.clone()).collect();
        report.verdict.warnings.extend(config.trust_file_warnings.iter().map(ToString::to_string));
        if let Some(tls) = &config.tls {
            let roots = public_roots.unwrap_or_else(Anchors::bundled);
            report.renewal_advice = expiry::renewal_advice(&tls.trust, &seen.presented, &roots).map(|a| a.to_string());
        }
        report
    }

    /// Dials, and asks `/info`; `seen` gets what the expiry rules and the renewal advice
    /// need.
    async fn dial(self, seen: &mut Seen) -> Report {
        let mut report = Report::new(self.config);
        let client = match (self.client, &self.config.tls) {
            (Some(client), _) => Some(client),
            (None, Some(tls)) => match TlsClient::new(tls) {
                Ok(client) => Some(client),
                Err(err) => {
                    report.verdict = Verdict::fail(err.to_string(), None);
                    return report;
                }
            },
            (None, None) => None,
        };
        seen.now = client.as_ref().and_then(TlsClient::now).map(Timestamp::from);
        let dialer = Dialer::new(self.config, client, self.proxy, Timeouts::all(self.limit));
        report.proxy = dialer.proxy().map(ToString::to_string);
        let connection = match dialer.dial().await {
            Ok(connection) => connection,
            Err(failure) => {
                let rejection = failure.error.rejection();
                if let Some(rejection) = rejection {
                    report.chain = rejection.presented().iter().flatten().cloned().collect();
                    seen.presented = rejection.presented_der().to_vec();
                }
                let kind = rejection.map(|r| r.kind());
                // The attempts are listed on their own; the verdict explains once.
                let explanation = match &failure.error {
                    DialError::Tls { error: HandshakeError::Rejected(rejection), .. } => rejection.to_string(),
                    other => other.to_string(),
                };
                report.verdict = Verdict::fail(explanation, kind);
                report.attempts = failure.attempts;
                if let DialError::Tls { error: HandshakeError::Rejected(rejection), .. } = failure.error {
                    report.rejection = Some(rejection);
                }
                return report;
            }
        };
        report.attempts.clone_from(&connection.attempts);
        if let Some(tls) = &connection.peer.tls {
            report.tls_version = Some(tls.version.clone());
            report.cipher_suite = Some(tls.cipher_suite.clone());
            report.chain = tls.chain.iter().filter_map(|c| CertSummary::parse(c).ok()).collect();
            seen.presented.clone_from(&tls.chain);
            seen.relied_on.clone_from(&tls.relied_on);
        }
        report.verdict = report.verified(self.config);
        if self.ask_info {
            let client_cert = self.config.tls.as_ref().is_some_and(|t| t.client_identity.is_some());
            match ask_info(connection, &dialer.authority(), self.limit, client_cert).await {
                Ok(info) => {
                    report.verdict.summary.push_str(&format!(
                        "; Determined master {}, cluster {} ({})",
                        info.version, info.cluster_name, info.cluster_id
                    ));
                    report.master = Some(info);
                }
                Err(why) => report.verdict = Verdict::fail(why, None),
            }
        }
        report
    }
}

/// What a dial saw that the expiry rules and the renewal advice need.
#[derive(Default)]
struct Seen {
    /// The time the client verifies at.
    now: Option<Timestamp>,
    relied_on: Vec<ReliedOn>,
    presented: Vec<CertificateDer<'static>>,
}

/// Dials `config`'s master once with its own TLS settings and no proxy, and asks `/info`.
pub async fn check(config: &Config, limit: Duration) -> Report {
    Check::new(config).timeout(limit).run().await
}

/// Sends `GET /info` on the verified connection and reads what answered.
///
/// # Errors
/// What answered instead of a Determined master, explained.
async fn ask_info(
    mut connection: Connection,
    authority: &str,
    limit: Duration,
    client_cert: bool,
) -> Result<MasterInfo, String> {
    let answer = match timeout(limit, http::get(&mut connection.stream, authority, "/info", MAX_INFO_BODY)).await {
        Err(_) => {
            return Err(format!(
                "the handshake completed, but nothing answered GET /info within {}; a Determined master answers at once: is this the master's port?",
                seconds(limit)
            ))
        }
        Ok(Err(http::HttpError::Io(error))) => {
            // Under TLS 1.3 a master that refuses the client certificate says so here.
            let tls = HandshakeError::from_io(error, client_cert);
            return Err(format!("the handshake completed, but the connection failed when GET /info was sent: {tls}"));
        }
        Ok(Err(other)) => {
            return Err(format!(
                "the handshake completed, but what answered GET /info is not a Determined master: {other}"
            ))
        }
        Ok(Ok(answer)) => answer,
    };
    if answer.status == 200 {
        if let Some(info) = MasterInfo::from_json(&answer.body) {
            return Ok(info);
        }
    }
    let excerpt = String::from_utf8_lossy(&answer.body[..answer.body.len().min(200)])
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let content_type = answer.content_type.as_deref().map(|t| format!(" ({})", escape(t))).unwrap_or_default();
    let what = match answer.status {
        200 => "a server that is not a Determined master (its /info is not the master's JSON)",
        407 => "a proxy that wants credentials",
        300..=399 => "a server that redirects (a web front end, not the master's own port?)",
        401 | 403 => "a server that refuses this request (a web front end or a proxy, not the master's /info, which needs no login)",
        404 => "a server without /info: not a Determined master, or a proxy in front of it that does not pass /info",
        500..=599 => "a server error (the master failing, or a proxy that cannot reach it)",
        _ => "something other than a Determined master",
    };
    Err(format!(
        "the handshake completed, but GET /info answered HTTP {} {}{content_type}: {what}. It said: {}",
        answer.status,
        escape(&answer.reason),
        escape(&excerpt)
    ))
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
            target: crate::config::authority(&config.master_host, config.master_port),
            proxy: None,
            attempts: Vec::new(),
            // Under skip_verify (key pins or not) no name is checked.
            verified_name: config.tls.as_ref().filter(|t| t.checks_names()).map(|_| server_name.to_str().into_owned()),
            sni_sent: tls_on && matches!(server_name, rustls_pki_types::ServerName::DnsName(_)),
            tls_version: None,
            cipher_suite: None,
            chain: Vec::new(),
            relied_on: Vec::new(),
            renewal_advice: None,
            master: None,
            verdict: Verdict::fail("not attempted".to_owned(), None),
            rejection: None,
        }
    }

    /// The verdict for a connection the dialer made: what vouched for the master.
    fn verified(&self, config: &Config) -> Verdict {
        let ok = |summary: String| Verdict { ok: true, summary, error: None, rejection: None, warnings: Vec::new() };
        let Some(tls) = config.tls.as_ref() else {
            return ok(
                "connected over plain TCP: TLS is off, so traffic is not encrypted and the master is not verified"
                    .to_owned(),
            );
        };
        let name = escape(&config.server_name().to_str()).into_owned();
        let chain = &self.chain;
        let pinned_keys: Vec<String> =
            chain.iter().filter(|c| tls.master_key_pins.contains(&c.key_pin)).map(|c| c.key_pin.to_string()).collect();
        match (&tls.trust, tls.master_key_pins.is_empty()) {
            (crate::config::Trust::SkipVerify, false) => ok(format!(
                "master authenticated by its pinned key {} (skip_verify: chain and name not checked)",
                pinned_keys.join(", ")
            )),
            (crate::config::Trust::SkipVerify, true) => ok(format!(
                "accepted WITHOUT verification (skip_verify); the master presented sha256 {}",
                chain.first().map(|c| c.sha256.to_string()).unwrap_or_default()
            )),
            (_, false) if pinned_keys.is_empty() => ok(format!(
                "master verified as {name}, with the pinned key of its trust anchor (which the master does not present)"
            )),
            (_, false) => ok(format!("master verified as {name}, with pinned key {}", pinned_keys.join(", "))),
            (_, true) => ok(format!("master verified as {name}")),
        }
    }
}

impl Verdict {
    fn fail(error: String, rejection: Option<RejectionKind>) -> Verdict {
        Verdict {
            ok: false,
            summary: error.lines().next().unwrap_or_default().to_owned(),
            error: Some(error),
            rejection,
            warnings: Vec::new(),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mode           {} — {}", self.mode, self.trust)?;
        writeln!(f, "master         {}", self.target)?;
        if let Some(proxy) = &self.proxy {
            writeln!(f, "proxy          {proxy} (HTTP CONNECT; TLS runs end to end through it)")?;
        }
        for a in &self.attempts {
            writeln!(f, "  dialed       {} — {}", a.address, a.outcome)?;
        }
        if let Some(name) = &self.verified_name {
            let sni = if self.sni_sent { " (sent as SNI)" } else { " (IP address: no SNI sent)" };
            writeln!(f, "verified name  {}{sni}", escape(name))?;
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
        for status in &self.relied_on {
            let label = if status.cert.role == crate::tls::Role::Client { "client cert" } else { "relied on" };
            writeln!(f, "{label:<15}{status}")?;
        }
        if let Some(advice) = &self.renewal_advice {
            writeln!(f, "advice         {advice}")?;
        }
        if let Some(m) = &self.master {
            writeln!(
                f,
                "determined     version {}, cluster {} (cluster ID {}, master ID {})",
                m.version, m.cluster_name, m.cluster_id, m.master_id
            )?;
        }
        match (&self.verdict.ok, &self.verdict.error) {
            (true, _) => write!(f, "verdict        OK: {}", self.verdict.summary)?,
            (false, Some(error)) => write!(f, "verdict        FAILED: {error}")?,
            (false, None) => write!(f, "verdict        FAILED: {}", self.verdict.summary)?,
        }
        for status in self.relied_on.iter().filter(|s| s.message.is_some()) {
            let label = if status.level == Level::Error { "ERROR" } else { "WARNING" };
            write!(f, "\n  {label:<13}{}", status.message.as_deref().unwrap_or_default())?;
        }
        Ok(())
    }
}
