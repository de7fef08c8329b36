//! The `det-agent` binary with what an operator of Determined's Go agent already has: its
//! complete agent.yaml, its flags and variables, a second file for det-agent's own keys,
//! and the devices the Go agent would report.

use std::path::{Path, PathBuf};
use std::process::Output;

use det_agent::dev_master::DevMaster;
use tokio::process::Command;

use crate::cli::{finish, pki, signal, text};
use crate::link::until;

/// Determined's complete agent.yaml (every key its options.go accepts).
fn go_agent_yaml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-agent.yaml")
}

fn devices_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/devices/nvidia-smi")
}

/// Runs `det-agent ARGS` with only `env` set of what det-agent reads (no DET_*, no
/// RUST_LOG, no *_VISIBLE_DEVICES, no proxy, no trust store), plus `path` first on PATH.
async fn det_agent(args: &[&str], env: &[(&str, &str)], path: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    crate::util::clear_det_agent_env(&mut cmd);
    cmd.args(args);
    if let Some(dir) = path {
        cmd.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
    }
    cmd.envs(env.iter().copied());
    cmd.output().await.expect("det-agent runs")
}

/// A warning about a file deciding trust that others can change: go-agent.yaml names the
/// checkout's fixtures, and their modes are not this test's (git checks client.key out
/// 0644, and the umask decides the rest); tests/trust_files.rs covers those warnings.
fn trust_file_warning(line: &str) -> bool {
    line.starts_with("det-agent: warning: ") && line.contains("; det-agent uses it anyway.")
}

/// A fake `nvidia-smi` that answers from the recorded samples, honours `--id=`, and
/// records each call's arguments in `calls`.
pub(crate) fn fake_nvidia_smi(dir: &Path) {
    let script = format!(
        r#"#!/bin/sh
echo "$*" >> '{calls}'
d='{data}'
ids=
for arg in "$@"; do case "$arg" in --id=*) ids="${{arg#--id=}}" ;; esac; done
case "$*" in
  *driver_version*) cat "$d/driver-version.csv" ;;
  *mig.mode.current*) cat "$d/mig-mode-disabled.csv" ;;
  *index,name,uuid*)
    if [ -z "$ids" ]; then cat "$d/query-gpu-a100-4.csv"
    else for id in $(echo "$ids" | tr , ' '); do grep "^$id," "$d/query-gpu-a100-4.csv"; done
    fi ;;
  *) echo "unexpected: $*" >&2; exit 2 ;;
esac
"#,
        calls = dir.join("calls").display(),
        data = devices_data().display(),
    );
    let path = dir.join("nvidia-smi");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

#[tokio::test]
async fn check_loads_a_complete_go_agent_yaml_warns_once_and_reports_the_go_agents_devices() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let bin = tempfile::tempdir().unwrap();
    fake_nvidia_smi(bin.path());
    let config = go_agent_yaml();
    let args = ["check", "--config", config.to_str().unwrap(), "--master-host", "127.0.0.1", "--master-port", &port];
    // As in the Go agent, the file's visible_gpus replaces the default taken from
    // CUDA_VISIBLE_DEVICES (nvidia-smi is asked for 0 and 2), and the variable, as Slurm
    // sets it, still filters what nvidia-smi lists.
    let out = det_agent(&args, &[("CUDA_VISIBLE_DEVICES", "2,0,3")], Some(bin.path())).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("verdict        OK: master verified as master.det.test"), "{stdout}");
    // The devices Determined's agent reports for slot_type cuda, visible_gpus 0,2 on this
    // recorded node.
    let devices = &stdout[stdout.find("devices ").expect("a devices section")..];
    assert_eq!(
        devices,
        "devices        2 as the master will see them (slot_type cuda)\n  \
         device       cuda0 (NVIDIA A100-SXM4-40GB), uuid GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e\n  \
         device       cuda2 (NVIDIA A100-SXM4-40GB), uuid GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0\n  \
         note         NVIDIA driver version: 535.129.03\n"
    );
    let calls = std::fs::read_to_string(bin.path().join("calls")).unwrap();
    assert!(calls.contains("--query-gpu=index,name,uuid --format=csv,noheader --id=0,2\n"), "{calls}");
    // One warning, naming each ignored key once.
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning") && !trust_file_warning(l)).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    for key in [
        "config_file",
        "api_enabled",
        "bind_ip",
        "bind_port",
        "tls,",
        "tls_cert",
        "tls_key",
        "container_runtime",
        "container_auto_remove_disabled",
        "fluent.image",
        "fluent.container_name",
    ] {
        assert_eq!(warnings[0].matches(key).count(), 1, "{key}: {}", warnings[0]);
    }
    assert!(warnings[0]
        .starts_with("det-agent: warning: options of Determined's agent that det-agent accepts and ignores: "));

    // --json: the same devices, as the master receives them.
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let out = det_agent(&json_args, &[], Some(bin.path())).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["devices"]["devices"],
        serde_json::json!([
            {"id": 0, "brand": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-8d3c5b1e-2f4a-6b7c-9d0e-1f2a3b4c5d6e", "type": "cuda"},
            {"id": 2, "brand": "NVIDIA A100-SXM4-40GB", "uuid": "GPU-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "type": "cuda"}
        ])
    );
}

