//! A SIGHUP reload of `det-agent run` (the real binary) beside a live link: while the
//! reload's device detection waits on a slow `nvidia-smi`, the master's pings are still
//! answered and the agent stays registered; SIGTERM does not wait for the reload; and a
//! reload that changes `metrics.listen` says that the change needs a restart.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use det_agent::dev_master::{DevMaster, Event};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::pipe;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::cli::{pki, signal};
use crate::go_config::fake_nvidia_smi;
use crate::link::until;

/// The dev master's ping interval here: short, so that several pings fall inside the
/// time the fake `nvidia-smi` is held.
const PING_EVERY: Duration = Duration::from_millis(100);

/// How long the test waits for pongs while the tool is held. Well under the detection's
/// tool timeout (30 s, `devices::DEFAULT_TOOL_TIMEOUT`): without it, a daemon that blocks
/// would answer again once the timeout killed the tool, and the test would prove nothing.
const PONGS_WITHIN: Duration = Duration::from_secs(10);

/// `det-agent run --config CONFIG` with a clean DET_* environment and `bin` first on PATH.
fn spawn(config: &Path, bin: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    crate::util::clear_det_agent_env(&mut cmd);
    cmd.args(["run", "--config"]).arg(config).env("RUST_LOG", "info");
    cmd.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    cmd.stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.spawn().expect("det-agent runs")
}

