//! Running under systemd: the sd_notify datagrams of `det_agent::notify` read from real
//! unix sockets.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use det_agent::notify::{Message, Notifier, NotifyError, Watchdog, WatchdogOff, STATUS_MAX};

/// A stand-in for systemd's notification socket.
struct Listener {
    socket: UnixDatagram,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Listener {
    fn bind() -> Listener {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        // Each datagram is sent before it is read; the bound only turns a bug into a
        // failure instead of a hung run.
        socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Listener { socket, _dir: dir, path }
    }

    fn next(&self) -> String {
        let mut buf = vec![0; 8192];
        let n = self.socket.recv(&mut buf).expect("a datagram");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }
}

fn notifier(env: &[(&str, &str)]) -> Notifier {
    Notifier::from_env(&|name| env.iter().find(|(key, _)| *key == name).map(|(_, value)| (*value).to_owned()))
}

fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

#[test]
fn each_notification_is_one_exact_datagram() {
    let listener = Listener::bind();
    let notifier = notifier(&[("NOTIFY_SOCKET", listener.path.to_str().unwrap())]);
    assert!(notifier.is_enabled());

    notifier.ready();
    assert_eq!(listener.next(), "READY=1\n");
    notifier.status("registered with master.example.com as node-7 (pinned)");
    assert_eq!(listener.next(), "STATUS=registered with master.example.com as node-7 (pinned)\n");
    notifier.stopping();
    assert_eq!(listener.next(), "STOPPING=1\n");
    notifier.ping_watchdog();
    assert_eq!(listener.next(), "WATCHDOG=1\n");

    let before = monotonic_usec();
    notifier.reloading();
    let after = monotonic_usec();
    let datagram = listener.next();
    let stamp = datagram
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|rest| rest.strip_suffix('\n'))
        .and_then(|usec| usec.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{datagram:?}"));
    assert!((before..=after).contains(&stamp), "{before} <= {stamp} <= {after}: CLOCK_MONOTONIC, in µs");

    assert_eq!(notifier.send(&Message::Reloading { monotonic_usec: 42 }).ok(), Some(()));
    assert_eq!(listener.next(), "RELOADING=1\nMONOTONIC_USEC=42\n");
}

#[test]
fn a_status_from_the_network_stays_one_escaped_line() {
    let listener = Listener::bind();
    let notifier = notifier(&[("NOTIFY_SOCKET", listener.path.to_str().unwrap())]);
    // A close reason or certificate name that tries to add assignments and rewrite the
    // terminal.
    notifier.status("waiting 12 s before reconnecting: bye\nMAINPID=1\nREADY=1\x1b[2J\u{202e}\\");
    assert_eq!(
        listener.next(),
        "STATUS=waiting 12 s before reconnecting: bye\\x0aMAINPID=1\\x0aREADY=1\\x1b[2J\\u202e\\\\\n"
    );

    notifier.status(&"x".repeat(10 * STATUS_MAX));
    let datagram = listener.next();
    assert_eq!(datagram.len(), "STATUS=\n".len() + STATUS_MAX, "cut to STATUS_MAX bytes");
    assert!(datagram.ends_with("x…\n"), "{datagram}");
}

#[test]
fn an_abstract_socket_is_reached_by_its_name() {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::SocketAddr;

    // Unique per run: the abstract namespace is shared by the whole network namespace.
    let dir = tempfile::tempdir().unwrap();
    let name = format!("det-agent-test{}", dir.path().display());
    let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    let notifier = notifier(&[("NOTIFY_SOCKET", &format!("@{name}"))]);
    notifier.ready();
    let mut buf = [0; 64];
    let n = socket.recv(&mut buf).expect("a datagram on the abstract socket");
    assert_eq!(&buf[..n], b"READY=1\n");
}

#[test]
fn without_notify_socket_every_call_is_a_no_op() {
    for env in [&[][..], &[("NOTIFY_SOCKET", "")][..], &[("WATCHDOG_USEC", "60000000")][..]] {
        let notifier = notifier(env);
        assert!(!notifier.is_enabled(), "{env:?}");
        assert_eq!(notifier.watchdog(), &Watchdog::Disabled(WatchdogOff::NoSocket), "{env:?}");
        for message in [Message::Ready, Message::Stopping, Message::Watchdog, Message::Status("x".into())] {
            assert!(notifier.send(&message).is_ok(), "{env:?}");
        }
    }
}

/// Everything logged while `f` runs, as text.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let text = capture.0.lock().unwrap().clone();
    String::from_utf8(text).unwrap()
}

