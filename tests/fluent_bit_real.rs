//! The real Fluent Bit (5.1.1, from `../shared/fluent-bit` beside the repository or
//! `DET_AGENT_FLUENT_BIT`): every golden and every freshly written configuration passes
//! its `--dry-run`; and what the end-to-end tests (`fluent_bit_e2e.rs`) run it with: a
//! Fluent Bit process and its log, a Fluent forward client, and waits on what reaches
//! the dev master.
//!
//! These tests fail, never skip, when Fluent Bit is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use det_agent::dev_master::{DevMaster, Event};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::cli::{det_agent, pki, text};
use crate::fluent_bit::MODES;

/// How long any one wait may take: only a bug makes a wait this long.
const BOUND: Duration = Duration::from_secs(30);

/// The Fluent Bit binary, checked to run once per test process.
///
/// # Panics
/// It is missing or cannot start, saying how to provide it.
fn fluent_bit() -> &'static Path {
    static FOUND: OnceLock<PathBuf> = OnceLock::new();
    FOUND.get_or_init(|| {
        let path = match std::env::var_os("DET_AGENT_FLUENT_BIT") {
            Some(path) => PathBuf::from(path),
            None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fluent-bit/fluent-bit"),
        };
        let help = "these tests need the real Fluent Bit: set DET_AGENT_FLUENT_BIT to a fluent-bit binary, or put the shared folder beside the repository (../shared/fluent-bit/fluent-bit); when it exists but cannot start, install its libraries with ../shared/fluent-bit/ensure-runtime.sh (.ci/run does)";
        match std::process::Command::new(&path).arg("--version").output() {
            Ok(out) if out.status.success() && String::from_utf8_lossy(&out.stdout).starts_with("Fluent Bit v") => path,
            Ok(out) => panic!(
                "{} --version failed ({}): {}{}; {help}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(err) => panic!("cannot run Fluent Bit at {}: {err}; {help}", path.display()),
        }
    })
}

/// `fluent-bit --dry-run -c FILE`: whether it validated, and what it said.
fn dry_run(config: &Path) -> (bool, String) {
    let out = std::process::Command::new(fluent_bit()).arg("--dry-run").arg("-c").arg(config).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success() && said.contains("configuration test is successful"), said)
}

pub(crate) fn assert_dry_run_passes(config: &Path) {
    let (ok, said) = dry_run(config);
    assert!(ok, "fluent-bit --dry-run -c {} failed:\n{said}", config.display());
}

#[test]
fn every_golden_passes_the_real_dry_run() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fluent-bit");
    let mut checked = 0;
    for entry in std::fs::read_dir(&golden).unwrap() {
        let path = entry.unwrap().path();
        if matches!(path.extension().and_then(|e| e.to_str()), Some("conf" | "yaml")) {
            assert_dry_run_passes(&path);
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * (MODES.len() + crate::fluent_bit::STORES.len()), "a golden per mode and format");
}

#[test]
fn the_dry_run_refuses_an_unknown_key() {
    // What makes the dry runs above worth having: Fluent Bit checks the keys it is given.
    let dir = tempfile::tempdir().unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fluent-bit/pinned.conf");
    let text = std::fs::read_to_string(golden).unwrap().replace("tls.vhost", "tls.virtual_host");
    let path = dir.path().join("fluent-bit.conf");
    std::fs::write(&path, text).unwrap();
    let (ok, said) = dry_run(&path);
    assert!(!ok && said.contains("unknown configuration property 'tls.virtual_host'"), "{said}");
}

