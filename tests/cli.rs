//! The `det-agent` binary, run as an operator would: exit codes, messages, JSON.

use std::path::{Path, PathBuf};
use std::process::Output;

use det_agent::dev_master::DevMaster;
use tokio::process::Command;

fn pki(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pki").join(name)
}

/// Runs `det-agent ARGS` with a clean DET_* environment plus `env`.
async fn det_agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    cmd.args(args).env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("DET_") || key.starts_with("SSL_CERT") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().await.expect("det-agent runs")
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> PathBuf {
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[tokio::test]
async fn check_verifies_a_pinned_master_and_exits_0() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(pki("chain-to-root.pem"), dir.path().join("master.crt")).unwrap();
    // A relative master_cert is read next to agent.yaml.
    let yaml = format!(
        "master_host: 127.0.0.1\nmaster_port: {}\nsecurity:\n  tls:\n    enabled: true\n    master_cert: master.crt\n",
        master.addr().port()
    );
    let path = write_config(&dir, &yaml);
    let out = det_agent(&["check", "--config", path.to_str().unwrap()], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("verdict        OK: master verified as 127.0.0.1"), "{stdout}");
    assert!(stdout.contains("(IP address: no SNI sent)") && stdout.contains("TLSv1_3"), "{stdout}");
    assert!(stdout.contains("certificate [1]") && stdout.contains("sha256"), "{stdout}");
}

#[tokio::test]
async fn check_explains_a_rejection_and_exits_1() {
    let master = DevMaster::with_fixture("dns-only").await.unwrap();
    let port = master.addr().port().to_string();
    let cert = pki("root-ca.pem");
    let env = [
        ("DET_MASTER_HOST", "127.0.0.1"),
        ("DET_MASTER_PORT", port.as_str()),
        ("DET_SECURITY_TLS_ENABLED", "true"),
        ("DET_SECURITY_TLS_MASTER_CERT", cert.to_str().unwrap()),
    ];
    let out = det_agent(&["check"], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("set security.tls.master_cert_name to one of: master.det.test, localhost"), "{stdout}");

    // The flag fixes it, and wins over the environment.
    let out = det_agent(&["check", "--security-tls-master-cert-name", "master.det.test"], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
}

#[tokio::test]
async fn check_json_is_one_object() {
    let master = DevMaster::with_fixture("self-signed-leaf").await.unwrap();
    let port = master.addr().port().to_string();
    let args = [
        "check",
        "--json",
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-skip-verify",
    ];
    let out = det_agent(&args, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mode"], "skip-verify");
    assert_eq!(report["verdict"]["ok"], true);
    let fingerprint = report["chain"][0]["sha256"].as_str().unwrap();
    assert_eq!(fingerprint.len(), 95);
    // skip_verify is never silent: the warning names the fingerprint.
    assert!(stderr.contains("master identity NOT verified") && stderr.contains(fingerprint), "{stderr}");
}

#[tokio::test]
async fn configuration_errors_exit_2_before_dialing() {
    let dir = tempfile::tempdir().unwrap();
    let path =
        write_config(&dir, "master_host: m.example.com\nsecurity:\n  tls:\n    enabled: true\n    skip_verfy: true\n");
    let out = det_agent(&["check", "--config", path.to_str().unwrap()], &[]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("skip_verfy") && stderr.contains("line 5"), "{stderr}");

    let path = write_config(
        &dir,
        "master_host: m.example.com\nsecurity:\n  tls:\n    enabled: true\n    master_cert: missing.crt\n",
    );
    let out = det_agent(&["check", "--config", path.to_str().unwrap()], &[]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("security.tls.master_cert") && stderr.contains("missing.crt: no such file"), "{stderr}");

    let out = det_agent(&["check", "--config", "/nonexistent/agent.yaml"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn ca_mode_trusts_a_root_installed_in_the_host_store() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let args = ["check", "--master-host", "localhost", "--master-port", &port, "--security-tls-enabled"];
    let out = det_agent(&args, &[("SSL_CERT_FILE", "/nonexistent/empty-store.pem")]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).0);
    // rustls-native-certs honours SSL_CERT_FILE, as a corporate CA install would.
    let root = pki("root-ca.pem");
    let out = det_agent(&args, &[("SSL_CERT_FILE", root.to_str().unwrap())]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
}

#[tokio::test]
async fn unreachable_master_exits_1_and_says_so() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let out = det_agent(&["check", "--master-host", "127.0.0.1", "--master-port", &port], &[]).await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("could not connect") && stdout.contains("8443 with TLS"), "{stdout}");
}

#[tokio::test]
async fn demo_runs_every_scenario_as_expected() {
    let out = det_agent(&["demo"], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("every scenario ended as expected"), "{stdout}");
    assert!(stdout.contains("rejected: unknown_issuer") && stdout.contains("accepted, NOT verified"), "{stdout}");
}
