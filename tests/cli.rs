//! The `det-agent` binary, run as an operator would: exit codes, messages, JSON.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use det_agent::dev_master::{Behaviour, DevMaster, Event, Options};
use tokio::process::Command;

use crate::link::until;

pub(crate) fn pki(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pki").join(name)
}

/// Runs `det-agent ARGS` with a clean DET_* environment plus `env`.
pub(crate) async fn det_agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    // Nothing of this process's DET_*, SSL_CERT_*, proxies; never the trust store of
    // whoever runs the tests.
    crate::util::clear_det_agent_env(&mut cmd);
    cmd.args(args).env("RUST_LOG", "warn");
    cmd.envs(env.iter().copied());
    cmd.output().await.expect("det-agent runs")
}

pub(crate) fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

pub(crate) fn write_config(dir: &tempfile::TempDir, yaml: &str) -> PathBuf {
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
    let intermediate =
        det_agent::x509::KeyPin::of_cert(&det_agent::dev_master::fixtures::certs("intermediate-ca.pem")[0]).unwrap();
    assert!(stdout.contains(&format!("  key pin      {intermediate}")), "{stdout}");
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

    // The key pin `check` printed, given back in the environment, authenticates the
    // master: no warning any more. Another key is refused.
    let key_pin = report["chain"][0]["key_pin"].as_str().unwrap();
    let out = det_agent(&args, &[("DET_SECURITY_TLS_MASTER_KEY_PINS", key_pin)]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["mode"], "key-pin");
    assert!(report["verdict"]["summary"].as_str().unwrap().contains(key_pin), "{stdout}");
    assert!(!stderr.contains("NOT verified"), "{stderr}");
    let other = format!("sha256:{}", "00".repeat(32));
    let out = det_agent(&args, &[("DET_SECURITY_TLS_MASTER_KEY_PINS", &format!("{other},{key_pin}"))]).await;
    assert_eq!(out.status.code(), Some(0), "the second pin of the list matches: {}", text(&out).0);
    let out = det_agent(&args, &[("DET_SECURITY_TLS_MASTER_KEY_PINS", &other)]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verdict"]["rejection"], "key_pin_mismatch");
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
    assert!(stdout.contains("cannot connect to 127.0.0.1") && stdout.contains("8443 with TLS"), "{stdout}");
}

#[tokio::test]
async fn demo_runs_every_scenario_as_expected() {
    let out = det_agent(&["demo"], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("every scenario ended as expected"), "{stdout}");
    assert!(stdout.contains("rejected: unknown_issuer") && stdout.contains("accepted, NOT verified"), "{stdout}");
    assert!(stdout.contains("| (not checked)   | authenticated by key pin"), "{stdout}");
}

/// Starts `det-agent run ARGS` with a clean DET_* environment.
pub(crate) fn spawn_run(args: &[&str]) -> tokio::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    crate::util::clear_det_agent_env(&mut cmd);
    cmd.arg("run")
        .args(args)
        .env("RUST_LOG", "info")
        // Never the state directory of whoever runs the tests.
        .env("DET_STATE_FILE", "/nonexistent/det-agent-tests/master.json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("det-agent runs")
}

pub(crate) async fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("still running").to_string();
    let status = Command::new("kill").args(["-s", name, &pid]).status().await.unwrap();
    assert!(status.success());
}

pub(crate) async fn finish(child: tokio::process::Child) -> Output {
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.expect("exits").unwrap()
}

#[tokio::test]
async fn run_closes_the_websocket_on_sigterm_and_exits_0() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let child = spawn_run(&[
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        root.to_str().unwrap(),
        "--agent-id",
        "cli-agent",
        "--log-format",
        "json",
    ]);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    signal(&child, "TERM").await;
    match until(&mut master, |e| matches!(e, Event::AgentGone { .. })).await {
        Event::AgentGone { id, reason } => {
            assert_eq!(id, "cli-agent");
            assert_eq!(reason, "closed by the agent (code 1000)");
        }
        _ => unreachable!(),
    }
    let out = finish(child).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Every state change, once, as JSON with its fields.
    let lines: Vec<serde_json::Value> = stderr.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["fields"]["message"].as_str()).collect();
    for wanted in ["connecting", "TLS verified", "registered", "signal received", "shut down"] {
        assert_eq!(messages.iter().filter(|m| **m == wanted).count(), 1, "{wanted}: {stderr}");
    }
    let verified = lines.iter().find(|l| l["fields"]["message"] == "TLS verified").unwrap();
    assert_eq!(verified["fields"]["tls_version"], "TLSv1_3");
    assert_eq!(verified["fields"]["fingerprint"].as_str().unwrap().len(), 95);
}

