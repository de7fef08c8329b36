//! Running under systemd: the unit in packaging/ checked by systemd's own tools
//! (`systemd-analyze verify`, the `security` exposure, `systemd-sysusers`), and the
//! sd_notify datagrams of `det_agent::notify` read from real unix sockets.
//!
//! systemd's tools come from Debian's `systemd` package, which `.ci/run` installs; without
//! them these tests fail and say so, they are never skipped.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use det_agent::notify::{Message, Notifier, NotifyError, Watchdog, WatchdogOff, STATUS_MAX};

/// `systemd-analyze security --offline=yes` exposure of packaging/det-agent.service with
/// Debian 12's systemd 252 (0 = everything locked down, 10 = nothing). A change that
/// weakens the hardening raises it and fails `unit_exposure_does_not_rise`; the README
/// quotes the same figure.
const MAX_EXPOSURE: f64 = 1.4;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn unit_text() -> String {
    std::fs::read_to_string(repo("packaging/det-agent.service")).unwrap()
}

/// The values of `key=` in the unit, in order.
fn directive(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines().filter_map(|line| line.strip_prefix(&prefix)).map(str::to_owned).collect()
}

/// One of systemd's tools, or a failure that says how to get it.
fn systemd_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is missing: install Debian's systemd (apt-get install systemd), as .ci/run does; these tests check the unit with it")
        })
}

/// The unit in a temporary folder, its `ExecStart=` binary replaced by the one cargo
/// built (systemd-analyze refuses a unit whose binary does not exist).
fn unit_copy(dir: &tempfile::TempDir) -> PathBuf {
    let unit = unit_text();
    let installed = "ExecStart=/usr/local/bin/det-agent run ";
    assert_eq!(unit.matches(installed).count(), 1, "one ExecStart=, of the installed binary");
    let built = format!("ExecStart={} run ", env!("CARGO_BIN_EXE_det-agent"));
    let path = dir.path().join("det-agent.service");
    std::fs::write(&path, unit.replace(installed, &built)).unwrap();
    path
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn unit_passes_systemd_analyze_verify_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(&dir);
    // verify exits 0 on a misspelt key or an unparsable value, and only warns: any output
    // fails.
    let (ok, output) = run(Command::new(systemd_tool("systemd-analyze")).arg("verify").arg(&unit));
    assert!(ok && output.is_empty(), "systemd-analyze verify {}:\n{output}", unit.display());
}

#[test]
fn unit_exposure_does_not_rise() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(&dir);
    let (ok, output) =
        run(Command::new(systemd_tool("systemd-analyze")).args(["security", "--offline=yes"]).arg(&unit));
    assert!(ok, "systemd-analyze security --offline=yes:\n{output}");
    let line = output
        .lines()
        .find(|line| line.contains("Overall exposure level for det-agent.service:"))
        .unwrap_or_else(|| panic!("no \"Overall exposure level\" line in:\n{output}"));
    let exposure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no figure in {line:?}"));
    assert!(exposure <= MAX_EXPOSURE, "exposure rose to {exposure} (at most {MAX_EXPOSURE}):\n{output}");

    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let quoted = format!("Overall exposure level for det-agent.service: {MAX_EXPOSURE:.1} OK");
    assert!(readme.contains(&quoted), "the README quotes {quoted:?}");
}

#[test]
fn unit_stops_after_the_close_handshake_and_never_restarts_on_bad_configuration() {
    let unit = unit_text();
    let close = det_agent::link::LinkSettings::default().close_timeout;
    let stop = directive(&unit, "TimeoutStopSec");
    let stop = stop.first().and_then(|s| s.strip_suffix('s')).and_then(|s| s.parse::<u64>().ok());
    let stop = Duration::from_secs(stop.expect("TimeoutStopSec=Ns"));
    assert!(stop >= close * 2, "TimeoutStopSec={stop:?} leaves no room after the {close:?} close handshake");

    // Exit status 2 is a configuration error: the same file fails the same way.
    assert_eq!(directive(&unit, "RestartPreventExitStatus"), ["2"]);
    assert_eq!(directive(&unit, "Restart"), ["on-failure"]);
    assert_eq!(directive(&unit, "Type"), ["notify"]);
    assert_eq!(directive(&unit, "NotifyAccess"), ["main"]);
    assert_eq!(directive(&unit, "ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    // The trust store ($XDG_CONFIG_HOME/determined/certs.json) lives in the state folder.
    assert_eq!(directive(&unit, "Environment"), ["XDG_CONFIG_HOME=%S/det-agent"]);
    assert_eq!(directive(&unit, "StateDirectory"), ["det-agent"]);
}

#[test]
fn sysusers_creates_the_user_the_unit_runs_as() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let file = std::fs::File::open(repo("packaging/det-agent.sysusers")).unwrap();
    let (ok, output) = run(Command::new(systemd_tool("systemd-sysusers"))
        .arg(format!("--root={}", root.path().display()))
        .arg("-")
        .stdin(file));
    assert!(ok, "systemd-sysusers:\n{output}");

    let unit = unit_text();
    let user = &directive(&unit, "User")[0];
    let passwd = std::fs::read_to_string(root.path().join("etc/passwd")).unwrap();
    let entry: Vec<&str> = passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields[0] == user)
        .unwrap_or_else(|| panic!("no {user} in:\n{passwd}"));
    assert_eq!(entry[5], format!("/var/lib/{}", directive(&unit, "StateDirectory")[0]), "home = state folder");
    assert!(entry[6].ends_with("/nologin"), "{entry:?}");
    assert_ne!(entry[2], "0", "not root");
    let group = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(group.lines().any(|line| line.starts_with(&format!("{}:", directive(&unit, "Group")[0]))), "{group}");
}

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