#[tokio::test]
async fn check_fails_when_the_slot_type_asks_for_gpus_the_node_lacks() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let args = [
        "check",
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        root.to_str().unwrap(),
    ];
    let empty = tempfile::tempdir().unwrap();
    // No nvidia-smi anywhere on PATH.
    let out = Command::new(env!("CARGO_BIN_EXE_det-agent"))
        .args(args)
        .env_clear()
        .env("PATH", empty.path())
        .env("XDG_CONFIG_HOME", "/nonexistent/det-agent-tests")
        .env("DET_SLOT_TYPE", "gpu")
        .output()
        .await
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("verdict        OK: master verified as localhost"), "{stdout}");
    assert!(stdout.contains("devices        FAILED (slot_type cuda): "), "{stdout}");
    assert!(stdout.contains("nvidia-smi"), "{stdout}");
}

#[tokio::test]
async fn log_flags_are_checked_and_configuration_errors_print_plainly() {
    // -l is checked like log.level, before anything else runs.
    let out = det_agent(&["-l", "verbose", "trust", "--list"], &[], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        "det-agent: configuration error: log.level (set by --log-level): \"verbose\" is not valid: expected one of error, warn, info, debug, trace (or logrus' panic, fatal, warning, as Determined's agent accepts them)\n"
    );
    let out = det_agent(&["trust", "--list"], &[("DET_LOG_COLOR", "maybe")], None).await;
    assert_eq!(
        text(&out).1,
        "det-agent: configuration error: log.color (set by $DET_LOG_COLOR): \"maybe\" is not valid: expected true or false\n"
    );
    // A bad configuration is printed as it is, not as a JSON log line.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, "master_host: m\nlog:\n  level: loud\n").unwrap();
    let out = det_agent(&["--log-format", "json", "check", "--config", path.to_str().unwrap()], &[], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(
        stderr.starts_with(&format!("det-agent: configuration error: log.level (set in {}): \"loud\"", path.display()))
    );
}

/// `det-agent run ARGS` as a child, its log on stderr, with no RUST_LOG.
fn spawn_run(args: &[&str]) -> tokio::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    crate::util::clear_det_agent_env(&mut cmd);
    cmd.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).kill_on_drop(true);
    cmd.spawn().expect("det-agent starts")
}

#[tokio::test]
async fn log_level_comes_from_the_file_unless_a_flag_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    let root = pki("root-ca.pem");
    for (flags, logged) in [(&[][..], false), (&["-l", "info"][..], true), (&["--log-level=debug"][..], true)] {
        let mut master = DevMaster::with_fixture("master").await.unwrap();
        let yaml = format!(
            "master_host: localhost\nmaster_port: {}\nlog:\n  level: warn\ncontainer_runtime: docker\nsecurity:\n  tls:\n    enabled: true\n    master_cert: {}\n",
            master.addr().port(),
            root.display()
        );
        std::fs::write(&path, yaml).unwrap();
        let mut args = flags.to_vec();
        args.extend(["run", "--config", path.to_str().unwrap()]);
        let child = spawn_run(&args);
        until(&mut master, |e| matches!(e, det_agent::dev_master::Event::AgentStarted { .. })).await;
        signal(&child, "TERM").await;
        let out = finish(child).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert_eq!(stderr.contains(" INFO "), logged, "{flags:?}: {stderr}");
        // The ignored key is warned about once, in the log, whatever the level.
        assert_eq!(stderr.matches("container_runtime").count(), 1, "{flags:?}: {stderr}");
    }
}

