//! The files that decide what det-agent trusts (`master_cert`, `SSL_CERT_FILE`,
//! `SSL_CERT_DIR`, `client_key`), when another local user can change or read them (or a
//! folder above them): used, and warned about by `check` (stderr, and `--json`'s
//! warnings) and by `run` (at start and after each reload); not by `task-env`.
//!
//! Every file here is a copy in a private folder under `std::env::temp_dir()`, whose
//! folders up to `/` are assumed safe (`/tmp`: root's, 1777); a `TMPDIR` another user
//! owns or may write without the sticky bit would add warnings the tests do not expect.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use det_agent::dev_master::{DevMaster, Event};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStderr;

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
    while let Some(line) = next_line(&mut lines).await {
        let reloaded = line.contains("configuration reloaded");
        seen.push(line);
        if reloaded {
            break;
        }
    }
    signal(&child, "TERM").await;
    while let Some(line) = next_line(&mut lines).await {
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

/// The next line `run` logs; a line that never comes fails the test rather than hang it.
async fn next_line(lines: &mut Lines<BufReader<ChildStderr>>) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("det-agent logged the expected line within 60 s")
        .unwrap()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Every folder from the file up to `/` counts: here a safe 0755 folder inside one anyone
/// may rename into.
#[tokio::test]
async fn check_warns_about_a_folder_above_the_one_holding_the_file() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let inner = dir.path().join("certs");
    fs::create_dir(&inner).unwrap();
    chmod(&inner, 0o755);
    let cert = inner.join("master.crt");
    fs::copy(pki("chain-to-root.pem"), &cert).unwrap();
    chmod(&cert, 0o644);
    chmod(dir.path(), 0o700);
    let config = write_config(&dir, &pinned_yaml(master.addr().port(), &cert));
    let args = ["check", "--config", config.to_str().unwrap()];
    let out = det_agent(&args, &[]).await;
    assert_eq!(text(&out).1, "");

    chmod(dir.path(), 0o777);
    let out = det_agent(&args, &[]).await;
    chmod(dir.path(), 0o700);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let real = fs::canonicalize(dir.path()).unwrap();
    let (uid, gid) = ids(dir.path());
    assert_eq!(
        stderr,
        format!(
            "det-agent: warning: the folder {d} of security.tls.master_cert {p} is writable by its group and by every \
             user and has no sticky bit (mode 0777, owner uid {uid}, group gid {gid}): any local user can put another \
             file in its place, and so replace the certificates det-agent trusts; det-agent uses it anyway. To fix: \
             run `chmod go-w {d}`\n",
            d = real.display(),
            p = cert.display()
        )
    );
}

