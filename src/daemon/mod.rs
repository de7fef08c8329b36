//! `det-agent run`: keep one verified, registered link to the master, through restarts,
//! outages and certificate changes, never trusting more than configured.
//!
//! The loop: connect → run the link until it ends → wait a jittered delay ([`backoff`])
//! → connect again. Reconnects after a registration say `reconnect=true`; a master that
//! answers "past reconnect period" gets a fresh registration. Controls arrive on a
//! channel (the binary maps SIGTERM/SIGINT and SIGHUP onto it): `Shutdown` closes the
//! websocket and returns, `Reload` re-reads the configuration into a new [`Target`]
//! (so a new TLS client configuration and session cache) used from the next connection.
//!
//! [`backoff`]: crate::backoff

mod load;

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tracing::{error, info, warn};

use crate::backoff::{random_unit, Backoff};
use crate::link::{self, Ended, FromMaster, LinkError, Target, ToMaster};

pub use load::{load, LoadError};

/// What the daemon is asked to do while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read the configuration (SIGHUP).
    Reload,
    /// Close the websocket and return (SIGTERM, SIGINT).
    Shutdown,
}

/// Daemon behaviour beyond the configuration file.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// After a successful reload, drop the current link and connect with the new settings at once.
    pub reconnect_on_reload: bool,
    /// A link that stayed up this long resets the backoff and the failure count.
    pub healthy_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options { reconnect_on_reload: false, healthy_after: Duration::from_secs(60) }
    }
}

/// The application side of the link: messages from the master the daemon does not
/// handle itself, and messages to send.
#[derive(Debug)]
pub struct Channels {
    /// Receives the master's messages (`StartContainer`, …).
    pub inbound: mpsc::Sender<FromMaster>,
    /// Messages for the master.
    pub outbound: mpsc::Receiver<ToMaster>,
}

/// Why the daemon stopped other than by request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// `agent_reconnect_attempts` consecutive attempts failed.
    #[error("gave up after {attempts} consecutive failed attempts (agent_reconnect_attempts); the last: {last}")]
    GaveUp {
        /// How many.
        attempts: u32,
        /// The last failure, explained.
        last: String,
    },
    /// The master sent `AgentShutdown`.
    #[error("the master told this agent to shut down: {}", crate::text::escape(.0))]
    MasterShutdown(String),
}

