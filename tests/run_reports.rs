//! `det-agent run` as production runs it: systemd's notifications on a real unix
//! datagram socket (READY, STATUS, RELOADING, STOPPING, WATCHDOG), Prometheus metrics and
//! `/healthz` scraped over HTTP, the master's identity written for `task-env`, the
//! devices `slot_type` asks for reported to the master, and `hooks.on_connection_lost`
//! run when the agent gives up.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use det_agent::dev_master::{DevMaster, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::cli::{finish, pki, signal, text};
use crate::go_config::fake_nvidia_smi;
use crate::link::until;

/// `det-agent run` with a clean DET_* environment plus `env`, and `path` first on PATH.
fn spawn(args: &[&str], env: &[(&str, &str)], path: Option<&Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    crate::util::clear_det_agent_env(&mut cmd);
    cmd.arg("run").args(args).env("RUST_LOG", "info");
    if let Some(dir) = path {
        cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
    }
    cmd.envs(env.iter().copied()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
    cmd.spawn().expect("det-agent runs")
}

/// The notifications systemd would receive, one datagram each, in order.
struct Systemd(tokio::net::UnixDatagram);

impl Systemd {
    fn bind(dir: &Path) -> (Systemd, String) {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket.set_nonblocking(true).unwrap();
        (Systemd(tokio::net::UnixDatagram::from_std(socket).unwrap()), path.display().to_string())
    }

    async fn next(&self) -> String {
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(30), self.0.recv(&mut buf))
            .await
            .expect("a notification within 30 s")
            .unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap().trim_end_matches('\n').to_owned()
    }

    /// Skips notifications until one starts with `prefix`.
    async fn until(&self, prefix: &str) -> String {
        loop {
            let message = self.next().await;
            if message.starts_with(prefix) {
                return message;
            }
        }
    }
}

async fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn systemd_metrics_state_file_and_devices_follow_the_daemon() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (systemd, socket) = Systemd::bind(dir.path());
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    fake_nvidia_smi(&bin);
    let state = dir.path().join("master.json");
    let metrics = format!("127.0.0.1:{}", free_port());
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        root.to_str().unwrap(),
        "--agent-id",
        "gpu-node-7",
        "--slot-type",
        "cuda",
        "--state-file",
        state.to_str().unwrap(),
        "--metrics-listen",
        &metrics,
    ];
    // A two-second watchdog: pings every second, from the daemon's own loop.
    let env = [("NOTIFY_SOCKET", socket.as_str()), ("WATCHDOG_USEC", "2000000")];
    let child = spawn(&args, &env, Some(&bin));

    assert_eq!(systemd.next().await, "READY=1");
    let registered = systemd.until("STATUS=registered").await;
    assert_eq!(registered, format!("STATUS=registered with localhost:{port} as gpu-node-7 (pinned)"));
    match until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await {
        Event::AgentStarted { devices, .. } => assert_eq!(devices, 4, "the four GPUs nvidia-smi lists"),
        _ => unreachable!(),
    }
    assert_eq!(systemd.until("WATCHDOG=1").await, "WATCHDOG=1");

    // Registered: /healthz says so, and the metrics carry the link and the certificate.
    let (status, body) = http_get(&metrics, "/healthz").await;
    assert_eq!((status, body.trim()), (200, format!("registered with localhost:{port} as gpu-node-7").as_str()));
    let (status, body) = http_get(&metrics, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.lines().any(|l| l == "det_agent_link_up 1"), "{body}");
    // The fixture master certificate ends on 2124-01-01T00:00:00Z.
    assert!(
        body.lines()
            .any(|l| l == "det_agent_master_certificate_not_after_timestamp_seconds{mode=\"pinned\"} 4859740800"),
        "{body}"
    );
    assert!(
        body.lines().any(|l| l.starts_with("det_agent_connect_attempts_total{outcome=\"registered\"} 1")),
        "{body}"
    );

    // The master's identity, recorded for task-env.
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(record["cluster_id"], master.info()["cluster_id"]);
    assert_eq!(record["master_id"], master.info()["master_id"]);

    // SIGHUP: RELOADING=1 with the monotonic time, then READY=1 again.
    signal(&child, "HUP").await;
    let reloading = systemd.until("RELOADING=1").await;
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    assert_eq!(systemd.until("READY=1").await, "READY=1");

    // SIGTERM: STOPPING=1, and a clean exit.
    signal(&child, "TERM").await;
    assert_eq!(systemd.until("STOPPING=1").await, "STOPPING=1");
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
}

#[tokio::test]
async fn task_env_reads_what_run_recorded() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (systemd, socket) = Systemd::bind(dir.path());
    let state = dir.path().join("master.json");
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let common = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        root.to_str().unwrap(),
        "--state-file",
        state.to_str().unwrap(),
    ];
    let child = spawn(&common, &[("NOTIFY_SOCKET", socket.as_str())], None);
    systemd.until("STATUS=registered").await;
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    signal(&child, "TERM").await;
    finish(child).await;

    let out = crate::cli::det_agent(&[&["task-env"], &common[..]].concat(), &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let cluster = master.info()["cluster_id"].as_str().unwrap().to_owned();
    assert!(stdout.contains(&format!("export DET_CLUSTER_ID='{cluster}'\n")), "{stdout}");
    assert!(stdout.contains("export DET_MASTER_ID='"), "{stdout}");
}

#[tokio::test]
async fn giving_up_runs_the_connection_lost_hook() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("lost");
    let closed = free_port().to_string();
    let yaml = format!(
        "master_host: 127.0.0.1\nmaster_port: {closed}\nagent_reconnect_attempts: 1\nstate_file: {}\nhooks:\n  on_connection_lost: [\"sh\", \"-c\", \"echo lost > {}\"]\n",
        dir.path().join("master.json").display(),
        marker.display()
    );
    let config = dir.path().join("agent.yaml");
    std::fs::write(&config, yaml).unwrap();
    let child = spawn(&["--config", config.to_str().unwrap()], &[], None);
    let out = finish(child).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("gave up after 1 consecutive failed attempts"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "lost\n", "{stderr}");
}
