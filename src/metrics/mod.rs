//! The daemon's opt-in Prometheus/OpenMetrics endpoint and health check.
//!
//! [`Metrics`] is the handle the daemon calls at each event: a connection attempt's
//! outcome, the link going up or down, a reconnect delay, a frame or message, the master's
//! certificate, a reload, and the health `/healthz` reports. It is cheap to clone, and
//! [`Metrics::disabled`] makes every call a no-op, so the daemon calls it unconditionally
//! whether `metrics.listen` is set or not.
//!
//! [`serve`] answers `GET /metrics` (OpenMetrics or Prometheus text, as the scraper
//! asks) and `GET /healthz` (200 while registered, 503 otherwise, with the reason in one
//! escaped line) on a listener bound from a [`Listen`] address. The daemon spawns it and
//! aborts it to stop.
//!
//! Security: every label value is a fixed word, never text from the network, so series
//! stay bounded whatever the master sends; `/healthz` escapes what it quotes.

mod health;
mod http;
mod listen;
mod mode;
mod outcome;
mod registry;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use health::Health;
pub use http::serve;
pub use listen::{BindError, Listen, ListenError};
pub use mode::TrustMode;
pub use outcome::{ConnectOutcome, LinkDrop, NetworkStage, TimeoutStage, TlsFailure};
pub use registry::Format;

use crate::link::{Ended, LinkError};
use crate::x509::Timestamp;
use registry::{attempt_labels, Families};

/// The handle the daemon records events through. Clones share the same metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    families: Families,
    health: Mutex<Health>,
}

/// A link's traffic, counted: every frame marks when the master was last heard.
impl crate::link::Tap for Metrics {
    fn frame(&self) {
        self.last_frame(SystemTime::now());
    }

    fn message_in(&self) {
        Metrics::message_in(self);
    }

    fn message_out(&self) {
        Metrics::message_out(self);
    }
}

impl Metrics {
    /// Metrics on: every series at its starting value, health [`Health::starting`].
    pub fn new() -> Metrics {
        Metrics { inner: Some(Arc::new(Inner { families: Families::new(), health: Mutex::new(Health::starting()) })) }
    }

    /// Metrics off: every call does nothing, [`serve`] returns at once.
    pub fn disabled() -> Metrics {
        Metrics { inner: None }
    }