/// Runs until `Control::Shutdown` (or the control channel closes): `Ok`. Gives up only
/// as `agent_reconnect_attempts` says, or when the master says so.
///
/// `reload` builds a new target from the configuration sources; when it fails, the
/// error is logged and the running configuration kept.
///
/// # Errors
/// [`DaemonError`].
pub async fn run(
    mut target: Target,
    mut reload: impl FnMut() -> Result<Target, LoadError>,
    options: Options,
    controls: &mut mpsc::Receiver<Control>,
    mut channels: Channels,
) -> Result<(), DaemonError> {
    let mut registered_before = false;
    let mut failures: u32 = 0;
    let mut waits: u32 = 0;
    let mut fold = Fold::default();
    let mut delay: Option<Duration> = None;
    let mut next: Option<Target> = None;
    loop {
        if let Some(wait) = delay.take() {
            info!(delay_ms = wait.as_millis() as u64, retry = waits, "waiting before reconnecting");
            waits = waits.saturating_add(1);
            let deadline = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = sleep_until(deadline) => break,
                    control = controls.recv() => match control {
                        Some(Control::Reload) => {
                            if apply_reload(&mut reload, &mut next) && options.reconnect_on_reload {
                                break;
                            }
                        }
                        Some(Control::Shutdown) | None => return shut_down(),
                    },
                }
            }
        }
        if let Some(t) = next.take() {
            target = t;
        }

        let mode = target.config.mode_name();
        let verified_name = target.config.tls.as_ref().map(|_| target.config.server_name().to_str().into_owned());
        info!(target = %target.authority(), mode, verified_name, reconnect = registered_before, "connecting");
        let connecting = link::connect(&target, registered_before);
        tokio::pin!(connecting);
        let result = loop {
            tokio::select! {
                result = &mut connecting => break Some(result),
                control = controls.recv() => match control {
                    Some(Control::Reload) => {
                        if apply_reload(&mut reload, &mut next) && options.reconnect_on_reload {
                            break None;
                        }
                    }
                    Some(Control::Shutdown) | None => return shut_down(),
                },
            }
        };
        let Some(result) = result else { continue }; // reloaded: connect with the new target now

        let link = match result {
            Ok(link) => link,
            Err(LinkError::PastReconnect { said_in }) if registered_before => {
                warn!(%said_in, "the master no longer expects this agent; registering afresh");
                registered_before = false;
                continue;
            }
            Err(err) => {
                failures = failures.saturating_add(1);
                fold.failed(&err.to_string(), failures);
                if out_of_attempts(&target, failures) {
                    return Err(DaemonError::GaveUp { attempts: failures, last: err.to_string() });
                }
                delay = Some(schedule(&target).delay(waits, random_unit()));
                continue;
            }
        };

        fold.recovered();
        let peer = link.peer().clone();
        if let Some(tls) = &peer.tls {
            info!(address = %peer.address, fingerprint = %tls.fingerprint, tls_version = %tls.version,
                verified_name = %tls.verified_name, resumed = tls.resumed, proxy = peer.proxy, "TLS verified");
        } else {
            warn!(address = %peer.address, proxy = peer.proxy, "connected WITHOUT TLS: not encrypted, master not verified");
        }
        info!(agent_id = %target.config.agent_id, reconnect = registered_before,
            resource_pool = %target.config.resource_pool, "registered");
        registered_before = true;

        let up_since = Instant::now();
        let stop = wait_for_stop(controls, &mut reload, &mut next, options.reconnect_on_reload);
        let ended = link.run(&channels.inbound, &mut channels.outbound, stop).await;
        let healthy = up_since.elapsed() >= options.healthy_after;
        match ended {
            Ended::Stopped(Stop::Shutdown) => return shut_down(),
            Ended::Stopped(Stop::Reload) => {
                info!("reconnecting now with the reloaded configuration");
                (failures, waits) = (0, 0);
                continue;
            }
            Ended::MasterShutdown { err_msg } => {
                error!(err_msg = %crate::text::escape(&err_msg), "the master told this agent to shut down");
                return Err(DaemonError::MasterShutdown(err_msg));
            }
            other => {
                let reason = other.to_string();
                warn!(%reason, up_for_s = up_since.elapsed().as_secs(), "disconnected");
                if other.past_reconnect() {
                    registered_before = false;
                }
            }
        }
        if healthy {
            (failures, waits) = (0, 0);
        } else {
            // A link that drops at once is a failed attempt: flapping backs off and counts.
            failures = failures.saturating_add(1);
            if out_of_attempts(&target, failures) {
                return Err(DaemonError::GaveUp { attempts: failures, last: "the link kept dropping".to_owned() });
            }
        }
        delay = Some(schedule(&target).delay(waits, random_unit()));
    }
}

/// `agent_reconnect_attempts` > 0 and that many consecutive failures reached.
fn out_of_attempts(target: &Target, failures: u32) -> bool {
    let limit = target.config.agent_reconnect_attempts;
    limit > 0 && failures >= limit
}

fn schedule(target: &Target) -> Backoff {
    Backoff::new(target.config.agent_reconnect_backoff, target.config.agent_reconnect_backoff_max)
}

fn shut_down() -> Result<(), DaemonError> {
    info!("shut down");
    Ok(())
}

enum Stop {
    Shutdown,
    Reload,
}

/// While a link runs: handles reloads, and completes when the link must stop.
async fn wait_for_stop(
    controls: &mut mpsc::Receiver<Control>,
    reload: &mut impl FnMut() -> Result<Target, LoadError>,
    next: &mut Option<Target>,
    reconnect_on_reload: bool,
) -> Stop {
    loop {
        match controls.recv().await {
            Some(Control::Reload) => {
                if apply_reload(reload, next) && reconnect_on_reload {
                    return Stop::Reload;
                }
            }
            Some(Control::Shutdown) | None => return Stop::Shutdown,
        }
    }
}

/// Runs `reload`; on success the new target waits in `next` for the next connection.
fn apply_reload(reload: &mut impl FnMut() -> Result<Target, LoadError>, next: &mut Option<Target>) -> bool {
    match reload() {
        Ok(target) => {
            let mode = target.config.mode_name();
            info!(target = %target.authority(), mode, "configuration reloaded; it applies from the next connection");
            *next = Some(target);
            true
        }
        Err(err) => {
            error!(%err, "reload failed; keeping the running configuration");
            false
        }
    }
}

/// Folds identical consecutive failures: the first is logged in full, repeats as one
/// line with a count, and the count is reported when the failure changes or ends.
#[derive(Debug, Default)]
struct Fold {
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