#[test]
fn a_failure_is_logged_once_and_never_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("no-such-socket");
    let notifier = notifier(&[("NOTIFY_SOCKET", gone.to_str().unwrap())]);
    let err = notifier.send(&Message::Ready).unwrap_err();
    assert!(matches!(err, NotifyError::Send { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!("could not notify systemd through NOTIFY_SOCKET={}: ", gone.display())),
        "{err}"
    );

    let log = logged(|| {
        notifier.ready();
        notifier.status("still here");
        notifier.ping_watchdog();
    });
    let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("could not notify systemd through NOTIFY_SOCKET="), "{log}");
    assert_eq!(log.lines().filter(|line| line.contains("DEBUG")).count(), 2, "{log}");
}

#[test]
fn an_unusable_notify_socket_is_explained() {
    let err = notifier(&[("NOTIFY_SOCKET", "vsock:2:1234")]).send(&Message::Ready).unwrap_err();
    assert_eq!(
        err.to_string(),
        "NOTIFY_SOCKET=vsock:2:1234 is neither an absolute path nor an abstract socket (@NAME), so systemd cannot \
         be told this service's state; unset it, or start det-agent from a Type=notify unit"
    );
    let long = format!("/{}", "d".repeat(200));
    let err = notifier(&[("NOTIFY_SOCKET", &long)]).send(&Message::Ready).unwrap_err();
    assert!(matches!(err, NotifyError::Address { .. }), "{err}");
    assert!(err.to_string().contains("is not a usable unix socket address"), "{err}");
    // The variable is shown escaped.
    let err = notifier(&[("NOTIFY_SOCKET", "run\x1b[2J")]).send(&Message::Ready).unwrap_err();
    assert!(err.to_string().starts_with("NOTIFY_SOCKET=run\\x1b[2J is neither"), "{err}");
}

#[test]
fn watchdog_follows_watchdog_usec_and_watchdog_pid() {
    let listener = Listener::bind();
    let socket = listener.path.to_str().unwrap();
    let pid = std::process::id().to_string();
    let other = (std::process::id() + 1).to_string();
    let watchdog = |env: &[(&str, &str)]| {
        let mut env = env.to_vec();
        env.push(("NOTIFY_SOCKET", socket));
        notifier(&env).watchdog().clone()
    };

    let on = watchdog(&[("WATCHDOG_USEC", "60000000"), ("WATCHDOG_PID", &pid)]);
    assert_eq!(on, Watchdog::Enabled { timeout: Duration::from_secs(60) });
    assert_eq!(on.ping_interval(), Some(Duration::from_secs(30)), "half the timeout");
    assert_eq!(on.to_string(), "watchdog on: systemd expects WATCHDOG=1 at least every 60 s");

    // Unset: the unit has no WatchdogSec=.
    let off = watchdog(&[]);
    assert_eq!(off, Watchdog::Disabled(WatchdogOff::NotRequested));
    assert_eq!(off.ping_interval(), None);
    assert_eq!(off.to_string(), "watchdog off: WATCHDOG_USEC is not set (the unit has no WatchdogSec=)");

    // Garbage, zero, a sign: not a timeout, so no pings (sending them would not help).
    for bad in ["soon", "0", "-5", "60 s", "99999999999999999999999"] {
        let off = watchdog(&[("WATCHDOG_USEC", bad), ("WATCHDOG_PID", &pid)]);
        assert_eq!(off, Watchdog::Disabled(WatchdogOff::BadTimeout(bad.to_owned())), "{bad}");
    }
    assert_eq!(
        watchdog(&[("WATCHDOG_USEC", "soon\n")]).to_string(),
        "watchdog off: WATCHDOG_USEC=soon\\x0a is not a positive whole number of microseconds"
    );

    // Another process's watchdog, inherited: not ours to feed.
    let off = watchdog(&[("WATCHDOG_USEC", "60000000"), ("WATCHDOG_PID", &other)]);
    assert_eq!(
        off,
        Watchdog::Disabled(WatchdogOff::OtherProcess { watched: std::process::id() + 1, this: std::process::id() })
    );
    assert!(off.to_string().contains(&format!("WATCHDOG_PID={other} is another process")), "{off}");
    let off = watchdog(&[("WATCHDOG_USEC", "60000000"), ("WATCHDOG_PID", "init")]);
    assert_eq!(off, Watchdog::Disabled(WatchdogOff::BadPid("init".to_owned())));
}
