//! The daemon's one listener for controls, written once and awaited wherever the daemon
//! waits (between attempts, while connecting, while a link runs), after mini-redis's
//! `shutdown.rs`: a reload is handled inside, and only what must interrupt the daemon
//! comes out, as a [`Stop`]. The hub also emits every [`Event`]: it logs, then tells the
//! embedder's observer.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{interval_at, Instant, Interval, MissedTickBehavior};

use super::events::{self, Event, Fold, Observer};
use super::{Control, LoadError, Stop};
use crate::link::{Registration, Target};

/// Controls, reloads and events.
pub(super) struct Hub<'a, R> {
    controls: &'a mut mpsc::Receiver<Control>,
    reload: R,
    observer: &'a mut dyn Observer,
    reconnect_on_reload: bool,
    /// What the master knows this agent by, under the running configuration.
    current: Registration,
    /// A reloaded target waiting for the next connection.
    next: Option<Target>,
    fold: Fold,
    heartbeat: Option<Interval>,
}

impl<'a, R: FnMut() -> Result<Target, LoadError>> Hub<'a, R> {
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
        Hub { controls, reload, observer, reconnect_on_reload, current, next: None, fold: Fold::default(), heartbeat }
    }

    /// Logs `event` and hands it to the observer.
    pub fn emit(&mut self, event: Event<'_>) {
        events::log(&event, &mut self.fold);
        self.observer.event(&event);
    }

    /// Waits until the daemon must stop what it is doing: `Shutdown` (or the channel
    /// closed), or a reload after which it must reconnect at once (`--reconnect-on-reload`,
    /// or a changed registration). Other reloads wait in [`take_next`](Self::take_next).
    /// Cancel-safe: dropping it loses no control.
    pub async fn recv(&mut self) -> Stop {
        loop {
            let control = match &mut self.heartbeat {
                Some(heartbeat) => tokio::select! {
                    control = self.controls.recv() => control,
                    _ = heartbeat.tick() => {
                        self.observer.event(&Event::Heartbeat);
                        continue;
                    }
                },
                None => self.controls.recv().await,
            };
            match control {
                None | Some(Control::Shutdown) => return Stop::Shutdown,
                Some(Control::Reload) => {
                    if self.reloaded() {
                        return Stop::Reconnect;
                    }
                }
            }
        }
    }

    /// Runs the reload; whether the daemon must reconnect at once.
    fn reloaded(&mut self) -> bool {
        self.emit(Event::Reloading);
        match (self.reload)() {
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
