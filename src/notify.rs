//! Telling systemd how the daemon is doing: the sd_notify(3) protocol of `Type=notify`
//! units (packaging/det-agent.service).
//!
//! systemd passes a datagram socket in `NOTIFY_SOCKET`: an absolute path, or `@NAME` for a
//! socket in Linux's abstract namespace. A notification is one datagram of `KEY=VALUE`
//! lines: `READY=1` once the service is up, `STATUS=` a line for `systemctl status`,
//! `RELOADING=1` (with `MONOTONIC_USEC=`) then `READY=1` around a reload, `STOPPING=1`, and
//! `WATCHDOG=1` keep-alive pings when the unit sets `WatchdogSec=` (passed to the service
//! as `WATCHDOG_USEC`, meant for the process `WATCHDOG_PID`).
//!
//! Written here rather than taken from the `sd-notify` crate: the crate reads
//! `NOTIFY_SOCKET` and `WATCHDOG_*` only from the process environment (its own tests must
//! each sit alone in a file for that reason), and in the versions read (0.4.x) it hands an
//! `@NAME` address to `connect()` as a file path, so abstract sockets fail. The protocol is
//! one `sendto()`, which std does for both kinds of address.
//!
//! Without `NOTIFY_SOCKET` every call is a no-op. Notifying is never fatal: the first
//! failure is logged as a warning, later ones at debug level, and the service runs on.

use std::fmt;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, warn};

use crate::text;

/// Longest `STATUS=` text sent, in bytes, after escaping. systemd drops a whole datagram
/// longer than its buffer (4 KiB), and `systemctl status` shows one line.
pub const STATUS_MAX: usize = 1024;

/// How long one send may block when systemd does not read its socket: a wedged service
/// manager must not wedge the link loop.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `READY=1`: start-up (or a reload) is complete.
    Ready,
    /// `STATUS=…`: a line for `systemctl status`, escaped by [`Message::encode`].
    Status(String),
    /// `RELOADING=1` with `MONOTONIC_USEC=`, the CLOCK_MONOTONIC time it was made at, which
    /// systemd 253 and later require for `Type=notify-reload` (older ones ignore it).
    Reloading {
        /// Microseconds of CLOCK_MONOTONIC; [`Message::reloading_now`] reads the clock.
        monotonic_usec: u64,
    },
    /// `STOPPING=1`: shutting down.
    Stopping,
    /// `WATCHDOG=1`: the keep-alive ping.
    Watchdog,
}

impl Message {
    /// `RELOADING=1` stamped with the current CLOCK_MONOTONIC time.
    pub fn reloading_now() -> Message {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        // CLOCK_MONOTONIC is never negative; the conversions cannot fail in practice.
        let secs = u64::try_from(now.tv_sec).unwrap_or(0);
        let micros = u64::try_from(now.tv_nsec).unwrap_or(0) / 1_000;
        Message::Reloading { monotonic_usec: secs.saturating_mul(1_000_000).saturating_add(micros) }
    }

    /// The datagram: `KEY=VALUE` lines, each ending in a newline. A status is escaped with
    /// [`text::escape`], so a line break, control or bidi character in it (from a
    /// certificate, the master or a proxy) can neither add an assignment such as
    /// `MAINPID=` nor garble `systemctl status`; it is cut at [`STATUS_MAX`] bytes, marked
    /// with `…`.
    pub fn encode(&self) -> String {
        match self {
            Message::Ready => "READY=1\n".to_owned(),
            Message::Status(status) => format!("STATUS={}\n", one_line(status)),
            Message::Reloading { monotonic_usec } => format!("RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\n"),
            Message::Stopping => "STOPPING=1\n".to_owned(),
            Message::Watchdog => "WATCHDOG=1\n".to_owned(),
        }
    }
}

