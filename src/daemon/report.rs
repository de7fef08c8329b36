//! What `det-agent run` reports besides its log, all fed by the daemon's [`Event`]s in
//! one place: systemd (sd_notify: READY, STATUS, RELOADING, STOPPING and the watchdog,
//! pinged from the loop task itself), Prometheus metrics and `/healthz`, the master's
//! identity for tasks (the state file `det-agent task-env` reads), and the certificates
//! the agent relies on that near their end (warned once a day, an error within the last
//! days), with renewal advice when a public CA's certificate is pinned.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::events::{Event, Observer};
use crate::config::Config;
use crate::expiry::{self, Level, Watch, Windows};
use crate::link::{Ended, Tap, Target};
use crate::metrics::{ConnectOutcome, Health, Metrics, TrustMode};
use crate::notify::Notifier;
use crate::text::seconds;
use crate::tls::Anchors;
use crate::x509::Timestamp;

/// How often, at most, the certificates relied on are judged again while the daemon
/// runs: a link lasts for weeks, and a certificate's last month passes during one.
pub const EXPIRY_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// The daemon's reporters: systemd, metrics, the state file, certificate expiry.
pub struct Reporters {
    notifier: Arc<Notifier>,
    metrics: Metrics,
    state_file: PathBuf,
    mode: TrustMode,
    watch: Watch,
    /// Whether renewal advice was given for the running configuration.
    advised: bool,
    /// Whether READY=1 was sent.
    ready: bool,
    /// The last reason the agent is not registered, for STATUS= and `/healthz`.
    last_failure: Option<String>,
    /// When the certificates were last judged (daemon clock: seconds since the epoch).
    last_expiry_check: Option<Timestamp>,
    /// The time; the system clock, or a test's.
    now: fn() -> Timestamp,
    /// `hooks` of the running configuration.
    hooks: crate::config::Hooks,
}

impl std::fmt::Debug for Reporters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporters").field("state_file", &self.state_file).finish_non_exhaustive()
    }
}

impl From<crate::config::ExpiryDays> for Windows {
    fn from(days: crate::config::ExpiryDays) -> Windows {
        Windows { warn_days: days.warning, error_days: days.error }
    }
}

impl Reporters {
    /// Reporters for the configuration `target` was built from.
    pub fn new(target: &Target, notifier: Arc<Notifier>, metrics: Metrics) -> Reporters {
        let config = &target.config;
        Reporters {
            notifier,
            metrics,
            state_file: config.state_file.clone(),
            mode: TrustMode::of(config),
            watch: watch_for(config),
            advised: false,
            ready: false,
            last_failure: None,
            last_expiry_check: None,
            now: Timestamp::now,
            hooks: config.hooks.clone(),
        }
    }

    /// The same reporters, reading the time from `now` (tests).
    pub fn with_clock(mut self, now: fn() -> Timestamp) -> Reporters {
        self.now = now;
        self
    }

    /// The running configuration's hooks (the latest reload's).
    pub fn hooks(&self) -> &crate::config::Hooks {
        &self.hooks
    }

    /// What `link` traffic to count: the metrics, when they are on.
    pub fn tap(&self) -> Option<Arc<dyn Tap>> {
        self.metrics.is_enabled().then(|| Arc::new(self.metrics.clone()) as Arc<dyn Tap>)
    }

    fn status(&self, text: &str) {
        self.notifier.status(text);
    }

    fn not_registered(&mut self, reason: String) {
        self.metrics.health(Health::NotRegistered { reason: reason.clone() });
        self.last_failure = Some(reason);
    }

    /// Judges the certificates relied on, logging those inside a window (each at most
    /// once a day), and gives the earliest end to the metrics.
    fn check_expiry(&mut self) {
        let now = (self.now)();
        self.last_expiry_check = Some(now);
        for due in self.watch.due(now) {
            let Some(message) = &due.message else { continue };
            match due.level {
                Level::Error => error!("{message}"),
                Level::Warning => warn!("{message}"),
                Level::Ok => {}
            }
        }
    }

