//! Trust on first use: `det-agent trust` against the dev master, the stored chain used as
//! a pin by `check`, the warning when the master's certificate changes, and the store
//! shared with the `det` CLI under concurrent writers and crashes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use det_agent::dev_master::{fixtures, DevMaster};
use det_agent::trust::{MasterUrl, Store};
use det_agent::x509::Fingerprint;

use crate::cli::{det_agent, pki, text};

#[tokio::test]
async fn trust_on_first_use_then_pin_then_warn_on_change() {
    let home = tempfile::tempdir().unwrap();
    let xdg = home.path().to_str().unwrap();
    let env = [("XDG_CONFIG_HOME", xdg)];
    let master = DevMaster::with_fixture("master").await.unwrap();
    let addr = master.addr();
    let url = format!("https://localhost:{}", addr.port());
    let leaf = Fingerprint::of(&fixtures::certs("master.pem")[0]).to_string();

    // No terminal and no fingerprint: refused, nothing stored.
    let out = det_agent(&["trust", "-m", &url], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("presented a certificate chain this host does not trust") && stdout.contains(&leaf),
        "{stdout}"
    );
    assert!(stderr.contains("there is no terminal to ask, and no --fingerprint"), "{stderr}");
    let store = home.path().join("determined/certs.json");
    assert!(!store.exists());

    // A fingerprint that does not match is refused.
    let out = det_agent(&["trust", "-m", &url, "--fingerprint", &format!("sha256:{}", "00".repeat(32))], &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains(&format!("the presented leaf's fingerprint is {leaf}")), "{}", text(&out).1);
    assert!(!store.exists());

    // The administrator's fingerprint, as `check` prints it: stored, with the CLI's modes.
    let out = det_agent(&["trust", "-m", &url, "--fingerprint", &format!("sha256:{leaf}")], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("trusted: stored for {url} in {}", store.display())), "{stdout}");
    assert_eq!(std::fs::metadata(&store).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(store.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let stored = Store::at(&store).get(&MasterUrl::parse(&url).unwrap()).unwrap().unwrap();
    assert_eq!(stored, fixtures::certs("master.pem"));

    // `check` now pins the stored chain for that master (CA mode would refuse it).
    let port = addr.port().to_string();
    let check = ["check", "--master-host", "LOCALHOST", "--master-port", &port, "--security-tls-enabled"];
    let out = det_agent(&check, &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("trusted-on-first-use mode"), "{stdout}");
    let list = det_agent(&["trust", "--list"], &env).await;
    assert!(text(&list).0.contains(&url) && text(&list).0.contains(&leaf), "{}", text(&list).0);

    // The operator vouched for the leaf only: another leaf with a new key, issued by the
    // very intermediate that was stored beside it, is refused all the same (the CLI,
    // which adds the stored chain to its CA bundle, would accept it).
    master.stop().await;
    let sibling = DevMaster::with_fixture_at(addr, "dns-only").await.unwrap();
    let out = det_agent(&check, &env).await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("WARNING: THE MASTER'S CERTIFICATE HAS CHANGED"), "{stdout}");
    let mut chain_as_anchors = rustls::RootCertStore::empty();
    chain_as_anchors.add(fixtures::certs("master.pem")[1].clone()).unwrap();
    let verifier = det_agent::tls::MasterVerifier::ca_mode(
        det_agent::tls::Anchors::unlimited(chain_as_anchors),
        det_agent::tls::provider(),
    );
    let client = det_agent::tls::TlsClient::with_verifier(verifier, None, det_agent::tls::provider()).unwrap();
    let mut cfg = det_agent::Config::new(det_agent::Host::parse("localhost").unwrap(), None);
    cfg.master_port = addr.port();
    cfg.tls = Some(det_agent::TlsConfig::new(det_agent::Trust::PublicRoots));
    let as_ca = det_agent::check::Check::new(&cfg).client(client).ask_info(false).run().await;
    assert!(as_ca.verdict.ok, "the stored intermediate, used as a CA, would vouch for the sibling leaf");

    // The master comes back with a certificate from another CA: refused, in the manner of OpenSSH.
    sibling.stop().await;
    let _impostor = DevMaster::with_fixture_at(addr, "unrelated-ca").await.unwrap();
    let out = det_agent(&check, &env).await;
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("WARNING: THE MASTER'S CERTIFICATE HAS CHANGED"), "{stdout}");
    assert!(stdout.contains(&format!("stored:    sha256 {leaf} (entry {url} in {})", store.display())), "{stdout}");
    assert!(
        stdout.contains("presented: sha256 ") && stdout.contains(&format!("det-agent trust --forget {url}")),
        "{stdout}"
    );

    // An explicit master_cert wins over the store.
    let root = pki("other-root-ca.pem");
    let out = det_agent(&[&check[..], &["--security-tls-master-cert", root.to_str().unwrap()]].concat(), &env).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);

    let out = det_agent(&["trust", "--forget", &url], &env).await;
    assert!(text(&out).0.starts_with("forgot"), "{}", text(&out).0);
    assert_eq!(Store::at(&store).load().unwrap().len(), 0);
}