/// The daemon's log lines as they are written.
struct Log {
    lines: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl Log {
    fn of(child: &mut Child) -> Log {
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Log { lines, seen: Vec::new() }
    }

    /// The next line containing `text`; the bound turns a bug into a failure, not a hang.
    async fn until(&mut self, text: &str) -> String {
        let wait = async {
            loop {
                match self.lines.recv().await {
                    Some(line) => {
                        self.seen.push(line.clone());
                        if line.contains(text) {
                            return line;
                        }
                    }
                    None => panic!("det-agent exited before logging {text:?}; it logged:\n{}", self.seen.join("\n")),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(30), wait).await {
            Ok(line) => line,
            Err(_) => panic!("no log line with {text:?} within 30 s; logged:\n{}", self.seen.join("\n")),
        }
    }
}

/// A fake `nvidia-smi` that answers as a four-GPU node, except that while the FIFO
/// `gate` exists its first run says so on the FIFO `held` and then waits for a line on
/// `gate`: the test holds it as long as it likes, and releases it by writing a line.
struct SlowTool {
    bin: PathBuf,
    gate: PathBuf,
    held: PathBuf,
}

impl SlowTool {
    fn new(dir: &Path) -> SlowTool {
        let (bin, answers) = (dir.join("bin"), dir.join("answers"));
        std::fs::create_dir(&bin).unwrap();
        std::fs::create_dir(&answers).unwrap();
        fake_nvidia_smi(&answers);
        let tool = SlowTool { bin, gate: dir.join("gate"), held: dir.join("held") };
        let script = format!(
            "#!/bin/sh\nif [ -p '{gate}' ]; then\n  echo held > '{held}'\n  read line < '{gate}'\n  rm -f '{gate}'\nfi\nexec '{answers}/nvidia-smi' \"$@\"\n",
            gate = tool.gate.display(),
            held = tool.held.display(),
            answers = answers.display(),
        );
        let path = tool.bin.join("nvidia-smi");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        tool
    }

    /// Arms the gate: the next run of the tool is held. Both FIFOs are opened read-write
    /// here, so that neither side's open waits for the other.
    fn arm(&self) -> Gate {
        for fifo in [&self.gate, &self.held] {
            let status = std::process::Command::new("mkfifo").arg(fifo).status().expect("mkfifo runs");
            assert!(status.success(), "mkfifo {}", fifo.display());
        }
        let release = pipe::OpenOptions::new().read_write(true).open_sender(&self.gate).unwrap();
        let held = pipe::OpenOptions::new().read_write(true).open_receiver(&self.held).unwrap();
        Gate { release: Some(release), held: BufReader::new(held).lines() }
    }
}

/// The test's side of the held tool.
struct Gate {
    release: Option<pipe::Sender>,
    held: tokio::io::Lines<BufReader<pipe::Receiver>>,
}

impl Gate {
    /// Waits until the tool runs and is held.
    async fn held(&mut self) {
        let line = tokio::time::timeout(Duration::from_secs(30), self.held.next_line())
            .await
            .expect("the reload ran nvidia-smi within 30 s")
            .unwrap();
        assert_eq!(line.as_deref(), Some("held"));
    }

    /// Lets the held tool finish.
    async fn release(&mut self) {
        if let Some(mut release) = self.release.take() {
            release.write_all(b"go\n").await.unwrap();
        }
    }
}

fn agent_yaml(dir: &Path, master: &DevMaster, extra: &str) -> PathBuf {
    let yaml = format!(
        "master_host: localhost\nmaster_port: {port}\nagent_id: gpu-node-3\nslot_type: cuda\nstate_file: {state}\n\
         security:\n  tls:\n    enabled: true\n    master_cert: {root}\n{extra}",
        port = master.addr().port(),
        state = dir.join("master.json").display(),
        root = pki("root-ca.pem").display(),
    );
    let path = dir.join("agent.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Waits for `count` pongs at the dev master, failing on any sign that the agent was
/// dropped or reconnected.
async fn pongs(master: &mut DevMaster, count: usize) {
    let wait = async {
        let mut seen = 0;
        while seen < count {
            match master.next_event().await.expect("dev master running") {
                Event::Pong { .. } => seen += 1,
                event @ (Event::AgentGone { .. } | Event::AgentConnected { .. } | Event::AgentForgotten { .. }) => {
                    panic!("the agent did not stay registered: {event:?}")
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(PONGS_WITHIN, wait)
        .await
        .expect("the master's pings were answered while the reload's nvidia-smi was held");
}

/// A master with quick pings, a registered `det-agent run` reporting four GPUs, and the
/// slow tool it runs.
async fn registered() -> (DevMaster, tempfile::TempDir, SlowTool, Child, Log) {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    master.set_behaviour(|b| b.ping_interval = Some(PING_EVERY));
    let dir = tempfile::tempdir().unwrap();
    let tool = SlowTool::new(dir.path());
    let config = agent_yaml(dir.path(), &master, "");
    let mut child = spawn(&config, &tool.bin);
    let log = Log::of(&mut child);
    match until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await {
        Event::AgentStarted { devices, .. } => assert_eq!(devices, 4),
        _ => unreachable!(),
    }
    pongs(&mut master, 1).await;
    (master, dir, tool, child, log)
}

async fn exited(child: &mut Child, within: Duration) -> Option<i32> {
    tokio::time::timeout(within, child.wait()).await.expect("det-agent exits").unwrap().code()
}

#[tokio::test]
async fn pings_are_answered_while_a_reload_waits_on_a_slow_nvidia_smi() {
    let (mut master, _dir, tool, mut child, mut log) = registered().await;
    let mut gate = tool.arm();
    signal(&child, "HUP").await;
    gate.held().await;

    // The tool is held. Pongs already on their way when it started may still arrive:
    // take what is queued, then ask for three more, so at least two answer pings sent
    // while it was held.
    while master.try_next_event().is_some() {}
    pongs(&mut master, 3).await;
    assert!(master.holds("gpu-node-3"));

    gate.release().await;
    let reloaded = log.until("configuration reloaded").await;
    assert!(reloaded.contains("it applies from the next connection"), "{reloaded}");
    // Same ID, pool and devices: still the same link.
    pongs(&mut master, 1).await;

    signal(&child, "TERM").await;
    assert_eq!(exited(&mut child, Duration::from_secs(30)).await, Some(0));
}

#[tokio::test]
async fn sigterm_during_a_slow_reload_shuts_down_without_waiting_for_it() {
    let (mut master, _dir, tool, mut child, _log) = registered().await;
    let mut gate = tool.arm();
    signal(&child, "HUP").await;
    gate.held().await;

    signal(&child, "TERM").await;
    // The tool stays held until the daemon is gone: it must not wait for the reload.
    // (The bound is under the tool's 30 s timeout, after which a waiting daemon would
    // exit too.)
    assert_eq!(exited(&mut child, Duration::from_secs(20)).await, Some(0));
    match until(&mut master, |e| matches!(e, Event::AgentGone { .. })).await {
        Event::AgentGone { reason, .. } => assert!(reason.contains("closed by the agent"), "{reason}"),
        _ => unreachable!(),
    }
    gate.release().await;
}

#[tokio::test]
async fn a_reload_that_changes_metrics_listen_says_it_needs_a_restart() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tool = SlowTool::new(dir.path());
    // Two distinct free ports: both listeners are held until both are chosen.
    let listeners: Vec<_> = (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let [old, new] = [0, 1].map(|i| listeners[i].local_addr().unwrap().to_string());
    drop(listeners);
    let config = agent_yaml(dir.path(), &master, &format!("metrics:\n  listen: {old}\n"));
    let mut child = spawn(&config, &tool.bin);
    let mut log = Log::of(&mut child);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    agent_yaml(dir.path(), &master, &format!("metrics:\n  listen: {new}\n"));
    signal(&child, "HUP").await;
    let warning = log.until("metrics.listen").await;
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains(&format!("from {old} to {new}")), "{warning}");
    assert!(warning.contains("takes effect at the next start (restart the service"), "{warning}");
    log.until("configuration reloaded").await;

    // Turning metrics off is a change too.
    agent_yaml(dir.path(), &master, "");
    signal(&child, "HUP").await;
    let warning = log.until("metrics.listen").await;
    assert!(warning.contains(&format!("from {old} to none")), "{warning}");

    // A reload that keeps the bound address says nothing about it.
    log.until("configuration reloaded").await;
    agent_yaml(dir.path(), &master, &format!("metrics:\n  listen: {old}\n"));
    let mark = log.seen.len();
    signal(&child, "HUP").await;
    log.until("configuration reloaded").await;
    let third = &log.seen[mark..];
    assert!(third.iter().all(|l| !l.contains("metrics.listen")), "{third:?}");

    signal(&child, "TERM").await;
    assert_eq!(exited(&mut child, Duration::from_secs(30)).await, Some(0));
}