/// `status` escaped, and cut to at most [`STATUS_MAX`] bytes on a character boundary.
fn one_line(status: &str) -> String {
    let escaped = text::escape(status);
    if escaped.len() <= STATUS_MAX {
        return escaped.into_owned();
    }
    let ellipsis = "…";
    let mut end = STATUS_MAX - ellipsis.len();
    while !escaped.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ellipsis}", &escaped[..end])
}

/// A notification that could not be sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor `@NAME` (systemd 253's `vsock:`
    /// addresses, for services in virtual machines, are not supported).
    #[error("NOTIFY_SOCKET={value} is neither an absolute path nor an abstract socket (@NAME), so systemd cannot be told this service's state; unset it, or start det-agent from a Type=notify unit")]
    Unsupported {
        /// The variable, escaped.
        value: String,
    },
    /// The address cannot be a unix socket address (too long, or a NUL byte in it).
    #[error("NOTIFY_SOCKET={value} is not a usable unix socket address: {reason}")]
    Address {
        /// The variable, escaped.
        value: String,
        /// What the system said.
        reason: String,
    },
    /// The datagram could not be sent.
    #[error("could not notify systemd through NOTIFY_SOCKET={value}: {error}; systemctl will not show this service's state, and a watchdog may restart it")]
    Send {
        /// The variable, escaped.
        value: String,
        /// What the system said.
        error: io::Error,
    },
}

/// Whether systemd expects keep-alive pings, and why not when it does not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Watchdog {
    /// systemd restarts the service when no `WATCHDOG=1` comes for `timeout`.
    Enabled {
        /// `WATCHDOG_USEC`.
        timeout: Duration,
    },
    /// No pings are expected (or none could arrive).
    Disabled(WatchdogOff),
}

impl Watchdog {
    /// How often to send `WATCHDOG=1`: half the timeout, as sd_watchdog_enabled(3)
    /// advises, so one late ping is not a restart. `None` when disabled.
    pub fn ping_interval(&self) -> Option<Duration> {
        match self {
            Watchdog::Enabled { timeout } => Some(*timeout / 2),
            Watchdog::Disabled(_) => None,
        }
    }
}

impl fmt::Display for Watchdog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Watchdog::Enabled { timeout } => {
                write!(f, "watchdog on: systemd expects WATCHDOG=1 at least every {} s", timeout.as_secs_f64())
            }
            Watchdog::Disabled(off) => write!(f, "watchdog off: {off}"),
        }
    }
}

/// Why the watchdog is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchdogOff {
    /// `WATCHDOG_USEC` is not set: the unit has no `WatchdogSec=`.
    NotRequested,
    /// There is no usable `NOTIFY_SOCKET`, so no ping could reach systemd.
    NoSocket,
    /// `WATCHDOG_USEC` is not a positive whole number of microseconds.
    BadTimeout(String),
    /// `WATCHDOG_PID` is not a process ID.
    BadPid(String),
    /// `WATCHDOG_PID` names another process: the variables were inherited from a parent
    /// that systemd watches, not meant for this one.
    OtherProcess {
        /// `WATCHDOG_PID`.
        watched: u32,
        /// This process.
        this: u32,
    },
}

impl fmt::Display for WatchdogOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchdogOff::NotRequested => f.write_str("WATCHDOG_USEC is not set (the unit has no WatchdogSec=)"),
            WatchdogOff::NoSocket => f.write_str("NOTIFY_SOCKET is not set or not usable, so no ping could reach systemd"),
            WatchdogOff::BadTimeout(value) => {
                write!(f, "WATCHDOG_USEC={} is not a positive whole number of microseconds", text::escape(value))
            }
            WatchdogOff::BadPid(value) => write!(f, "WATCHDOG_PID={} is not a process ID", text::escape(value)),
            WatchdogOff::OtherProcess { watched, this } => write!(
                f,
                "WATCHDOG_PID={watched} is another process (this one is {this}): the variables were inherited, not meant for det-agent"
            ),
        }
    }
}

