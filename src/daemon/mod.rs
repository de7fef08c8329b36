//! `det-agent run`: keep one verified, registered link to the master, through restarts,
//! outages and certificate changes, never trusting more than configured, and following
//! the master's agent lifecycle (`master/internal/rm/agentrm/agent.go`).
//!
//! The loop: connect → run the link until it ends → wait for the next phase point
//! ([`crate::backoff`]: one [`Pacer`] per process, a [`Schedule`] per target, every
//! failure classified by [`classify`]) → connect again. Reconnects after a registration
//! say `reconnect=true`. When the master no longer holds the agent (HTTP 500 "past
//! reconnect period", or `AgentShutdown` because its devices or pool changed), the agent
//! registers afresh at once with `reconnect=false`.
//!
//! Controls arrive on a channel (the binary maps SIGTERM/SIGINT and SIGHUP onto it) and
//! are read in one place (`controls.rs`): `Shutdown` closes the websocket and returns;
//! `Reload` builds a new [`Target`] (a new TLS client configuration and session cache)
//! for the next connection, on tokio's blocking pool while the link goes on, and
//! reconnects at once when it changes the agent's registration (ID, pool, devices) or
//! with `reconnect_on_reload`.
//!
//! Every state change is one [`Event`], logged and handed to an [`Observer`] in one
//! place: that is where sd_notify, metrics and the like hook in.

mod controls;
mod events;
mod failure;
mod hook;
mod load;
mod no_containers;
mod report;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{sleep, Instant};
use tracing::Instrument;

use crate::backoff::{Pacer, Phase, Schedule};
use crate::link::{self, Ended, FromMaster, LinkError, Tap, Target, ToMaster};

pub use events::{Event, Observer};
pub use failure::classify;
pub use hook::on_connection_lost;
pub use load::{load, LoadError};
pub use no_containers::{serve_without_containers, NoContainers, RUNS_NO_CONTAINERS};
pub use report::{heartbeat, Reporters, EXPIRY_CHECK_EVERY};

/// What the daemon is asked to do while it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read the configuration (SIGHUP).
    Reload,
    /// Close the websocket and return (SIGTERM, SIGINT).
    Shutdown,
}

/// Why the daemon interrupts what it is doing: the output of a link's `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Shut down.
    Shutdown,
    /// Reconnect at once with a reloaded configuration.
    Reconnect,
}

/// Daemon behaviour beyond the configuration file.
#[derive(Clone)]
pub struct Options {
    /// After a successful reload, drop the current link and connect with the new settings
    /// at once (a reload that changes the agent's registration always does).
    pub reconnect_on_reload: bool,
    /// A link that stayed up this long resets the failure count and the failing streak.
    pub healthy_after: Duration,
    /// Where this agent's attempts fall within each period; `None`: drawn at random, once.
    pub phase: Option<Phase>,
    /// Emit [`Event::Heartbeat`] this often (for a watchdog); `None`: never.
    pub heartbeat: Option<Duration>,
    /// Told about every link's traffic (metrics), when set.
    pub tap: Option<Arc<dyn Tap>>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            reconnect_on_reload: false,
            healthy_after: Duration::from_secs(60),
            phase: None,
            heartbeat: None,
            tap: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("reconnect_on_reload", &self.reconnect_on_reload)
            .field("healthy_after", &self.healthy_after)
            .field("heartbeat", &self.heartbeat)
            .field("tapped", &self.tap.is_some())
            .finish_non_exhaustive()
    }
}

/// The application side of the link: messages from the master the daemon does not
/// handle itself, and messages to send.
#[derive(Debug)]
pub struct Channels {
    /// Receives the master's messages (`StartContainer`, `SignalContainer`).
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
        /// The last failure.
        last: Box<LinkError>,
    },
    /// `agent_reconnect_attempts` consecutive links dropped before they were healthy.
    #[error("gave up after {attempts} consecutive failures (agent_reconnect_attempts): the link kept dropping; the last time: {last}")]
    KeptDropping {
        /// How many.
        attempts: u32,
        /// How the last link ended.
        last: Ended<()>,
    },
}

/// Runs until `Control::Shutdown` (or the control channel closes): `Ok`. Gives up only
/// as `agent_reconnect_attempts` says.
///
/// `reload` builds a new target from the configuration sources; when it fails, the
/// error is logged and the running configuration kept. It may block (it reads files and
/// runs the vendor tools), so each `Control::Reload` runs it on tokio's blocking pool
/// ([`tokio::task::spawn_blocking`]) while the link goes on: pings are answered and
/// [`Event::Heartbeat`] keeps coming. One reload runs at a time; reloads asked for while
/// one runs are folded into one more after it. A shutdown does not wait for a reload in
/// flight: it is abandoned, and its thread ends when `reload` returns. A runtime dropped
/// normally waits for that thread, so an embedder that must exit at once ends its runtime
/// with [`tokio::runtime::Runtime::shutdown_background`].
///
/// # Errors
/// [`DaemonError`].
pub async fn run(
    target: Target,
    reload: impl FnMut() -> Result<Target, LoadError> + Send + 'static,
    options: Options,
    controls: &mut mpsc::Receiver<Control>,
    channels: Channels,
) -> Result<(), DaemonError> {
    run_observed(target, reload, options, controls, channels, &mut ()).await
}