    fn registered(&mut self, target: &Target, peer: &crate::link::Peer, options: &crate::link::MasterSetAgentOptions) {
        let config = &target.config;
        self.last_failure = None;
        self.metrics.connect_outcome(ConnectOutcome::Registered);
        self.metrics.link_up(true);
        let agent_id = config.agent_id.clone();
        let master = target.authority();
        self.metrics.health(Health::Registered { master: master.clone(), agent_id: agent_id.clone() });
        self.status(&format!("registered with {master} as {agent_id} ({})", config.mode_name()));
        if let Some(tls) = &peer.tls {
            let leaf_end = tls.relied_on.iter().find(|c| c.role == crate::tls::Role::Master).and_then(|c| c.not_after);
            self.metrics.certificate(leaf_end, self.mode);
            self.watch.relied_on(&tls.relied_on);
            if !self.advised {
                self.advised = true;
                let advice =
                    config.tls.as_ref().and_then(|t| expiry::renewal_advice(&t.trust, &tls.chain, &Anchors::bundled()));
                if let Some(advice) = advice {
                    warn!("{advice}");
                }
            }
        } else {
            self.metrics.certificate(None, self.mode);
        }
        self.check_expiry();
        let info: crate::link::MasterInfo = options.master_info.parse().unwrap_or_default();
        match crate::state_file::write(&self.state_file, &info, config) {
            Ok(_) => info!(state_file = %self.state_file.display(), cluster_id = %info.cluster_id,
                master_id = %info.master_id, "recorded the master's identity for task-env"),
            Err(err) => warn!(%err,
                "cannot record the master's identity; det-agent task-env will not know DET_CLUSTER_ID and DET_MASTER_ID"),
        }
    }

    fn reloaded(&mut self, target: &Target) {
        let config = &target.config;
        self.metrics.reload(true);
        self.state_file = config.state_file.clone();
        self.hooks = config.hooks.clone();
        self.mode = TrustMode::of(config);
        self.watch = watch_for(config);
        self.advised = false;
        self.notifier.ready();
        self.status("configuration reloaded; it applies from the next connection");
    }
}

fn watch_for(config: &Config) -> Watch {
    let client = config.tls.as_ref().and_then(|t| t.client_identity.as_ref());
    Watch::new(Windows::from(config.certificate_expiry), client)
}

impl Observer for Reporters {
    fn event(&mut self, event: &Event<'_>) {
        match event {
            Event::Connecting { target, .. } => {
                if !self.ready {
                    // The configuration is loaded and the link loop runs.
                    self.ready = true;
                    self.notifier.ready();
                    self.metrics.health(Health::starting());
                }
                let reason = self.last_failure.clone().unwrap_or_else(|| "connecting".to_owned());
                self.status(&format!("connecting to {} ({}); {reason}", target.authority(), target.config.mode_name()));
            }
            Event::ConnectFailed { error, .. } => {
                self.metrics.connect_failed(error);
                let reason = match error.rejection() {
                    Some(rejection) => format!("certificate refused: {}", rejection.kind()),
                    None => error.to_string().lines().next().unwrap_or_default().to_owned(),
                };
                self.status(&reason);
                self.not_registered(reason);
            }
            Event::MustRegisterAfresh { said_in } => {
                self.status(&format!("the master no longer holds this agent ({said_in}); registering afresh"));
            }
            Event::Registered { target, peer, options, .. } => self.registered(target, peer, options),
            Event::Disconnected { ended, .. } => {
                self.metrics.link_up(false);
                self.metrics.link_ended(*ended);
                let reason = match ended {
                    Ended::Stopped(_) => "stopping".to_owned(),
                    other => format!("disconnected: {}", other.to_string().lines().next().unwrap_or_default()),
                };
                self.status(&reason);
                self.not_registered(reason);
            }
            Event::Waiting { delay } => {
                self.metrics.reconnect_delay(*delay);
                let cause = self.last_failure.clone().unwrap_or_else(|| "disconnected".to_owned());
                let text = format!("waiting {} before reconnecting: {cause}", seconds(*delay));
                self.metrics.health(Health::NotRegistered { reason: text.clone() });
                self.status(&text);
            }
            Event::Reloading => self.notifier.reloading(),
            Event::Reloaded { target, .. } => self.reloaded(target),
            Event::ReloadFailed { error } => {
                self.metrics.reload(false);
                self.notifier.ready();
                let first = error.to_string();
                self.status(&format!(
                    "reload refused, running configuration kept: {}",
                    first.lines().next().unwrap_or_default()
                ));
            }
            Event::ShuttingDown => self.notifier.stopping(),
            Event::Heartbeat => {
                self.notifier.ping_watchdog();
                let now = (self.now)();
                let due = self
                    .last_expiry_check
                    .is_none_or(|last| now.0.saturating_sub(last.0) >= EXPIRY_CHECK_EVERY.as_secs() as i64);
                if due && self.last_expiry_check.is_some() {
                    self.check_expiry();
                }
            }
        }
    }
}