/// Where notifications go.
#[derive(Debug)]
enum Target {
    /// `NOTIFY_SOCKET` is not set: every call is a no-op.
    Off,
    /// The socket, and the variable as shown in messages (escaped).
    Socket { addr: SocketAddr, shown: String },
    /// `NOTIFY_SOCKET` is set but unusable; reported on every notification (logged once).
    Unusable { shown: String, bad: BadSocket },
}

/// Why `NOTIFY_SOCKET` is unusable.
#[derive(Clone, Debug)]
enum BadSocket {
    /// Not `/PATH` nor `@NAME`.
    Unsupported,
    /// Not a valid unix socket address; the system's reason.
    Address(String),
}

/// Sends notifications to systemd; built once from the environment, shared by reference.
#[derive(Debug)]
pub struct Notifier {
    target: Target,
    watchdog: Watchdog,
    /// Whether a failure was already logged as a warning.
    reported: AtomicBool,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier::disabled()
    }
}

impl Notifier {
    /// A notifier that sends nothing, as without `NOTIFY_SOCKET`.
    pub fn disabled() -> Notifier {
        Notifier {
            target: Target::Off,
            watchdog: Watchdog::Disabled(WatchdogOff::NoSocket),
            reported: AtomicBool::new(false),
        }
    }

    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` through `env` (the
    /// process environment in the binary: `&|name| std::env::var(name).ok()`). An empty
    /// variable counts as unset. Nothing is sent, and nothing logged, until a
    /// notification is.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Notifier {
        let var = |name: &str| env(name).filter(|value| !value.is_empty());
        let target = match var("NOTIFY_SOCKET") {
            None => Target::Off,
            Some(value) => {
                let shown = text::escape(&value).into_owned();
                match socket_address(&value) {
                    Ok(addr) => Target::Socket { addr, shown },
                    Err(bad) => Target::Unusable { shown, bad },
                }
            }
        };
        let watchdog = match target {
            Target::Socket { .. } => watchdog(var("WATCHDOG_USEC"), var("WATCHDOG_PID"), std::process::id()),
            Target::Off | Target::Unusable { .. } => Watchdog::Disabled(WatchdogOff::NoSocket),
        };
        Notifier { target, watchdog, reported: AtomicBool::new(false) }
    }

    /// Whether notifications go anywhere (`NOTIFY_SOCKET` is set and usable).
    pub fn is_enabled(&self) -> bool {
        matches!(self.target, Target::Socket { .. })
    }

    /// The watchdog systemd asked for, or why there is none.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// `READY=1`.
    pub fn ready(&self) {
        self.notify(&Message::Ready);
    }

    /// `STATUS=status`: pass the text as it is, untrusted parts included; it is escaped
    /// here (see [`Message::encode`]).
    pub fn status(&self, status: &str) {
        self.notify(&Message::Status(status.to_owned()));
    }

    /// `RELOADING=1` with the current `MONOTONIC_USEC=`. Follow it with [`Notifier::ready`]
    /// when the reload is over, whether it applied or failed.
    pub fn reloading(&self) {
        self.notify(&Message::reloading_now());
    }

    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.notify(&Message::Stopping);
    }

    /// `WATCHDOG=1`: send it every [`Watchdog::ping_interval`].
    pub fn ping_watchdog(&self) {
        self.notify(&Message::Watchdog);
    }

    /// Sends `message`; a failure is logged (the first as a warning, the rest at debug
    /// level) and otherwise ignored.
    pub fn notify(&self, message: &Message) {
        if let Err(err) = self.send(message) {
            if self.reported.swap(true, Ordering::Relaxed) {
                debug!(error = %err, "systemd notification failed again");
            } else {
                warn!(error = %err, "systemd notification failed; later failures are logged at debug level only");
            }
        }
    }

    /// Sends `message` and says whether it went out. `Ok` without sending when
    /// `NOTIFY_SOCKET` is not set.
    ///
    /// # Errors
    /// `NOTIFY_SOCKET` is unusable, or the datagram could not be sent whole.
    pub fn send(&self, message: &Message) -> Result<(), NotifyError> {
        let (addr, shown) = match &self.target {
            Target::Off => return Ok(()),
            Target::Unusable { shown, bad: BadSocket::Unsupported } => {
                return Err(NotifyError::Unsupported { value: shown.clone() })
            }
            Target::Unusable { shown, bad: BadSocket::Address(reason) } => {
                return Err(NotifyError::Address { value: shown.clone(), reason: reason.clone() })
            }
            Target::Socket { addr, shown } => (addr, shown),
        };
        let bytes = message.encode();
        let sent = UnixDatagram::unbound()
            .and_then(|socket| {
                socket.set_write_timeout(Some(SEND_TIMEOUT))?;
                socket.send_to_addr(bytes.as_bytes(), addr)
            })
            .and_then(|sent| {
                if sent == bytes.len() {
                    Ok(())
                } else {
                    let short = format!("only {sent} of {} bytes were sent", bytes.len());
                    Err(io::Error::new(io::ErrorKind::WriteZero, short))
                }
            });
        sent.map_err(|error| NotifyError::Send { value: shown.clone(), error })
    }
}

/// `NOTIFY_SOCKET` as a socket address: `/PATH`, or `@NAME` in the abstract namespace.
fn socket_address(value: &str) -> Result<SocketAddr, BadSocket> {
    let addr = if let Some(name) = value.strip_prefix('@') {
        abstract_address(name.as_bytes())
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(value)
    } else {
        return Err(BadSocket::Unsupported);
    };
    addr.map_err(|err| BadSocket::Address(err.to_string()))
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "abstract sockets exist only on Linux"))
}

/// The watchdog from `WATCHDOG_USEC` and `WATCHDOG_PID`, as sd_watchdog_enabled(3) reads
/// them: the timeout must be a positive number of microseconds, and when `WATCHDOG_PID` is
/// set it must be this process.
fn watchdog(usec: Option<String>, pid: Option<String>, this: u32) -> Watchdog {
    let Some(usec) = usec else {
        return Watchdog::Disabled(WatchdogOff::NotRequested);
    };
    let timeout = match digits(&usec).and_then(|s| s.parse::<u64>().ok()) {
        Some(micros) if micros > 0 => Duration::from_micros(micros),
        _ => return Watchdog::Disabled(WatchdogOff::BadTimeout(usec)),
    };
    if let Some(pid) = pid {
        match digits(&pid).and_then(|s| s.parse::<u32>().ok()) {
            Some(watched) if watched == this => {}
            Some(watched) if watched > 0 => return Watchdog::Disabled(WatchdogOff::OtherProcess { watched, this }),
            _ => return Watchdog::Disabled(WatchdogOff::BadPid(pid)),
        }
    }
    Watchdog::Enabled { timeout }
}

/// `s` when it is all ASCII digits (no sign, no spaces), which `parse` alone would not
/// insist on.
fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_status_is_cut_on_a_character_boundary() {
        let long = "é".repeat(STATUS_MAX);
        let line = one_line(&long);
        assert!(line.len() <= STATUS_MAX, "{}", line.len());
        assert!(line.ends_with("é…"), "{line}");
        assert_eq!(one_line("short"), "short");
    }

    #[test]
    fn watchdog_pid_rules() {
        let on = Watchdog::Enabled { timeout: Duration::from_secs(60) };
        assert_eq!(watchdog(Some("60000000".into()), None, 7), on, "no WATCHDOG_PID: meant for us");
        assert_eq!(watchdog(Some("60000000".into()), Some("7".into()), 7), on);
        assert_eq!(
            watchdog(Some("60000000".into()), Some("0".into()), 7),
            Watchdog::Disabled(WatchdogOff::BadPid("0".into()))
        );
        assert_eq!(
            watchdog(Some("+5".into()), None, 7),
            Watchdog::Disabled(WatchdogOff::BadTimeout("+5".into())),
            "only digits"
        );
        assert_eq!(on.ping_interval(), Some(Duration::from_secs(30)));
    }
}