/// [`run`], telling `observer` every state change.
///
/// # Errors
/// [`DaemonError`].
pub async fn run_observed(
    target: Target,
    reload: impl FnMut() -> Result<Target, LoadError> + Send + 'static,
    options: Options,
    controls: &mut mpsc::Receiver<Control>,
    mut channels: Channels,
    observer: &mut dyn Observer,
) -> Result<(), DaemonError> {
    let registration = target.registration();
    let hub =
        controls::Hub::new(controls, reload, observer, options.reconnect_on_reload, registration, options.heartbeat);
    let pacer = Pacer::new(options.phase.unwrap_or_else(Phase::random));
    let mut daemon =
        Daemon { hub, target, options, clock: Instant::now(), pacer, registered: false, failures: 0, attempt: 0 };
    let mut delay = None;
    loop {
        if let Some(wait) = delay.take() {
            daemon.hub.emit(Event::Waiting { delay: wait });
            tokio::select! {
                _ = sleep(wait) => {}
                stop = daemon.hub.recv() => if stop == Stop::Shutdown { return daemon.shut_down() },
            }
        }
        if let Some(next) = daemon.hub.take_next() {
            daemon.target = next;
        }
        daemon.attempt += 1;
        let span = tracing::info_span!("link", attempt = daemon.attempt);
        match daemon.attempt(&mut channels).instrument(span).await {
            Next::Return(result) => return result,
            Next::Again(wait) => delay = wait,
        }
    }
}

/// What comes after an attempt.
enum Next {
    Return(Result<(), DaemonError>),
    /// Another attempt, after this delay (none: at once).
    Again(Option<Duration>),
}

struct Daemon<'a, R> {
    hub: controls::Hub<'a, R>,
    target: Target,
    options: Options,
    /// The agent's own clock, for its phase points.
    clock: Instant,
    pacer: Pacer,
    /// Whether the master holds this agent (so the next connection says `reconnect=true`).
    registered: bool,
    /// Consecutive failed attempts and unhealthy links.
    failures: u32,
    attempt: u64,
}

impl<R: FnMut() -> Result<Target, LoadError> + Send + 'static> Daemon<'_, R> {
    /// One attempt: connect, then run the link until it ends.
    async fn attempt(&mut self, channels: &mut Channels) -> Next {
        let reconnect = self.registered;
        let attempt = self.attempt;
        self.hub.emit(Event::Connecting { attempt, target: &self.target, reconnect });
        let connected = tokio::select! {
            result = link::connect(&self.target, reconnect) => result,
            stop = self.hub.recv() => return self.interrupted(stop),
        };
        let link = match connected {
            Ok(link) => link,
            Err(LinkError::PastReconnect { said_in }) if reconnect => {
                self.hub.emit(Event::MustRegisterAfresh { said_in });
                self.registered = false;
                return Next::Again(None);
            }
            Err(error) => return self.failed(error),
        };
        let registered =
            Event::Registered { attempt, peer: link.peer(), target: &self.target, options: link.options(), reconnect };
        self.hub.emit(registered);
        self.registered = true;

        let link = match &self.options.tap {
            Some(tap) => link.tapped(tap.clone()),
            None => link,
        };
        let up_since = Instant::now();
        let ended = link.run(&channels.inbound, &mut channels.outbound, self.hub.recv()).await;
        let up_for = up_since.elapsed();
        self.hub.emit(Event::Disconnected { ended: &ended, up_for });
        match ended {
            Ended::Stopped(stop) => return self.interrupted(stop),
            // The master no longer holds this agent (AgentShutdown always means so: the
            // master stops the agent when it sends one): a reconnect it refused (devices or
            // pool changed) is followed at once by a fresh registration. One it refuses
            // after a fresh registration is a failure like any other.
            ref ended if ended.past_reconnect() || matches!(ended, Ended::MasterShutdown { .. }) => {
                self.registered = false;
                if reconnect {
                    return Next::Again(None);
                }
            }
            _ => {}
        }
        let healthy = up_for >= self.options.healthy_after;
        if healthy {
            self.failures = 0;
        } else {
            // A link that drops at once is a failed attempt: flapping backs off and counts.
            self.failures = self.failures.saturating_add(1);
            if self.out_of_attempts() {
                return Next::Return(Err(DaemonError::KeptDropping {
                    attempts: self.failures,
                    last: ended.discard_output(),
                }));
            }
        }
        Next::Again(Some(self.pacer.dropped(&self.schedule(), healthy, self.clock.elapsed())))
    }

    fn failed(&mut self, error: LinkError) -> Next {
        self.failures = self.failures.saturating_add(1);
        let failure = classify(&error);
        self.hub.emit(Event::ConnectFailed {
            attempt: self.attempt,
            error: &error,
            failure,
            consecutive: self.failures,
        });
        if self.out_of_attempts() {
            return Next::Return(Err(DaemonError::GaveUp { attempts: self.failures, last: Box::new(error) }));
        }
        Next::Again(Some(self.pacer.failed(&self.schedule(), failure, self.clock.elapsed())))
    }

    fn interrupted(&mut self, stop: Stop) -> Next {
        match stop {
            Stop::Shutdown => Next::Return(self.shut_down()),
            Stop::Reconnect => {
                self.failures = 0;
                Next::Again(None)
            }
        }
    }

    fn shut_down(&mut self) -> Result<(), DaemonError> {
        self.hub.emit(Event::ShuttingDown);
        Ok(())
    }

    /// The schedule of the running target: rebuilt for each, since a reload may change
    /// `agent_reconnect_backoff`.
    fn schedule(&self) -> Schedule {
        Schedule::new(self.target.config.agent_reconnect_backoff, self.target.config.agent_reconnect_backoff_max)
    }

    /// `agent_reconnect_attempts` > 0 and that many consecutive failures reached.
    fn out_of_attempts(&self) -> bool {
        let limit = self.target.config.agent_reconnect_attempts;
        limit > 0 && self.failures >= limit
    }
}
