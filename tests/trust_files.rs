//! The files that decide what det-agent trusts (`master_cert`, `SSL_CERT_FILE`,
//! `client_key`), when another local user can change or read them: used, and warned
//! about by `check` (stderr, and `--json`'s warnings) and by `run` (at start and after
//! each reload).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use det_agent::dev_master::{DevMaster, Event};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{det_agent, finish, pki, signal, spawn_run, text, write_config};
use crate::link::until;

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// A 0700 folder holding a copy of the fixture `name` as `as_name`, with `mode`: the
/// checkout's own modes follow the umask, so no test here depends on them.
fn copy(dir: &tempfile::TempDir, name: &str, as_name: &str, mode: u32) -> PathBuf {
    chmod(dir.path(), 0o700);
    let path = dir.path().join(as_name);
    fs::copy(pki(name), &path).unwrap();
    chmod(&path, mode);
    path
}

fn pinned_yaml(port: u16, cert: &Path) -> String {
    format!(
        "master_host: 127.0.0.1\nmaster_port: {port}\nsecurity:\n  tls:\n    enabled: true\n    master_cert: {}\n",
        cert.display()
    )
}

fn ids(path: &Path) -> (u32, u32) {
    let meta = fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

fn group_writable_warning(cert: &Path) -> String {
    let (uid, gid) = ids(cert);
    format!(
        "security.tls.master_cert {p} is writable by its group (mode 0664, owner uid {uid}, group gid {gid}): any user \
         in group {gid} can replace the certificates det-agent trusts; det-agent uses it anyway. To fix: run \
         `chmod go-w {p}`",
        p = cert.display()
    )
}

#[tokio::test]
async fn check_warns_about_a_master_cert_its_group_can_write_and_still_verifies() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = copy(&dir, "chain-to-root.pem", "master.crt", 0o664);
    let config = write_config(&dir, &pinned_yaml(master.addr().port(), &cert));
    let args = ["check", "--config", config.to_str().unwrap()];
    let warning = group_writable_warning(&cert);

    let out = det_agent(&args, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "a warning, not a refusal: {stdout}{stderr}");
    assert!(stdout.contains("verdict        OK: master verified as 127.0.0.1"), "{stdout}");
    assert_eq!(stderr, format!("det-agent: warning: {warning}\n"));

    let out = det_agent(&[&args[..], &["--json"]].concat(), &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["verdict"]["warnings"], serde_json::json!([warning]));
    assert_eq!(stderr, format!("det-agent: warning: {warning}\n"));

    // 0644, as the operator should leave it: nothing to say.
    chmod(&cert, 0o644);
    let out = det_agent(&args, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stderr, "");
    let out = det_agent(&[&args[..], &["--json"]].concat(), &[]).await;
    let report: serde_json::Value = serde_json::from_str(&text(&out).0).unwrap();
    assert_eq!(report["verdict"]["warnings"], serde_json::json!([]));

    // A folder anyone may rename a file into.
    chmod(dir.path(), 0o777);
    let out = det_agent(&args, &[]).await;
    let (_, stderr) = text(&out);
    chmod(dir.path(), 0o700);
    let real = fs::canonicalize(dir.path()).unwrap();
    assert!(
        stderr.starts_with(&format!(
            "det-agent: warning: the folder {} of security.tls.master_cert {} is writable by its group and by every \
             user and has no sticky bit (mode 0777,",
            real.display(),
            cert.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("To fix: run `chmod go-w {}`", real.display())), "{stderr}");
}

#[tokio::test]
async fn check_warns_about_a_client_key_others_can_read() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = copy(&dir, "chain-to-root.pem", "master.crt", 0o644);
    let client_cert = copy(&dir, "client.pem", "client.crt", 0o644);
    let key = copy(&dir, "client.key", "client.key", 0o644);
    let yaml = format!(
        "{}    client_cert: {}\n    client_key: {}\n",
        pinned_yaml(master.addr().port(), &cert),
        client_cert.display(),
        key.display()
    );
    let config = write_config(&dir, &yaml);
    let args = ["check", "--config", config.to_str().unwrap()];
    let (uid, gid) = ids(&key);

    let out = det_agent(&args, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "det-agent: warning: security.tls.client_key {p} is readable by its group and by every user (mode 0644, \
             owner uid {uid}, group gid {gid}): any local user can read the key and connect to the master as this \
             agent; det-agent uses it anyway. Protect it as OpenSSH would insist: run `chmod 600 {p}`\n",
            p = key.display()
        )
    );

    chmod(&key, 0o600);
    let out = det_agent(&args, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(stderr, "");
}

#[tokio::test]
async fn check_warns_about_a_host_bundle_others_can_write_in_ca_mode() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bundle = copy(&dir, "root-ca.pem", "bundle.pem", 0o666);
    let port = master.addr().port().to_string();
    let args = ["check", "--master-host", "localhost", "--master-port", &port, "--security-tls-enabled"];
    let env = [("SSL_CERT_FILE", bundle.to_str().unwrap())];
    let out = det_agent(&args, &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let (uid, gid) = ids(&bundle);
    assert_eq!(
        stderr,
        format!(
            "det-agent: warning: SSL_CERT_FILE {p} is writable by its group and by every user (mode 0666, owner uid \
             {uid}, group gid {gid}): any local user can replace the certificates det-agent trusts; det-agent uses \
             it anyway. To fix: run `chmod go-w {p}`\n",
            p = bundle.display()
        )
    );
    chmod(&bundle, 0o644);
    let out = det_agent(&args, &env).await;
    assert_eq!(text(&out).1, "");
}

/// `run` says it at start and after each reload, at warn level.
#[tokio::test]
async fn run_warns_at_start_and_after_each_reload() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = copy(&dir, "chain-to-root.pem", "master.crt", 0o664);
    let config = write_config(&dir, &pinned_yaml(master.addr().port(), &cert));
    let mut child = spawn_run(&["--config", config.to_str().unwrap()]);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    signal(&child, "HUP").await;
    while let Some(line) = lines.next_line().await.unwrap() {
        let reloaded = line.contains("configuration reloaded");
        seen.push(line);
        if reloaded {
            break;
        }
    }
    signal(&child, "TERM").await;
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push(line);
    }
    let out = finish(child).await;
    let stderr = seen.join("\n");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let warning = group_writable_warning(&cert);
    let warned: Vec<&String> = seen.iter().filter(|l| l.contains(&warning)).collect();
    assert_eq!(warned.len(), 2, "once at start, once on reload: {stderr}");
    assert!(warned.iter().all(|l| l.contains("WARN")), "{stderr}");
}