/// Runs `det-agent fluent-bit --out DIR ARGS` as an operator would, with `env`; returns
/// the configuration file it wrote.
pub(crate) async fn write_config(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> PathBuf {
    let mut all = vec!["fluent-bit", "--out", dir.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = det_agent(&all, env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "det-agent {all:?}: {stdout}{stderr}");
    let name = if args.contains(&"yaml") { "fluent-bit.yaml" } else { "fluent-bit.conf" };
    let path = dir.join(name);
    assert!(stdout.starts_with(&format!("wrote {}\n", path.display())), "{stdout}");
    path
}

#[tokio::test]
async fn freshly_written_configs_pass_the_real_dry_run_in_every_mode() {
    let etc = crate::fluent_bit::Etc::new();
    let root = pki("root-ca.pem");
    let store_dir = pki("");
    let stores: [&[(&str, &str)]; 3] =
        [&[], &[("SSL_CERT_FILE", root.to_str().unwrap())], &[("SSL_CERT_DIR", store_dir.to_str().unwrap())]];
    for (mode, yaml) in MODES {
        let agent_yaml = etc.dir.path().join(format!("{mode}.yaml"));
        std::fs::write(&agent_yaml, yaml).unwrap();
        // The host store matters in CA mode only.
        let stores = if *mode == "ca" { &stores[..] } else { &stores[..1] };
        for format in ["classic", "yaml"] {
            for env in stores {
                let out = tempfile::tempdir().unwrap();
                let config =
                    write_config(out.path(), &["--config", agent_yaml.to_str().unwrap(), "--format", format], env)
                        .await;
                assert_dry_run_passes(&config);
            }
        }
    }
}

/// The value of `key` in the output section of a written configuration, either format.
pub(crate) fn written_value(config: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(config).unwrap();
    let parsed = if config.extension().is_some_and(|e| e == "yaml") {
        det_agent::fluent_bit::parse_yaml(&text).unwrap()
    } else {
        det_agent::fluent_bit::parse_classic(&text).unwrap()
    };
    let (_, entries) = parsed.sections.iter().find(|(name, _)| name == "OUTPUT").unwrap();
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

/// A running Fluent Bit, killed when dropped, with its log (stderr) line by line.
pub(crate) struct FluentBit {
    _child: Child,
    log: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl FluentBit {
    pub(crate) async fn start(config: &Path, env: &[(&str, &str)]) -> FluentBit {
        let mut cmd = Command::new(fluent_bit());
        cmd.arg("-c").arg(config).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR").envs(env.iter().copied()).kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (tx, log) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        FluentBit { _child: child, log, seen: Vec::new() }
    }

    /// Waits for a log line containing `needle` and returns it.
    async fn wait_for(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(BOUND, async {
            while let Some(line) = self.log.recv().await {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => panic!("Fluent Bit exited before logging {needle:?}:\n{}", self.seen.join("\n")),
            Err(_) => panic!("Fluent Bit did not log {needle:?} within {BOUND:?}:\n{}", self.seen.join("\n")),
        }
    }

    /// Everything it has logged so far, for a failure message.
    fn log_so_far(&mut self) -> String {
        while let Ok(line) = self.log.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    /// Waits until the forward input listens, and returns its address.
    pub(crate) async fn forward_input(&mut self) -> SocketAddr {
        let line = self.wait_for("[input:forward:forward.0] listening on ").await;
        let rest = line.split("listening on ").nth(1).unwrap();
        let addr = rest.split_whitespace().next().unwrap();
        let (ip, port) = addr.rsplit_once(':').unwrap();
        SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap())
    }
}

/// A port nothing listens on now, for the forward input.
pub(crate) fn free_port() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string()
}

/// Minimal MessagePack, for the Fluent forward protocol. Hand-written: a test client
/// needs four types, and a msgpack crate would be a dependency for these few lines.
mod msgpack {
    pub fn str(out: &mut Vec<u8>, s: &str) {
        let len = s.len();
        match len {
            0..32 => out.push(0xa0 | len as u8),
            32..256 => out.extend([0xd9, len as u8]),
            _ => {
                out.push(0xda);
                out.extend((u16::try_from(len).unwrap()).to_be_bytes());
            }
        }
        out.extend(s.as_bytes());
    }

    pub fn array(out: &mut Vec<u8>, len: usize) {
        match len {
            0..16 => out.push(0x90 | len as u8),
            _ => {
                out.push(0xdc);
                out.extend(u16::try_from(len).unwrap().to_be_bytes());
            }
        }
    }

    pub fn map(out: &mut Vec<u8>, len: usize) {
        assert!(len < 16);
        out.push(0x80 | len as u8);
    }

    /// Fluent's EventTime: ext type 0, seconds and nanoseconds.
    pub fn event_time(out: &mut Vec<u8>, at: std::time::SystemTime) {
        let since = at.duration_since(std::time::UNIX_EPOCH).unwrap();
        out.extend([0xd7, 0x00]);
        out.extend(u32::try_from(since.as_secs()).unwrap().to_be_bytes());
        out.extend(since.subsec_nanos().to_be_bytes());
    }
}

/// Sends `lines` to a Fluent Bit forward input as one Forward-mode message tagged `tag`,
/// each record as Docker's fluentd log driver makes it.
pub(crate) async fn send_forward(addr: SocketAddr, tag: &str, lines: &[String]) {
    let mut msg = Vec::new();
    msgpack::array(&mut msg, 2);
    msgpack::str(&mut msg, tag);
    msgpack::array(&mut msg, lines.len());
    for line in lines {
        msgpack::array(&mut msg, 2);
        msgpack::event_time(&mut msg, std::time::SystemTime::now());
        msgpack::map(&mut msg, 4);
        for (key, value) in [("container_id", "0123456789ab"), ("container_name", "/task"), ("source", "stdout")] {
            msgpack::str(&mut msg, key);
            msgpack::str(&mut msg, value);
        }
        msgpack::str(&mut msg, "log");
        msgpack::str(&mut msg, line);
    }
    let mut tcp = tokio::time::timeout(BOUND, TcpStream::connect(addr)).await.unwrap().unwrap();
    tcp.write_all(&msg).await.unwrap();
    tcp.shutdown().await.unwrap();
}

pub(crate) fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("step {i}: loss 0.{i}")).collect()
}

/// Waits until the dev master has received `n` records tagged `tag` and returns the
/// handshakes it saw on the way.
pub(crate) async fn delivered(master: &mut DevMaster, fb: &mut FluentBit, tag: &str, n: usize) -> Vec<Event> {
    let mut received = 0;
    let mut events = Vec::new();
    let wait = async {
        while received < n {
            match master.next_event().await {
                Some(Event::TaskLogs { tag: Some(got), records }) if got == tag => received += records,
                Some(event) => events.push(event),
                None => panic!("the dev master stopped"),
            }
        }
    };
    if tokio::time::timeout(BOUND, wait).await.is_err() {
        panic!(
            "{received} of {n} records tagged {tag} reached the dev master within {BOUND:?}; its events: {events:?}; Fluent Bit's log so far:\n{}",
            fb.log_so_far()
        );
    }
    assert_eq!(received, n, "exactly the records sent");
    events
}

/// Sends records and checks that Fluent Bit refuses the master: its log says
/// `certificate verify failed`, and nothing reaches the master.
pub(crate) async fn refused(master: &mut DevMaster, fb: &mut FluentBit, tag: &str) -> String {
    let input = fb.forward_input().await;
    send_forward(input, tag, &lines(3)).await;
    let line = fb.wait_for("certificate verify failed").await;
    assert!(line.contains("[error] [tls]"), "{line}");
    // Fluent Bit posts only after a handshake, so the master sees the refused one first.
    let failed = tokio::time::timeout(BOUND, async {
        loop {
            match master.next_event().await {
                Some(Event::HandshakeFailed { error }) => return error,
                Some(Event::TaskLogs { .. }) => panic!("records reached a master Fluent Bit must not trust"),
                Some(_) => {}
                None => panic!("the dev master stopped"),
            }
        }
    })
    .await
    .expect("the dev master sees the refused handshake");
    while let Some(event) = master.try_next_event() {
        assert!(!matches!(event, Event::TaskLogs { .. }), "records reached a master Fluent Bit must not trust");
    }
    failed
}

/// The pinned chain an operator writes: the master's leaf with its chain up to the root.
pub(crate) fn full_chain(dir: &Path) -> PathBuf {
    let mut full = std::fs::read(pki("master-leaf.pem")).unwrap();
    full.extend(std::fs::read(pki("chain-to-root.pem")).unwrap());
    let path = dir.join("master-full-chain.pem");
    std::fs::write(&path, full).unwrap();
    path
}
