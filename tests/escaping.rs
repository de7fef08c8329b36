//! Text from a certificate or from the master never reaches a terminal or a log raw:
//! a hostile certificate (escape sequences, CR LF, BEL, DEL, a C1 control and a
//! right-to-left override in its names) and a hostile `AgentShutdown` are shown escaped
//! by `check`, `check --json`, `trust`, `trust --list` and `run`'s log.

use det_agent::dev_master::{fixtures, DevMaster, Event};
use det_agent::x509::Fingerprint;

use crate::cli::{det_agent, finish, pki, signal, spawn_run, text};
use crate::link::until;

/// Every character that may not reach a terminal raw (a line feed is the output's own).
fn unsafe_chars(output: &str) -> Vec<char> {
    output
        .chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(c, '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}' | '\u{2028}' | '\u{2029}')
        })
        .collect()
}

fn assert_safe(what: &str, output: &str) {
    let found = unsafe_chars(output);
    assert!(found.is_empty(), "{what} let {found:?} through:\n{}", output.escape_debug());
}

#[tokio::test]
async fn a_hostile_certificate_is_shown_escaped_everywhere() {
    let master = DevMaster::with_fixture("hostile-text").await.unwrap();
    let port = master.addr().port().to_string();
    let check = ["check", "--master-host", "localhost", "--master-port", &port, "--security-tls-enabled"];

    let out = det_agent(&check, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_safe("check", &stdout);
    assert_safe("check (stderr)", &stderr);
    // What the operator sees maps back to the presented bytes.
    assert!(stdout.contains("evil\\x1b[2J\\x1b[H\\x1b[32mverdict        OK"), "{stdout}");
    assert!(stdout.contains("line\\x0d\\x0averdict        OK: injected\\x7f.example"), "{stdout}");
    assert!(stdout.contains("det-agent tests \\u202etxt.exe") && stdout.contains("hostile\\x1b]0;pwned\\x07\\x9b31m"));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("verdict")).count(), 1, "{stdout}");

    let out = det_agent(&[&check[..], &["--json"]].concat(), &[]).await;
    let (stdout, _) = text(&out);
    assert_safe("check --json", &stdout);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["chain"][0]["dns_names"][0],
        "evil\x1b[2J\x1b[H\x1b[32mverdict        OK: master verified\x1b[0m.example"
    );

    // trust: shown before the operator decides, stored with the right fingerprint, listed.
    let home = tempfile::tempdir().unwrap();
    let env = [("XDG_CONFIG_HOME", home.path().to_str().unwrap())];
    let url = format!("https://localhost:{port}");
    let leaf = Fingerprint::of(&fixtures::certs("hostile-text.pem")[0]);
    let out = det_agent(&["trust", "-m", &url], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert_safe("trust", &stdout);
    assert_safe("trust (stderr)", &stderr);
    assert!(stdout.contains(&leaf.to_string()), "{stdout}");
    let out = det_agent(&["trust", "-m", &url, "--fingerprint", &format!("sha256:{leaf}")], &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_safe("trust (storing)", &text(&out).0);
    let out = det_agent(&["trust", "--list"], &env).await;
    let (stdout, _) = text(&out);
    assert_safe("trust --list", &stdout);
    assert!(stdout.contains("\\u202e"), "{stdout}");

    // run: the refusal is logged, escaped, then it gives up after one attempt.
    let root = pki("other-root-ca.pem");
    let child = spawn_run(&[
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        root.to_str().unwrap(),
        "--agent-reconnect-attempts",
        "1",
    ]);
    let out = finish(child).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("master certificate rejected") && stderr.contains("\\x1b[2J"), "{stderr}");
    assert_safe("run's log", &stderr);
}

#[tokio::test]
async fn what_the_master_says_is_logged_escaped() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    master.set_behaviour(|b| {
        b.after_register =
            vec![r#"{"AgentShutdown":{"ErrMsg":"bye\u001b[2J\u001b[Hall good\r\n\u202eevil"}}"#.to_owned()];
    });
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let child = spawn_run(&[
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        root.to_str().unwrap(),
        "--log-format",
        "json",
    ]);
    until(&mut master, |e| matches!(e, Event::AgentGone { .. })).await;
    // The agent logged the master's reason and stays, to register again.
    signal(&child, "TERM").await;
    let out = finish(child).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_safe("run's JSON log", &stderr);
    assert!(stderr.contains("bye\\\\x1b[2J"), "{stderr}");
}