#[tokio::test]
async fn run_exits_2_on_a_bad_configuration_before_any_network_activity() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let args = ["--master-host", "127.0.0.1", "--master-port", &port, "--security-tls-enabled"];
    let out =
        finish(spawn_run(&[&args[..], &["--security-tls-master-cert", "/nonexistent/master.crt"]].concat())).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("configuration error") && stderr.contains("/nonexistent/master.crt"), "{stderr}");
    // Had it dialed, the kernel would have queued the connection for accept.
    assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);

    let mut cmd = spawn_run(&args);
    drop(cmd.stderr.take());
    cmd.kill().await.unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    let out = child
        .args(["run", "--master-host", "127.0.0.1", "--master-port", &port])
        .env("HTTP_PROXY", "socks5://proxy:1080")
        .output()
        .await
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("HTTP_PROXY") && stderr.contains("not socks5://"), "{stderr}");
}

#[tokio::test]
async fn sighup_rereads_master_cert_for_the_next_connection() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let addr = master.addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(pki("root-ca.pem"), dir.path().join("master.crt")).unwrap();
    let yaml = format!(
        "master_host: 127.0.0.1\nmaster_port: {}\nagent_reconnect_backoff: 0.01\nagent_reconnect_backoff_max: 0.05\n\
         security:\n  tls:\n    enabled: true\n    master_cert: master.crt\n",
        addr.port()
    );
    let path = write_config(&dir, &yaml);
    let child = spawn_run(&["--config", path.to_str().unwrap()]);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    // The master comes back with a certificate from another CA: refused under the old pin.
    master.stop().await;
    let mut master = DevMaster::with_fixture_at(addr, "unrelated-ca").await.unwrap();
    for _ in 0..3 {
        until(&mut master, |e| matches!(e, Event::HandshakeFailed { .. })).await;
    }

    // The operator installs the new CA and sends SIGHUP; the next connection uses it.
    std::fs::copy(pki("other-root-ca.pem"), dir.path().join("master.crt")).unwrap();
    signal(&child, "HUP").await;
    // This master holds no agent: it refuses the reconnect (500) and the agent registers
    // afresh, over TLS verified with the new CA.
    until(&mut master, |e| matches!(e, Event::Refused { status: 500, .. })).await;
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    signal(&child, "TERM").await;
    let out = finish(child).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
    // The refusals were explained, and repeats folded rather than printed in full each time.
    assert!(stderr.contains("does not chain to any of them"), "{stderr}");
    assert!(stderr.contains("repeated"), "{stderr}");
}

