//! The daemon's one listener for controls, written once and awaited wherever the daemon
//! waits (between attempts, while connecting, while a link runs), after mini-redis's
//! `shutdown.rs`: a reload is handled inside, and only what must interrupt the daemon
//! comes out, as a [`Stop`]. The hub also emits every [`Event`]: it logs, then tells the
//! embedder's observer.
//!
//! A reload reads files and runs the vendor tools (`nvidia-smi` may take seconds), so it
//! runs on tokio's blocking pool, not on the runtime's thread: meanwhile the link keeps
//! answering the master's pings and the heartbeat keeps beating. At most one reload runs;
//! SIGHUPs that arrive meanwhile are folded into one more reload after it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::events::{self, Event, Fold, Observer};
use super::{Control, LoadError, Stop};
use crate::link::{Registration, Target};

/// Controls, reloads and events.
pub(super) struct Hub<'a, R> {
    controls: &'a mut mpsc::Receiver<Control>,
    /// Shared with the blocking thread of the reload in flight.
    reload: Arc<Mutex<R>>,
    /// The reload in flight, if any. Kept here, not in [`recv`](Self::recv)'s future, so
    /// that dropping that future loses no reload. Dropped with the hub at shutdown: the
    /// reload is abandoned and its thread ends on its own.
    running: Option<JoinHandle<Result<Target, LoadError>>>,
    /// A reload was asked for while one ran: run one more when it ends.
    again: bool,
    observer: &'a mut dyn Observer,
    reconnect_on_reload: bool,
    /// What the master knows this agent by, under the running configuration.
    current: Registration,
    /// A reloaded target waiting for the next connection.
    next: Option<Target>,
    fold: Fold,
    heartbeat: Option<Interval>,
}