/// How often the daemon's loop says it is alive: for systemd's watchdog, half its
/// timeout; without one, once a minute (the certificate checks ride on it).
pub fn heartbeat(notifier: &Notifier) -> Duration {
    notifier.watchdog().ping_interval().map_or(Duration::from_secs(60), |every| every.min(Duration::from_secs(60)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::config::{Host, PinnedCerts, TlsConfig, Trust};
    use crate::dev_master::fixtures;
    use crate::link::{LinkSettings, MasterSetAgentOptions, Peer, ProxyEnv, RawJson, TlsInfo};
    use crate::tls::{CertSource, ReliedOn, Role};
    use crate::x509::{CertSummary, Fingerprint};

    /// The log lines written while `f` runs.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn target(state_file: PathBuf) -> Target {
        let pinned = PinnedCerts {
            path: fixtures::path("root-ca.pem"),
            certs: fixtures::certs("root-ca.pem"),
            store_entry: None,
        };
        let mut config = Config::new(Host::parse("localhost").unwrap(), Some(TlsConfig::new(Trust::Pinned(pinned))));
        config.state_file = state_file;
        Target::new(config, ProxyEnv::none(), LinkSettings::default()).unwrap()
    }

    /// A handshake that relied on the fixture master certificate (it ends 2124-01-01).
    fn peer() -> Peer {
        let leaf = CertSummary::parse(&fixtures::certs("master.pem")[0]).unwrap();
        let tls = TlsInfo {
            version: "TLSv1_3".into(),
            cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
            fingerprint: Fingerprint([0; 32]),
            verified_name: "localhost".into(),
            sni_sent: true,
            resumed: false,
            chain: fixtures::certs("master.pem"),
            relied_on: vec![ReliedOn::from_summary(Role::Master, &leaf, CertSource::Presented)],
        };
        Peer { address: "127.0.0.1:8443".parse().unwrap(), proxy: None, tls: Some(tls) }
    }

    const END: i64 = 4_859_740_800; // 2124-01-01T00:00:00Z

    #[test]
    fn a_certificate_near_its_end_is_warned_once_a_day_then_as_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let target = target(dir.path().join("master.json"));
        let (peer, options) = (peer(), MasterSetAgentOptions::default());
        let registered = |reporters: &mut Reporters| {
            reporters.event(&Event::Registered {
                attempt: 1,
                peer: &peer,
                target: &target,
                options: &options,
                reconnect: false,
            })
        };

        // 40 days before the end: nothing.
        let mut reporters = Reporters::new(&target, Arc::new(Notifier::disabled()), Metrics::disabled())
            .with_clock(|| Timestamp(END - 40 * 86_400));
        assert!(logged(|| registered(&mut reporters)).iter().all(|l| !l.contains("expires")));

        // 20 days before: one warning, and not again on a reconnect the same day.
        let mut reporters = Reporters::new(&target, Arc::new(Notifier::disabled()), Metrics::disabled())
            .with_clock(|| Timestamp(END - 20 * 86_400));
        let first = logged(|| registered(&mut reporters));
        let warnings: Vec<&String> = first.iter().filter(|l| l.contains("expires in 20 days")).collect();
        assert_eq!(warnings.len(), 1, "{first:?}");
        assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
        let again = logged(|| registered(&mut reporters));
        assert!(again.iter().all(|l| !l.contains("expires in")), "{again:?}");

        // 3 days before: an error, at once (the heartbeat's hourly check finds it).
        let mut reporters = Reporters::new(&target, Arc::new(Notifier::disabled()), Metrics::disabled())
            .with_clock(|| Timestamp(END - 3 * 86_400));
        let lines = logged(|| registered(&mut reporters));
        assert!(lines.iter().any(|l| l.contains("ERROR") && l.contains("expires in 3 days")), "{lines:?}");
    }

    #[test]
    fn registration_records_the_masters_identity() {
        let dir = tempfile::tempdir().unwrap();
        let target = target(dir.path().join("master.json"));
        let peer = peer();
        let info =
            serde_json::json!({"version": "0.38.0", "cluster_id": "c-1", "master_id": "m-1", "cluster_name": "prod"});
        let options =
            MasterSetAgentOptions { master_info: RawJson::of(&info).unwrap(), ..MasterSetAgentOptions::default() };
        let mut reporters = Reporters::new(&target, Arc::new(Notifier::disabled()), Metrics::disabled());
        reporters.event(&Event::Registered {
            attempt: 1,
            peer: &peer,
            target: &target,
            options: &options,
            reconnect: false,
        });
        let record = crate::state_file::read(&dir.path().join("master.json")).unwrap().unwrap();
        assert_eq!((record.cluster_id.as_str(), record.master_id.as_str()), ("c-1", "m-1"));
    }
}