/// CA mode reads every file in each folder `SSL_CERT_DIR` lists: one others may write
/// lets them add a CA, sticky bit or not.
#[tokio::test]
async fn check_warns_about_a_cert_dir_others_can_write_in_ca_mode() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o700);
    let certs = dir.path().join("certs");
    fs::create_dir(&certs).unwrap();
    fs::copy(pki("root-ca.pem"), certs.join("root-ca.pem")).unwrap();
    chmod(&certs.join("root-ca.pem"), 0o644);
    chmod(&certs, 0o777);
    let port = master.addr().port().to_string();
    let args = ["check", "--master-host", "localhost", "--master-port", &port, "--security-tls-enabled"];
    // A list, as rustls-native-certs reads it: the empty entry and a missing folder are skipped.
    let list = format!("/nonexistent/det-agent-certs::{}", certs.display());
    let env = [("SSL_CERT_DIR", list.as_str())];
    let (uid, gid) = ids(&certs);
    for mode in [0o777, 0o1777] {
        chmod(&certs, mode);
        let out = det_agent(&args, &env).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "verified through the folder's CA: {stdout}{stderr}");
        assert_eq!(
            stderr,
            format!(
                "det-agent: warning: the folder {p} that SSL_CERT_DIR lists is writable by its group and by every \
                 user (mode {mode:04o}, owner uid {uid}, group gid {gid}): any local user can add a certificate \
                 det-agent trusts (it reads every file there); det-agent uses it anyway. To fix: run \
                 `chmod go-w {p}`\n",
                p = certs.display()
            )
        );
    }
    chmod(&certs, 0o755);
    let out = det_agent(&args, &env).await;
    assert_eq!(text(&out).1, "");
    // Its folders count as a file's do.
    chmod(dir.path(), 0o777);
    let out = det_agent(&args, &env).await;
    chmod(dir.path(), 0o700);
    let stderr = text(&out).1;
    assert!(
        stderr.starts_with(&format!(
            "det-agent: warning: the folder {} of SSL_CERT_DIR {} is writable by its group and by every user and has \
             no sticky bit (mode 0777,",
            fs::canonicalize(dir.path()).unwrap().display(),
            certs.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("any local user can put another folder in its place"), "{stderr}");
    // Pinned mode does not read it.
    let cert = copy(&dir, "chain-to-root.pem", "master.crt", 0o644);
    chmod(&certs, 0o777);
    let config = write_config(&dir, &pinned_yaml(master.addr().port(), &cert));
    let out = det_agent(&["check", "--config", config.to_str().unwrap()], &env).await;
    assert_eq!(text(&out).1, "");
}

fn key_yaml(port: u16, dir: &tempfile::TempDir, key: &Path) -> PathBuf {
    let cert = copy(dir, "chain-to-root.pem", "master.crt", 0o644);
    let client_cert = copy(dir, "client.pem", "client.crt", 0o644);
    let yaml = format!(
        "{}    client_cert: {}\n    client_key: {}\n",
        pinned_yaml(port, &cert),
        client_cert.display(),
        key.display()
    );
    write_config(dir, &yaml)
}

/// Readers and writers told apart: 0642 is read by the group, written by all.
#[tokio::test]
async fn check_tells_who_can_read_a_key_from_who_can_replace_it() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = copy(&dir, "client.key", "client.key", 0o642);
    let config = key_yaml(master.addr().port(), &dir, &key);
    let out = det_agent(&["check", "--config", config.to_str().unwrap()], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let (uid, gid) = ids(&key);
    assert_eq!(
        stderr,
        format!(
            "det-agent: warning: security.tls.client_key {p} is readable by its group and writable by every user \
             (mode 0642, owner uid {uid}, group gid {gid}): any user in group {gid} can read the key and connect to \
             the master as this agent, and any local user can replace it; det-agent uses it anyway. Protect it as \
             OpenSSH would insist: run `chmod 600 {p}`\n",
            p = key.display()
        )
    );
}

/// Another user's key, even 0600: that user can read it. Giving it away takes root.
#[tokio::test]
async fn check_warns_about_a_key_another_user_owns() {
    if !is_root() {
        eprintln!("skipped: giving a key to another uid needs root");
        return;
    }
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = copy(&dir, "client.key", "client.key", 0o600);
    let config = key_yaml(master.addr().port(), &dir, &key);
    let args = ["check", "--config", config.to_str().unwrap()];
    assert_eq!(text(&det_agent(&args, &[]).await).1, "");
    std::os::unix::fs::chown(&key, Some(1001), None).unwrap();
    let out = det_agent(&args, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let gid = ids(&key).1;
    assert_eq!(
        stderr,
        format!(
            "det-agent: warning: security.tls.client_key {p} is owned by uid 1001, neither this user (uid 0) nor root \
             (mode 0600, owner uid 1001, group gid {gid}): uid 1001 can read the key and connect to the master as \
             this agent, and can replace it; det-agent uses it anyway. Protect it as OpenSSH would insist: run \
             `chown root {p}`\n",
            p = key.display()
        )
    );
}

/// A symlink on the way to the file, owned by another user in a sticky folder others may
/// write (as /tmp): that user can replace it. Making it takes root.
#[tokio::test]
async fn check_warns_about_a_link_another_user_can_replace() {
    if !is_root() {
        eprintln!("skipped: giving a link to another uid needs root");
        return;
    }
    let master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = copy(&dir, "chain-to-root.pem", "master.crt", 0o644);
    let shared = tempfile::tempdir().unwrap();
    chmod(shared.path(), 0o1777);
    let link = shared.path().join("master.crt");
    std::os::unix::fs::symlink(&cert, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(1001), Some(1001)).unwrap();
    let config = write_config(&dir, &pinned_yaml(master.addr().port(), &link));
    let out = det_agent(&["check", "--config", config.to_str().unwrap()], &[]).await;
    chmod(shared.path(), 0o700);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    let real = fs::canonicalize(shared.path()).unwrap();
    assert_eq!(
        stderr,
        format!(
            "det-agent: warning: the symlink {l} on the way to security.tls.master_cert {p} is owned by uid 1001, \
             neither this user (uid 0) nor root, in the folder {d} (mode 1777) that others may write and whose \
             sticky bit lets a link's owner replace it: uid 1001 can point it elsewhere, and so replace the \
             certificates det-agent trusts; det-agent uses it anyway. To fix: point security.tls.master_cert at a \
             path without that link (such as the file's real path), or run `chown -h root {l}` as root\n",
            l = real.join("master.crt").display(),
            p = link.display(),
            d = real.display()
        )
    );
}

/// `fluent-bit` says them as `check` does; `task-env`, run for every task, does not.
#[tokio::test]
async fn task_env_does_not_repeat_them() {
    let dir = tempfile::tempdir().unwrap();
    let cert = copy(&dir, "chain-to-root.pem", "master.crt", 0o664);
    let config = write_config(&dir, &pinned_yaml(8443, &cert));
    let out = det_agent(&["task-env", "--config", config.to_str().unwrap()], &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let out = det_agent(
        &["fluent-bit", "--config", config.to_str().unwrap(), "--out", dir.path().join("fb").to_str().unwrap()],
        &[],
    )
    .await;
    let stderr = text(&out).1;
    assert!(stderr.contains(&format!("det-agent: warning: {}", group_writable_warning(&cert))), "{stderr}");
}