impl<'a, R: FnMut() -> Result<Target, LoadError> + Send + 'static> Hub<'a, R> {
    pub fn new(
        controls: &'a mut mpsc::Receiver<Control>,
        reload: R,
        observer: &'a mut dyn Observer,
        reconnect_on_reload: bool,
        current: Registration,
        heartbeat: Option<Duration>,
    ) -> Self {
        let heartbeat = heartbeat.filter(|every| !every.is_zero()).map(|every| {
            let mut interval = interval_at(Instant::now() + every, every);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        Hub {
            controls,
            reload: Arc::new(Mutex::new(reload)),
            running: None,
            again: false,
            observer,
            reconnect_on_reload,
            current,
            next: None,
            fold: Fold::default(),
            heartbeat,
        }
    }

    /// Logs `event` and hands it to the observer.
    pub fn emit(&mut self, event: Event<'_>) {
        events::log(&event, &mut self.fold);
        self.observer.event(&event);
    }

    /// Waits until the daemon must stop what it is doing: `Shutdown` (or the channel
    /// closed), or a reload after which it must reconnect at once (`--reconnect-on-reload`,
    /// or a changed registration). Other reloads wait in [`take_next`](Self::take_next).
    /// Cancel-safe: dropping it loses no control, and a reload in flight goes on.
    pub async fn recv(&mut self) -> Stop {
        loop {
            tokio::select! {
                control = self.controls.recv() => match control {
                    None | Some(Control::Shutdown) => return Stop::Shutdown,
                    Some(Control::Reload) => self.start_reload(),
                },
                joined = finished(&mut self.running) => {
                    self.running = None;
                    let result = joined.unwrap_or_else(|failed| match failed.try_into_panic() {
                        // A panicking reload panicked the daemon when it ran inline: it still does.
                        Ok(panic) => std::panic::resume_unwind(panic),
                        // Only a runtime that shuts down cancels a blocking task; the daemon
                        // is not running then.
                        Err(_) => unreachable!("a reload's blocking task is never cancelled while the daemon runs"),
                    });
                    let reconnect_now = self.reloaded(result);
                    if std::mem::take(&mut self.again) {
                        self.start_reload();
                    }
                    if reconnect_now {
                        return Stop::Reconnect;
                    }
                },
                () = tick(&mut self.heartbeat) => self.observer.event(&Event::Heartbeat),
            }
        }
    }

    /// Starts a reload on the blocking pool, or, while one runs, asks for one more after it.
    fn start_reload(&mut self) {
        if self.running.is_some() {
            if !self.again {
                tracing::info!("a reload is already running; one more follows it");
            }
            self.again = true;
            return;
        }
        self.emit(Event::Reloading);
        let reload = self.reload.clone();
        self.running = Some(tokio::task::spawn_blocking(move || {
            // Only one reload runs at a time, so the lock is never contended; a poisoned
            // lock means a reload panicked, which already ended the daemon.
            let mut reload = reload.lock().unwrap_or_else(PoisonError::into_inner);
            (*reload)()
        }));
    }

    /// Takes a finished reload's result; whether the daemon must reconnect at once.
    fn reloaded(&mut self, result: Result<Target, LoadError>) -> bool {
        match result {
            Ok(target) => {
                let registration_changed = target.registration() != self.current;
                let reconnect_now = self.reconnect_on_reload || registration_changed;
                self.emit(Event::Reloaded { target: &target, registration_changed, reconnect_now });
                self.next = Some(target);
                reconnect_now
            }
            Err(error) => {
                self.emit(Event::ReloadFailed { error: &error });
                false
            }
        }
    }

    /// The reloaded target, if one waits; it becomes the running one.
    pub fn take_next(&mut self) -> Option<Target> {
        let next = self.next.take()?;
        self.current = next.registration();
        Some(next)
    }
}

/// The heartbeat's next tick; never, without one.
async fn tick(heartbeat: &mut Option<Interval>) {
    match heartbeat {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The reload in flight, once it ends; never, without one.
async fn finished<T>(running: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match running {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::config::{Config, Host, PinnedCerts, TlsConfig, Trust};
    use crate::dev_master::fixtures;
    use crate::link::{LinkSettings, ProxyEnv};

    fn target() -> Target {
        let pinned = PinnedCerts {
            path: fixtures::path("root-ca.pem"),
            certs: fixtures::certs("root-ca.pem"),
            store_entry: None,
        };
        let config = Config::new(Host::parse("localhost").unwrap(), Some(TlsConfig::new(Trust::Pinned(pinned))));
        Target::new(config, ProxyEnv::none(), LinkSettings::default()).unwrap()
    }

    /// The events' names, as the test reads them.
    struct Names(mpsc::UnboundedSender<&'static str>);

    impl Observer for Names {
        fn event(&mut self, event: &Event<'_>) {
            let name = match event {
                Event::Reloading => "reloading",
                Event::Reloaded { .. } => "reloaded",
                Event::ReloadFailed { .. } => "reload_failed",
                _ => return,
            };
            let _ = self.0.send(name);
        }
    }

    /// A reload that says when it starts, then waits until the test lets it finish.
    fn held_reload(
    ) -> (impl FnMut() -> Result<Target, LoadError> + Send + 'static, mpsc::UnboundedReceiver<()>, std_mpsc::Sender<()>)
    {
        let (started_tx, started) = mpsc::unbounded_channel();
        let (release, released) = std_mpsc::channel::<()>();
        let reload = move || {
            started_tx.send(()).unwrap();
            released.recv().unwrap();
            Ok(target())
        };
        (reload, started, release)
    }

    #[tokio::test]
    async fn sighups_during_a_reload_make_one_more_reload_after_it() {
        let (controls_tx, mut controls) = mpsc::channel(8);
        let (names_tx, mut names) = mpsc::unbounded_channel();
        let mut observer = Names(names_tx);
        let (reload, mut started, release) = held_reload();
        let current = target().registration();
        let mut hub = Hub::new(&mut controls, reload, &mut observer, false, current, None);

        // Three SIGHUPs before the hub reads any: the first starts a reload, the two others
        // arrive while it runs.
        for _ in 0..3 {
            controls_tx.try_send(Control::Reload).unwrap();
        }
        let script = async {
            started.recv().await.unwrap();
            assert_eq!(names.recv().await, Some("reloading"));
            release.send(()).unwrap();
            assert_eq!(names.recv().await, Some("reloaded"));
            // One more, for both.
            started.recv().await.unwrap();
            assert_eq!(names.recv().await, Some("reloading"));
            release.send(()).unwrap();
            assert_eq!(names.recv().await, Some("reloaded"));
            controls_tx.try_send(Control::Shutdown).unwrap();
        };
        // The bound turns a reload that never comes into a failure, not a hung test.
        let script = async { tokio::time::timeout(Duration::from_secs(30), script).await.expect("two reloads") };
        let (stop, ()) = tokio::join!(hub.recv(), script);
        assert_eq!(stop, Stop::Shutdown);
        assert!(hub.take_next().is_some(), "the last reload's target waits for the next connection");
        drop(hub);
        assert!(started.try_recv().is_err(), "two reloads ran, not three");
        assert!(names.try_recv().is_err());
    }

    #[tokio::test]
    async fn shutdown_does_not_wait_for_a_reload_in_flight() {
        let (controls_tx, mut controls) = mpsc::channel(8);
        let mut observer = ();
        let (reload, mut started, release) = held_reload();
        let current = target().registration();
        let mut hub = Hub::new(&mut controls, reload, &mut observer, false, current, None);
        controls_tx.try_send(Control::Reload).unwrap();
        let script = async {
            started.recv().await.unwrap();
            controls_tx.try_send(Control::Shutdown).unwrap();
        };
        // The bound turns a hub that waits for the reload into a failure, not a hung test.
        let recv = async { tokio::time::timeout(Duration::from_secs(30), hub.recv()).await.expect("no wait") };
        let (stop, ()) = tokio::join!(recv, script);
        // The reload is still held: the hub returned without it.
        assert_eq!(stop, Stop::Shutdown);
        assert!(hub.take_next().is_none());
        // Let the abandoned reload end, so that the test's runtime can stop.
        release.send(()).unwrap();
    }
}