    /// Whether this handle records anything.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    fn with(&self, record: impl FnOnce(&Families)) {
        if let Some(inner) = &self.inner {
            record(&inner.families);
        }
    }

    /// Counts one connection attempt by how it ended.
    pub fn connect_outcome(&self, outcome: ConnectOutcome) {
        self.with(|f| {
            f.connect_attempts.get_or_create(&attempt_labels(&outcome)).inc();
        });
    }

    /// Counts one failed attempt, classified from the link's error.
    pub fn connect_failed(&self, error: &LinkError) {
        self.connect_outcome(ConnectOutcome::of(error));
    }

    /// Whether the agent is now registered over a live link (`det_agent_link_up`).
    pub fn link_up(&self, up: bool) {
        self.with(|f| {
            f.link_up.set(i64::from(up));
        });
    }

    /// Counts a registered link that ended, by how (`det_agent_link_drops_total`).
    pub fn link_ended<S>(&self, ended: &Ended<S>) {
        self.with(|f| {
            f.link_drops.get_or_create(&vec![("reason", LinkDrop::of(ended).label())]).inc();
        });
    }

    /// The delay chosen before the next attempt: the gauge and the histogram.
    pub fn reconnect_delay(&self, delay: Duration) {
        self.with(|f| {
            f.reconnect_delay.set(delay.as_secs_f64());
            f.reconnect_wait.observe(delay.as_secs_f64());
        });
    }

    /// Counts a message received from the master.
    pub fn message_in(&self) {
        self.with(|f| {
            f.messages_received.inc();
        });
    }

    /// Counts a message sent to the master.
    pub fn message_out(&self) {
        self.with(|f| {
            f.messages_sent.inc();
        });
    }

    /// A frame (message, ping or pong) arrived from the master at `at`.
    pub fn last_frame(&self, at: SystemTime) {
        self.with(|f| {
            f.last_frame.set(at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()));
        });
    }

    /// After a connection: the trust mode it used and, with TLS, the master certificate's
    /// notAfter. Replaces the previous connection's values, so a reload that changes the
    /// mode or a renewed certificate leaves one series, not two.
    pub fn certificate(&self, not_after: Option<Timestamp>, mode: TrustMode) {
        self.with(|f| {
            for m in TrustMode::ALL {
                f.trust_mode.get_or_create(&vec![("mode", m.as_str())]).set(i64::from(m == mode));
            }
            f.certificate_not_after.clear();
            if let Some(Timestamp(seconds)) = not_after {
                f.certificate_not_after.get_or_create(&vec![("mode", mode.as_str())]).set(seconds);
            }
        });
    }

    /// Counts a configuration reload, and whether the latest one worked.
    pub fn reload(&self, ok: bool) {
        self.with(|f| {
            f.reloads.get_or_create(&vec![("outcome", if ok { "success" } else { "failure" })]).inc();
            f.last_reload_successful.set(i64::from(ok));
        });
    }

    /// What `/healthz` reports from now on.
    pub fn health(&self, health: Health) {
        if let Some(inner) = &self.inner {
            *inner.health.lock().unwrap_or_else(PoisonError::into_inner) = health;
        }
    }

    /// The current health; `None` when metrics are off.
    pub fn current_health(&self) -> Option<Health> {
        self.inner.as_ref().map(|inner| inner.health.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// The exposition `/metrics` serves; `None` when metrics are off.
    ///
    /// # Errors
    /// Only if prometheus-client fails to write text into a `String`, which it does not.
    pub fn encode(&self, format: Format) -> Option<Result<String, std::fmt::Error>> {
        self.inner.as_ref().map(|inner| inner.families.encode(format))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(metrics: &Metrics, format: Format) -> Vec<String> {
        metrics.encode(format).unwrap().unwrap().lines().map(str::to_owned).collect()
    }

    fn has(metrics: &Metrics, format: Format, line: &str) -> bool {
        lines(metrics, format).iter().any(|l| l == line)
    }

    #[test]
    fn starts_with_every_series_at_zero() {
        let m = Metrics::new();
        let text = lines(&m, Format::OpenMetrics);
        assert_eq!(text.last().map(String::as_str), Some("# EOF"));
        for line in [
            "det_agent_link_up 0",
            "det_agent_connect_attempts_total{outcome=\"registered\"} 0",
            "det_agent_connect_attempts_total{outcome=\"rejected\",reason=\"key_pin_mismatch\"} 0",
            "det_agent_connect_attempts_total{outcome=\"upgrade_refused\",reason=\"other\"} 0",
            "det_agent_link_drops_total{reason=\"silent\"} 0",
            "det_agent_trust_mode{mode=\"skip-verify\"} 0",
            "det_agent_config_reloads_total{outcome=\"failure\"} 0",
            "det_agent_config_last_reload_successful 1",
            "det_agent_last_frame_timestamp_seconds 0.0",
            "det_agent_reconnect_wait_seconds_count 0",
            &format!("det_agent_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
        ] {
            assert!(text.iter().any(|l| l == line), "missing {line:?} in\n{}", text.join("\n"));
        }
        assert!(!text.iter().any(|l| l.starts_with("det_agent_master_certificate_not_after")));
        assert_eq!(text.iter().filter(|l| l.starts_with("det_agent_connect_attempts_total{")).count(), 35);
    }

    #[test]
    fn records_events() {
        let m = Metrics::new();
        let clone = m.clone();
        clone.connect_outcome(ConnectOutcome::UpgradeRefused(403));
        m.connect_outcome(ConnectOutcome::UpgradeRefused(404));
        m.link_up(true);
        m.message_in();
        m.message_in();
        m.message_out();
        m.reconnect_delay(Duration::from_millis(1500));
        m.last_frame(UNIX_EPOCH + Duration::from_millis(1_700_000_000_250));
        m.reload(false);
        let om = Format::OpenMetrics;
        assert!(has(&m, om, "det_agent_connect_attempts_total{outcome=\"upgrade_refused\",reason=\"4xx\"} 2"));
        assert!(has(&m, om, "det_agent_link_up 1"));
        assert!(has(&m, om, "det_agent_messages_received_total 2"));
        assert!(has(&m, om, "det_agent_messages_sent_total 1"));
        assert!(has(&m, om, "det_agent_reconnect_delay_seconds 1.5"));
        assert!(has(&m, om, "det_agent_reconnect_wait_seconds_bucket{le=\"1.0\"} 0"));
        assert!(has(&m, om, "det_agent_reconnect_wait_seconds_bucket{le=\"2.0\"} 1"));
        assert!(has(&m, om, "det_agent_last_frame_timestamp_seconds 1700000000.25"));
        assert!(has(&m, om, "det_agent_config_reloads_total{outcome=\"failure\"} 1"));
        assert!(has(&m, om, "det_agent_config_last_reload_successful 0"));
        m.reload(true);
        assert!(has(&m, om, "det_agent_config_last_reload_successful 1"));
    }

    #[test]
    fn one_certificate_series_for_the_latest_connection() {
        let m = Metrics::new();
        m.certificate(Some(Timestamp(1_800_000_000)), TrustMode::Pinned);
        m.certificate(Some(Timestamp(1_900_000_000)), TrustMode::Ca);
        let om = Format::OpenMetrics;
        let cert: Vec<String> = lines(&m, om).into_iter().filter(|l| l.starts_with("det_agent_master_cert")).collect();
        assert_eq!(cert, ["det_agent_master_certificate_not_after_timestamp_seconds{mode=\"ca\"} 1900000000"]);
        assert!(has(&m, om, "det_agent_trust_mode{mode=\"ca\"} 1"));
        assert!(has(&m, om, "det_agent_trust_mode{mode=\"pinned\"} 0"));
        m.certificate(None, TrustMode::Plain);
        assert!(!lines(&m, om)
            .iter()
            .any(|l| l.starts_with("det_agent_master_certificate_not_after_timestamp_seconds{")));
        assert!(has(&m, om, "det_agent_trust_mode{mode=\"plain\"} 1"));
        assert!(has(&m, om, "det_agent_trust_mode{mode=\"ca\"} 0"));
    }

    #[test]
    fn disabled_records_nothing_and_costs_a_pointer() {
        let m = Metrics::disabled();
        m.link_up(true);
        m.health(Health::starting());
        assert!(!m.is_enabled() && m.encode(Format::Prometheus).is_none() && m.current_health().is_none());
        assert_eq!(std::mem::size_of::<Metrics>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn accept_header_picks_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("text/plain, application/openmetrics-text;q=0.5")), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("application/openmetrics-text; q=0")), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("Application/OpenMetrics-Text")), Format::OpenMetrics);
    }
}