#[tokio::test]
async fn a_master_the_host_already_trusts_is_not_stored() {
    let home = tempfile::tempdir().unwrap();
    let master = DevMaster::with_fixture("master").await.unwrap();
    let root = pki("root-ca.pem");
    let env = [("XDG_CONFIG_HOME", home.path().to_str().unwrap()), ("SSL_CERT_FILE", root.to_str().unwrap())];
    let out = det_agent(&["trust", "-m", &format!("https://localhost:{}", master.addr().port())], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("already vouches for it, so nothing was stored"), "{stdout}");
    assert!(!home.path().join("determined/certs.json").exists());

    let out = det_agent(&["trust", "-m", "http://user:pw@master:8080"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("must not contain a user name, password, query or fragment"));
}

/// A folder only this user may write, as the store requires of its own (whatever the
/// umask the tests run under: 002 makes folders group-writable).
fn private_dir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A file only this user may write, as the store requires of itself.
fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[tokio::test]
async fn a_corrupt_store_stops_check_instead_of_trusting_or_resetting() {
    let home = tempfile::tempdir().unwrap();
    private_dir(&home.path().join("determined"));
    let store = home.path().join("determined/certs.json");
    write_private(&store, "{\"https://m:8443\": [1]}");
    let env = [("XDG_CONFIG_HOME", home.path().to_str().unwrap())];
    let out = det_agent(&["check", "--master-host", "m.example.com", "--security-tls-enabled"], &env).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("is corrupt") && text(&out).1.contains("neither trusts nor rewrites it"),
        "{}",
        text(&out).1
    );
    assert_eq!(std::fs::read_to_string(&store).unwrap(), "{\"https://m:8443\": [1]}");
}

/// Child process body for the concurrency and crash tests: when `DET_TEST_STORE` is set,
/// writes entries `https://w{writer}-{i}:443` (forever when `DET_TEST_COUNT` is 0).
#[test]
fn store_writer_child() {
    let (Ok(path), Ok(writer), Ok(count)) =
        (std::env::var("DET_TEST_STORE"), std::env::var("DET_TEST_WRITER"), std::env::var("DET_TEST_COUNT"))
    else {
        return;
    };
    let store = Store::at(path);
    let count: u64 = count.parse().unwrap();
    let chain = fixtures::certs("master.pem");
    let mut i = 0;
    while count == 0 || i < count {
        store.put(&MasterUrl::parse(&format!("https://w{writer}-{i}:443")).unwrap(), &chain).unwrap();
        i += 1;
    }
}

fn spawn_writer(store: &Path, writer: usize, count: u64) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "trust::store_writer_child", "--test-threads", "1", "--quiet"])
        .env("DET_TEST_STORE", store)
        .env("DET_TEST_WRITER", writer.to_string())
        .env("DET_TEST_COUNT", count.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn concurrent_writer_processes_lose_no_entry() {
    let home = tempfile::tempdir().unwrap();
    let path = home.path().join("determined/certs.json");
    private_dir(path.parent().unwrap());
    // An entry the det CLI wrote, in its format: kept untouched.
    write_private(&path, "{\n    \"https://cli.example.com:443\": \"from the CLI\"\n}");
    let children: Vec<_> = (0..6).map(|w| spawn_writer(&path, w, 20)).collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let entries = Store::at(&path).load().unwrap();
    assert_eq!(entries.len(), 6 * 20 + 1);
    assert_eq!(entries["https://cli.example.com:443"], "from the CLI");
}

#[test]
fn a_writer_killed_at_any_point_leaves_a_readable_store() {
    let home = tempfile::tempdir().unwrap();
    private_dir(home.path());
    let path = home.path().join("certs.json");
    let store = Store::at(&path);
    for round in 0..5 {
        let mut child = spawn_writer(&path, 100 + round, 0);
        let before = store.load().unwrap().len();
        // Kill it mid-stream once it has made progress: between a write and its rename,
        // or anywhere else, the store must still parse and hold every earlier entry.
        while store.load().unwrap().len() < before + 3 {
            std::thread::yield_now();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let after = store.load().unwrap();
        assert!(after.len() >= before + 3, "round {round}");
    }
    // A temporary file left by a killed writer does not stop the next one, which also
    // clears it away.
    let orphan = home.path().join(".certs.json.tmp-999999");
    std::fs::write(&orphan, "{\"half\": ").unwrap();
    store.put(&MasterUrl::parse("https://after:443").unwrap(), &fixtures::certs("master.pem")).unwrap();
    assert!(store.load().unwrap().contains_key("https://after:443"));
    let left: Vec<_> = std::fs::read_dir(home.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "orphaned temporary files: {left:?}");
}