/// A blank DET_SECURITY_TLS_MASTER_KEY_PINS once dropped the file's pins: key-pin mode
/// became bare skip_verify and accepted any master. Now it is a configuration error, and
/// nothing is dialed.
#[tokio::test]
async fn a_blank_key_pin_variable_exits_2_and_the_impostor_is_never_dialed() {
    // The impostor: a complete master, with another key than the one pinned. Every
    // connection it accepts is an event, so "never dialed" is checked, not assumed.
    let mut impostor = DevMaster::with_fixture("master").await.unwrap();
    let port = impostor.addr().port();
    // The genuine master's key is pinned; the impostor presents another one.
    let genuine =
        det_agent::x509::KeyPin::of_cert(&det_agent::dev_master::fixtures::certs("self-signed-leaf.pem")[0]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_pin_config = format!(
        "master_host: 127.0.0.1\nmaster_port: {port}\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n"
    );
    let pinned = write_config(&dir, &format!("{key_pin_config}    master_key_pins: [{genuine}]\n"));
    let check = ["check", "--config", pinned.to_str().unwrap()];

    // Whitespace, and exactly empty too: for a security option an empty variable is a
    // template whose value went missing (PINS=${UNSET}), never "unset".
    for (value, found) in [(" ", "is blank (\" \")"), ("", "is empty")] {
        let out = det_agent(&check, &[("DET_SECURITY_TLS_MASTER_KEY_PINS", value)]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
        assert_eq!(
            stderr,
            format!(
                "det-agent: configuration error: security.tls.master_key_pins (set by $DET_SECURITY_TLS_MASTER_KEY_PINS) {found}; \
                 an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to one or \
                 more key pins (sha256:..., as the key pin lines of `det-agent check`), or unset \
                 $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset\n"
            )
        );
        assert_eq!(stdout, "");
        // The dev master reports every TLS handshake, failed or not, as an event.
        assert!(impostor.try_next_event().is_none(), "det-agent dialed the impostor");
    }

    // The file's pin refuses the impostor; without the pin, what the blank variable used
    // to mean, it is accepted.
    let out = det_agent(&check, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("no certificate the master's identity rests on has a pinned key"), "{stdout}");
    let unpinned = write_config(&dir, &key_pin_config);
    let out = det_agent(&["check", "--config", unpinned.to_str().unwrap()], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("master identity NOT verified"), "{stderr}");
    assert!(matches!(impostor.try_next_event(), Some(Event::Handshake { .. } | Event::HandshakeFailed { .. })));
}

/// `det-agent run` answers a task placed on its node at once, in words, and a SIGHUP that
/// moves it to another pool brings it back registered there: the master still holds it in
/// the old pool, refuses the move with AgentShutdown, and the agent registers afresh.
#[tokio::test]
async fn run_fails_tasks_at_once_and_a_sighup_into_another_pool_registers_there() {
    let options = Options { pools: vec!["default".into(), "gpu".into()], ..Options::default() };
    let mut master =
        DevMaster::serve_with(([127, 0, 0, 1], 0).into(), None, Behaviour::default(), options).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = master.addr().port();
    let yaml = |pool: &str| {
        format!(
            "master_host: 127.0.0.1\nmaster_port: {port}\nagent_id: cli-pool\nresource_pool: {pool}\n\
             agent_reconnect_backoff: 0.01\nagent_reconnect_backoff_max: 0.05\n"
        )
    };
    let path = write_config(&dir, &yaml("default"));
    let child = spawn_run(&["--config", path.to_str().unwrap()]);
    until(&mut master, |e| matches!(e, Event::AgentStarted { resource_pool, .. } if resource_pool == "default")).await;

    let container = master.start_container("cli-pool").unwrap();
    match until(&mut master, |e| matches!(e, Event::ContainerStateChanged { .. })).await {
        Event::ContainerStateChanged { container_id, state, failure_type, err_msg, .. } => {
            assert_eq!((container_id, state.as_str()), (container, "TERMINATED"));
            assert_eq!(failure_type.as_deref(), Some("task failed without an associated exit code"));
            assert_eq!(err_msg.as_deref(), Some(det_agent::daemon::RUNS_NO_CONTAINERS));
        }
        _ => unreachable!(),
    }

    write_config(&dir, &yaml("gpu"));
    signal(&child, "HUP").await;
    match until(&mut master, |e| matches!(e, Event::AgentShutdownSent { .. })).await {
        Event::AgentShutdownSent { reason, .. } => assert_eq!(reason, "resource pool has changed: default -> gpu"),
        _ => unreachable!(),
    }
    until(&mut master, |e| matches!(e, Event::AgentStarted { resource_pool, .. } if resource_pool == "gpu")).await;
    signal(&child, "TERM").await;
    let out = finish(child).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("it changes this agent's registration"), "{stderr}");
    assert!(stderr.contains("registering afresh"), "{stderr}");
    assert!(stderr.contains("answered that it failed"), "{stderr}");
}

/// RUST_LOG is a level or `target=level` pairs; one that is not a filter is said, not
/// silently dropped, and the configured level applies.
#[tokio::test]
async fn rust_log_filters_by_target_and_a_bad_one_is_reported() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "master_host: 127.0.0.1\nmaster_port: {}\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n",
        master.addr().port()
    );
    let path = write_config(&dir, &yaml);
    let check = ["check", "--config", path.to_str().unwrap()];
    let warning = "master identity NOT verified";

    let out = det_agent(&check, &[("RUST_LOG", "det_agent=warn")]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stderr.contains(warning), "{stderr}");
    // skip_verify checks no name, so check shows none as verified.
    assert!(!stdout.contains("verified name"), "{stdout}");
    let out = det_agent(&check, &[("RUST_LOG", "det_agent=error")]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains(warning), "{stderr}");

    // A target without a bare level keeps the configured level for every other target.
    let out = det_agent(&check, &[("RUST_LOG", "rustls=error")]).await;
    let (_, stderr) = text(&out);
    assert!(stderr.contains(warning), "{stderr}");

    // Not filters: tracing's own parser would read "warning" or "det-agent" as a target
    // at TRACE and silence everything else, this warning included.
    for (value, why) in [
        ("det_agent=\x1b[2J", "\"\\x1b[2J\" is not a level (off, error, warn, info, debug, trace)"),
        ("warning", "\"warning\" is not a level (off, error, warn, info, debug, trace)"),
        ("det-agent=debug", "\"det-agent\" is not a target (a Rust module path such as det_agent or rustls::client)"),
    ] {
        let out = det_agent(&check, &[("RUST_LOG", value)]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        let expected = format!(
            "RUST_LOG={} is not a log filter: {why}; it takes a level (debug) and target=level pairs \
             (det_agent=debug,rustls=trace); logging at info instead",
            det_agent::text::quoted(value)
        );
        assert!(stderr.contains(&expected), "{expected}\n{stderr}");
        assert!(stderr.contains(warning), "{stderr}");
    }
}

