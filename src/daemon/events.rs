//! Every state change of the daemon, as one [`Event`], emitted in one place
//! ([`Hub::emit`](super::controls::Hub::emit)): logged there, then handed to the
//! embedder's [`Observer`], where sd_notify, metrics and the like hook in.

use std::time::Duration;

use tracing::{error, info, warn};

use crate::backoff::Failure;
use crate::config::TlsConfig;
use crate::dial::Peer;
use crate::link::{Ended, LinkError, MasterSetAgentOptions, SaidIn, Target};

use super::{LoadError, Stop};

/// A state change of the daemon.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event<'a> {
    /// An attempt starts: dial, TLS, upgrade, registration.
    Connecting {
        /// The attempt's number, from 1, for the life of the daemon.
        attempt: u64,
        /// What is dialed.
        target: &'a Target,
        /// Whether it says `reconnect=true`.
        reconnect: bool,
    },
    /// The attempt failed.
    ConnectFailed {
        /// The attempt.
        attempt: u64,
        /// Why.
        error: &'a LinkError,
        /// How it counts for the schedule.
        failure: Failure,
        /// Consecutive failures so far (attempts and unhealthy links).
        consecutive: u32,
    },
    /// The master no longer holds this agent: it registers afresh (`reconnect=false`).
    MustRegisterAfresh {
        /// Where the master said so.
        said_in: SaidIn,
    },
    /// Verified and registered.
    Registered {
        /// The attempt.
        attempt: u64,
        /// What was reached, and how it was verified.
        peer: &'a Peer,
        /// The target.
        target: &'a Target,
        /// What the master sent first (its `MasterInfo`: cluster and master IDs, version).
        options: &'a MasterSetAgentOptions,
        /// Whether it was a reconnect.
        reconnect: bool,
    },
    /// A registered link ended.
    Disconnected {
        /// How.
        ended: &'a Ended<Stop>,
        /// How long it was up.
        up_for: Duration,
    },
    /// Waiting before the next attempt.
    Waiting {
        /// How long.
        delay: Duration,
    },
    /// A reload starts (SIGHUP): the configuration is read again.
    Reloading,
    /// A reload succeeded.
    Reloaded {
        /// The new target, used from the next connection.
        target: &'a Target,
        /// Whether the agent's registration (ID, pool, devices) changed.
        registration_changed: bool,
        /// Whether the daemon reconnects at once.
        reconnect_now: bool,
    },
    /// A reload failed; the running configuration stays.
    ReloadFailed {
        /// Why.
        error: &'a LoadError,
    },
    /// The daemon stops, by request.
    ShuttingDown,
    /// The daemon's loop is alive: every `Options::heartbeat`, from the loop task itself,
    /// whatever it is doing (waiting, connecting, running a link). Not logged.
    Heartbeat,
}

/// Receives every [`Event`], after the daemon has logged it.
pub trait Observer: Send {
    /// One state change.
    fn event(&mut self, event: &Event<'_>);
}

/// No observer.
impl Observer for () {
    fn event(&mut self, _: &Event<'_>) {}
}

/// Logs `event`: one line per state change, fields as text (never Rust's Debug).
pub(super) fn log(event: &Event<'_>, fold: &mut Fold) {
    match event {
        Event::Connecting { target, reconnect, .. } => {
            let mode = target.config.mode_name();
            let verified_name = (target.config.tls.as_ref().is_some_and(TlsConfig::checks_names))
                .then(|| target.config.server_name().to_str().into_owned());
            info!(target = %target.authority(), mode, verified_name, reconnect, "connecting");
        }
        Event::ConnectFailed { error, consecutive, .. } => fold.failed(&error.to_string(), *consecutive),
        Event::MustRegisterAfresh { said_in } => {
            warn!(%said_in, "the master no longer holds this agent (past its reconnect period); registering afresh");
        }
        Event::Registered { peer, target, reconnect, .. } => {
            fold.recovered();
            if let Some(tls) = &peer.tls {
                let proxy = peer.proxy.as_deref().unwrap_or("none");
                let config = target.config.tls.as_ref();
                if config.is_some_and(TlsConfig::unauthenticated) {
                    warn!(address = %peer.address, fingerprint = %tls.fingerprint, tls_version = %tls.version,
                        proxy, "TLS accepted WITHOUT verification (skip_verify): encrypted, but the master's identity is not checked");
                } else if !config.is_some_and(TlsConfig::checks_names) {
                    info!(address = %peer.address, fingerprint = %tls.fingerprint, tls_version = %tls.version,
                        resumed = tls.resumed, proxy, "TLS verified by key pin (names not checked)");
                } else {
                    info!(address = %peer.address, fingerprint = %tls.fingerprint, tls_version = %tls.version,
                        verified_name = %tls.verified_name, resumed = tls.resumed, proxy, "TLS verified");
                }
            } else {
                let proxy = peer.proxy.as_deref().unwrap_or("none");
                warn!(address = %peer.address, proxy, "connected WITHOUT TLS: not encrypted, master not verified");
            }
            info!(agent_id = %target.config.agent_id, reconnect, resource_pool = %target.resource_pool(), "registered");
        }
        Event::Disconnected { ended: Ended::Stopped(_), .. } => {}
        Event::Disconnected { ended: ended @ Ended::MasterShutdown { .. }, .. } => {
            error!(reason = %ended, "the master shut this agent's registration down; registering afresh");
        }
        Event::Disconnected { ended, up_for } => {
            warn!(reason = %ended, up_for_s = up_for.as_secs(), "disconnected");
        }
        Event::Waiting { delay } => {
            info!(delay_ms = delay.as_millis() as u64, "waiting before reconnecting");
        }
        Event::Reloaded { target, registration_changed, reconnect_now } => {
            let mode = target.config.mode_name();
            let applies = match (registration_changed, reconnect_now) {
                (true, _) => "it changes this agent's registration (ID, resource pool or devices): reconnecting now",
                (false, true) => "reconnecting now",
                (false, false) => "it applies from the next connection",
            };
            info!(target = %target.authority(), mode, resource_pool = %target.resource_pool(),
                "configuration reloaded; {applies}");
        }
        Event::ReloadFailed { error: err } => {
            error!(%err, "reload failed; keeping the running configuration");
        }
        Event::ShuttingDown => info!("shut down"),
        Event::Reloading | Event::Heartbeat => {}
    }
}

/// Folds identical consecutive failures: the first is logged in full, repeats as one
/// line with a count, and the count is reported when the failure changes or ends.
#[derive(Debug, Default)]
pub(super) struct Fold {
    last: Option<String>,
    repeats: u32,
}

impl Fold {
    fn failed(&mut self, message: &str, attempt: u32) {
        if self.last.as_deref() == Some(message) {
            self.repeats += 1;
            let first_line = message.lines().next().unwrap_or(message);
            warn!(attempt, "connection failed again: {first_line} … repeated {} times", self.repeats);
            return;
        }
        self.flush();
        error!(attempt, "connection failed: {message}");
        self.last = Some(message.to_owned());
    }

    fn recovered(&mut self) {
        self.flush();
        self.last = None;
    }

    fn flush(&mut self) {
        if self.repeats > 0 {
            info!("the previous failure repeated {} times", self.repeats);
        }
        self.repeats = 0;
    }
}
