//! The metric families, their names and help text, and the two text expositions.
//!
//! Names follow Prometheus' conventions: the `det_agent_` prefix, base units in the name
//! (`_seconds`), `_total` on counters (prometheus-client appends it), timestamps as
//! `_timestamp_seconds`. Every label value is a fixed word (see [`super::outcome`]), and
//! every series a label can take exists from the start, at 0.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{prometheus_text, text as openmetrics_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use super::outcome::{ConnectOutcome, LinkDrop};
use super::TrustMode;

/// A label set: fixed keys, fixed values.
pub(super) type Labels = Vec<(&'static str, &'static str)>;

/// Upper bounds of the reconnect wait histogram, in seconds: the backoff's range, from
/// sub-second test settings up to `agent_reconnect_backoff_max`'s limit of an hour.
const WAIT_BUCKETS: [f64; 13] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// The text formats `/metrics` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, which Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus text format 0.0.4: for curl, `promtool check metrics` and older scrapers.
    Prometheus,
}

impl Format {
    /// The response's `Content-Type`.
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
        }
    }

    /// The format a request's `Accept` header prefers: OpenMetrics when it lists
    /// `application/openmetrics-text` at a quality no lower than `text/plain`'s (as
    /// Prometheus does), else the Prometheus text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let quality = |wanted: &str| -> f32 {
            let Some(accept) = accept else { return 0.0 };
            accept
                .split(',')
                .filter_map(|range| {
                    let mut parts = range.split(';');
                    let media = parts.next()?.trim();
                    if !media.eq_ignore_ascii_case(wanted) {
                        return None;
                    }
                    let q = parts
                        .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                        .find_map(|q| q.trim().parse::<f32>().ok())
                        .unwrap_or(1.0);
                    Some(q)
                })
                .fold(0.0, f32::max)
        };
        let openmetrics = quality("application/openmetrics-text");
        if openmetrics > 0.0 && openmetrics >= quality("text/plain") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }
}

/// Every metric, registered once.
#[derive(Debug)]
pub(super) struct Families {
    registry: Registry,
    pub link_up: Gauge,
    pub connect_attempts: Family<Labels, Counter>,
    pub link_drops: Family<Labels, Counter>,
    pub reconnect_delay: Gauge<f64, AtomicU64>,
    pub reconnect_wait: Histogram,
    pub last_frame: Gauge<f64, AtomicU64>,
    pub messages_received: Counter,
    pub messages_sent: Counter,
    pub certificate_not_after: Family<Labels, Gauge>,
    pub trust_mode: Family<Labels, Gauge>,
    pub reloads: Family<Labels, Counter>,
    pub last_reload_successful: Gauge,
}

impl Families {
    pub fn new() -> Families {
        let mut families = Families {
            registry: Registry::with_prefix("det_agent"),
            link_up: Gauge::default(),
            connect_attempts: Family::default(),
            link_drops: Family::default(),
            reconnect_delay: Gauge::default(),
            reconnect_wait: Histogram::new(WAIT_BUCKETS),
            last_frame: Gauge::default(),
            messages_received: Counter::default(),
            messages_sent: Counter::default(),
            certificate_not_after: Family::default(),
            trust_mode: Family::default(),
            reloads: Family::default(),
            last_reload_successful: Gauge::default(),
        };
        let r = &mut families.registry;
        r.register("build", "det-agent's version", Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]));
        r.register(
            "link_up",
            "1 while the agent is registered with the master over a live websocket, else 0",
            families.link_up.clone(),
        );
        r.register(
            "connect_attempts",
            "Connection attempts to the master by outcome: registered, rejected (reason: the verifier's rejection kind), tls_error, network_error, proxy_refused, timeout (reason: stage), upgrade_refused (reason: HTTP status class), past_reconnect, protocol_error",
            families.connect_attempts.clone(),
        );
        r.register(
            "link_drops",
            "Registered links that ended, by reason: agent (shutdown or reload), master_closed, master_shutdown, silent (no frame within the read deadline), failed",
            families.link_drops.clone(),
        );
        r.register_with_unit(
            "reconnect_delay",
            "The delay of the latest wait before reconnecting",
            Unit::Seconds,
            families.reconnect_delay.clone(),
        );
        r.register_with_unit(
            "reconnect_wait",
            "Delays waited before reconnecting",
            Unit::Seconds,
            families.reconnect_wait.clone(),
        );
        r.register_with_unit(
            "last_frame_timestamp",
            "Unix time of the latest frame from the master (messages, pings and pongs alike); 0 before the first. Seconds since: time() - det_agent_last_frame_timestamp_seconds",
            Unit::Seconds,
            families.last_frame.clone(),
        );
        r.register(
            "messages_received",
            "Agent protocol messages received from the master (not pings)",
            families.messages_received.clone(),
        );
        r.register(
            "messages_sent",
            "Agent protocol messages sent to the master (not pings)",
            families.messages_sent.clone(),
        );
        r.register_with_unit(
            "master_certificate_not_after_timestamp",
            "notAfter of the certificate the master presented on the latest connection, as Unix time, by trust mode; absent without TLS",
            Unit::Seconds,
            families.certificate_not_after.clone(),
        );
        r.register(
            "trust_mode",
            "1 for the trust mode of the latest connection (ca, pinned, skip-verify, key-pin, plain), 0 for the others",
            families.trust_mode.clone(),
        );
        r.register(
            "config_reloads",
            "Configuration reloads (SIGHUP) by outcome: success, failure",
            families.reloads.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "0 while the latest configuration reload has failed (the running configuration is kept), else 1",
            families.last_reload_successful.clone(),
        );

        for outcome in ConnectOutcome::all() {
            let _ = families.connect_attempts.get_or_create(&attempt_labels(&outcome));
        }
        for drop in LinkDrop::ALL {
            let _ = families.link_drops.get_or_create(&vec![("reason", drop.label())]);
        }
        for mode in TrustMode::ALL {
            let _ = families.trust_mode.get_or_create(&vec![("mode", mode.as_str())]);
        }
        for outcome in ["success", "failure"] {
            let _ = families.reloads.get_or_create(&vec![("outcome", outcome)]);
        }
        families.last_reload_successful.set(1);
        families
    }

    /// The exposition in `format`.
    pub fn encode(&self, format: Format) -> Result<String, std::fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        match format {
            Format::OpenMetrics => openmetrics_text::encode(&mut text, &self.registry)?,
            Format::Prometheus => prometheus_text::encode(&mut text, &self.registry)?,
        }
        Ok(text)
    }
}

/// `outcome`, and `reason` when the outcome has one.
pub(super) fn attempt_labels(outcome: &ConnectOutcome) -> Labels {
    let mut labels = vec![("outcome", outcome.outcome())];
    if let Some(reason) = outcome.reason() {
        labels.push(("reason", reason));
    }
    labels
}