/// Under bare skip_verify every connection logs that the master is not verified, with the
/// certificate presented that time. A resumed TLS session would skip the verifier, and its
/// warning, so skip_verify never resumes; pinned mode, the control, resumes the same
/// reconnect (the restarted master keeps its TLS configuration, and so its session keys).
#[tokio::test]
async fn skip_verify_warns_on_every_connection_and_never_resumes() {
    let (chain, key) = det_agent::dev_master::fixtures::identity("master");
    let server = det_agent::dev_master::server_config(chain, key, None).unwrap();
    let root = pki("root-ca.pem");
    let pin = det_agent::x509::KeyPin::of_cert(&det_agent::dev_master::fixtures::certs("master.pem")[0]).unwrap();
    for (trust, resumes) in [
        ("    skip_verify: true\n".to_owned(), false),
        (format!("    master_cert: {}\n", root.display()), true),
        // Key-pin mode is authenticated (by the key, not a name): it resumes.
        (format!("    skip_verify: true\n    master_key_pins: [{pin}]\n"), true),
    ] {
        let mut master = DevMaster::start(([127, 0, 0, 1], 0).into(), server.clone()).await.unwrap();
        let addr = master.addr();
        let dir = tempfile::tempdir().unwrap();
        let yaml = format!(
            "master_host: 127.0.0.1\nmaster_port: {}\nagent_reconnect_backoff: 0.01\nagent_reconnect_backoff_max: 0.05\n\
             security:\n  tls:\n    enabled: true\n{trust}",
            addr.port()
        );
        let path = write_config(&dir, &yaml);
        let child = spawn_run(&["--config", path.to_str().unwrap()]);
        let mut handshakes = 0;
        let mut count = |e: &Event| {
            handshakes += usize::from(matches!(e, Event::Handshake { .. }));
            matches!(e, Event::AgentStarted { .. })
        };
        until(&mut master, &mut count).await;
        master.stop().await;
        let mut master = DevMaster::start(addr, server.clone()).await.unwrap();
        // This master holds no agent: it refuses the reconnect (500), and the agent
        // registers afresh.
        until(&mut master, &mut count).await;
        signal(&child, "TERM").await;
        let out = finish(child).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(handshakes >= 3, "{handshakes} handshakes\n{stderr}");
        if resumes {
            assert!(stderr.contains("resumed=true"), "{stderr}");
            assert!(!stderr.contains("NOT verified"), "{stderr}");
            // No name is checked in key-pin mode, so none is logged as verified.
            let key_pin = trust.contains("master_key_pins");
            assert_eq!(stderr.contains("TLS verified by key pin (names not checked)"), key_pin, "{stderr}");
            assert_eq!(stderr.contains("verified_name"), !key_pin, "{stderr}");
        } else {
            let warned = stderr.matches("master identity NOT verified (security.tls.skip_verify)").count();
            let accepted = stderr.matches("TLS accepted WITHOUT verification (skip_verify)").count();
            assert_eq!((warned, accepted), (handshakes, 2), "{stderr}");
            assert!(!stderr.contains("TLS verified") && !stderr.contains("resumed"), "{stderr}");
        }
    }
}

/// A reader that goes away (`det-agent task-env | head -1`) ends a command quietly, by
/// SIGPIPE, as it ends cat or grep: no panic message, no core dump (SIGABRT). The pipe's
/// reading end is closed before the command starts, so its first write meets it. (A
/// socket the peer resets must not raise SIGPIPE: tests/no_debug.rs's "not TLS" case.)
#[tokio::test]
async fn a_closed_stdout_ends_a_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let check = ["check", "--master-host", "127.0.0.1", "--master-port", &port, "--security-tls-enabled"];
    let check = [&check[..], &["--security-tls-master-cert", root.to_str().unwrap()]].concat();
    for args in [&["task-env", "--master-host", "m.example.com"][..], &["demo"][..], &check[..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
        crate::util::clear_det_agent_env(&mut cmd);
        // Not output(): tokio's replaces stdout with a pipe of its own.
        let child = cmd.args(args).stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
        let out = child.wait_with_output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?}\n{stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// The daemon outlives its log's reader (journald restarted, the reader of a pipe gone):
/// a line it cannot write is dropped, and it goes on to register and stops on SIGTERM.
/// tracing-subscriber's own report of the failed write used to panic on the same stderr.
#[tokio::test]
async fn run_outlives_a_closed_stderr() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_det-agent"));
    crate::util::clear_det_agent_env(&mut cmd);
    cmd.args(["run", "--master-host", "127.0.0.1", "--master-port", &port, "--security-tls-enabled"])
        .args(["--security-tls-master-cert", root.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .env("DET_STATE_FILE", "/nonexistent/det-agent-tests/master.json")
        .stdout(Stdio::null())
        .stderr(writer)
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    signal(&child, "TERM").await;
    assert_eq!(finish(child).await.status.code(), Some(0));
}