#[tokio::test]
async fn task_env_gives_what_determineds_agent_gives_tasks_with_det_agents_keys_in_a_second_file() {
    let dir = tempfile::tempdir().unwrap();
    // The Go agent.yaml stays as it is; det-agent's own keys live in a second file.
    let extra = dir.path().join("det-agent.yaml");
    std::fs::write(
        &extra,
        "state_file: master.json\nagent_reconnect_backoff_max: 30\nmetrics:\n  listen: 127.0.0.1:9464\n",
    )
    .unwrap();
    let go = go_agent_yaml();
    let (go, extra_text) = (go.to_str().unwrap(), extra.to_str().unwrap());
    let json = |out: &Output| -> serde_json::Value { serde_json::from_slice(&out.stdout).expect("JSON on stdout") };

    let out =
        det_agent(&["task-env", "--format", "json", "--config-file", go, "--config", extra_text], &[], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let state = dir.path().join("master.json");
    assert!(
        stderr.contains(&format!(
            "det-agent: note: DET_CLUSTER_ID and DET_MASTER_ID are not set: no state file at {} yet",
            state.display()
        )),
        "{stderr}"
    );
    assert_eq!(json(&out).get("DET_CLUSTER_ID"), None);

    // Once run has recorded the master's identity.
    let record = det_agent::state_file::MasterRecord {
        format: det_agent::state_file::FORMAT,
        cluster_id: "bbebcb05-e3c2-4201-9154-1d733b795cad".into(),
        master_id: "4a5b32d7-2ab8-42d6-a1eb-144e33451503".into(),
        master_version: "0.38.0".into(),
        master: "https://master.det.test:8443".into(),
        written_at: "2025-03-01T12:00:00Z".into(),
    };
    det_agent::state_file::write_record(&state, &record).unwrap();
    // DET_CONFIG_FILE is --config-file's variable.
    let out =
        det_agent(&["task-env", "--format", "json", "--config", extra_text], &[("DET_CONFIG_FILE", go)], None).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("note"), "{stderr}");
    assert_eq!(stderr.lines().filter(|l| !trust_file_warning(l)).count(), 1, "only the ignored-keys warning: {stderr}");
    let env = json(&out);
    let cert = env["DET_MASTER_CERT_FILE"].as_str().unwrap().to_owned();
    assert!(cert.ends_with("fixtures/pki/root-ca.pem") && Path::new(&cert).is_absolute(), "{cert}");
    assert_eq!(
        env,
        serde_json::json!({
            "DET_MASTER": "https://172.17.0.1:8443",
            "DET_MASTER_HOST": "172.17.0.1",
            "DET_MASTER_PORT": "8443",
            "DET_MASTER_ADDR": "172.17.0.1",
            "DET_USE_TLS": "true",
            "DET_MASTER_CERT_FILE": cert,
            "DET_MASTER_CERT_NAME": "master.det.test",
            "DET_AGENT_ID": "gpu-node-17",
            "DET_CLUSTER_ID": "bbebcb05-e3c2-4201-9154-1d733b795cad",
            "DET_MASTER_ID": "4a5b32d7-2ab8-42d6-a1eb-144e33451503",
            "HTTP_PROXY": "http://proxy.example.com:3128",
            "HTTPS_PROXY": "http://proxy.example.com:3128",
            "FTP_PROXY": "ftp://proxy.example.com:2121",
            "NO_PROXY": "localhost,127.0.0.1,.cluster.local",
        })
    );

    // Flags and variables of the Go agent, with Go's boolean spellings: another master,
    // so the record is not used.
    let out = det_agent(
        &["task-env", "--config", go, "--config", extra_text, "--master-port", "443", "--agent-id=node-b"],
        &[("DET_SECURITY_TLS_SKIP_VERIFY", "F"), ("DET_HTTP_PROXY", "http://other:3128")],
        None,
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("export DET_AGENT_ID='node-b'\n") && stdout.contains("export HTTP_PROXY='http://other:3128'\n")
    );
    assert!(!stdout.contains("DET_CLUSTER_ID"), "{stdout}");
    assert!(
        stderr.contains(
            "is about the master at https://master.det.test:8443, not the one configured (https://master.det.test:443)"
        ),
        "{stderr}"
    );
}
