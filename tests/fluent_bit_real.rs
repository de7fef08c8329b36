//! The configurations `det-agent fluent-bit` writes, read and run by the real Fluent Bit
//! (5.1.1, from `../shared/fluent-bit` beside the repository or `DET_AGENT_FLUENT_BIT`):
//! every golden and every freshly written configuration passes its `--dry-run`, and in
//! each trust mode Fluent Bit, started on the written file unchanged, takes records from
//! a Fluent forward client (as tasks' log drivers send them) and posts them to the dev
//! master, or refuses a master it must not trust, saying so in its log.
//!
//! These tests fail, never skip, when Fluent Bit is missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use det_agent::dev_master::{self, fixtures, DevMaster, Event};
use det_agent::x509::Fingerprint;
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
async fn write_config(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> PathBuf {
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
fn written_value(config: &Path, key: &str) -> Option<String> {
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
struct FluentBit {
    _child: Child,
    log: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl FluentBit {
    async fn start(config: &Path, env: &[(&str, &str)]) -> FluentBit {
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
    async fn forward_input(&mut self) -> SocketAddr {
        let line = self.wait_for("[input:forward:forward.0] listening on ").await;
        let rest = line.split("listening on ").nth(1).unwrap();
        let addr = rest.split_whitespace().next().unwrap();
        let (ip, port) = addr.rsplit_once(':').unwrap();
        SocketAddr::new(ip.parse().unwrap(), port.parse().unwrap())
    }
}

/// A port nothing listens on now, for the forward input.
fn free_port() -> String {
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
async fn send_forward(addr: SocketAddr, tag: &str, lines: &[String]) {
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

fn lines(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("step {i}: loss 0.{i}")).collect()
}

/// Waits until the dev master has received `n` records tagged `tag` and returns the
/// handshakes it saw on the way.
async fn delivered(master: &mut DevMaster, fb: &mut FluentBit, tag: &str, n: usize) -> Vec<Event> {
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
async fn refused(master: &mut DevMaster, fb: &mut FluentBit, tag: &str) -> String {
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
fn full_chain(dir: &Path) -> PathBuf {
    let mut full = std::fs::read(pki("master-leaf.pem")).unwrap();
    full.extend(std::fs::read(pki("chain-to-root.pem")).unwrap());
    let path = dir.join("master-full-chain.pem");
    std::fs::write(&path, full).unwrap();
    path
}

#[tokio::test]
async fn pinned_mode_delivers_forwarded_records() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let fluent_port = free_port();
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &fluent_port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    assert_eq!(input.to_string(), format!("127.0.0.1:{fluent_port}"), "fluent.listen and fluent.port as written");
    send_forward(input, "task.pinned", &lines(5)).await;
    let events = delivered(&mut master, &mut fb, "task.pinned", 5).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Handshake { sni: Some(sni), .. } if sni == "localhost")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_pinned_chain_without_its_root_is_refused_as_the_warning_says() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = master.addr().port().to_string();
    let chain = pki("master.pem"); // leaf and intermediate, no root
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
    ];
    let out_dir = dir.path().join("out");
    let out = det_agent(&[&["fluent-bit", "--out", out_dir.to_str().unwrap()], &args[..]].concat(), &[]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("holds no self-signed root"), "{stderr}");
    let mut fb = FluentBit::start(&out_dir.join("fluent-bit.conf"), &[]).await;
    refused(&mut master, &mut fb, "task.rootless").await;
}

#[tokio::test]
async fn ca_mode_gives_fluent_bit_the_store_det_agent_uses() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = pki("root-ca.pem");
    let port = master.addr().port().to_string();
    let (first_port, second_port) = (free_port(), free_port());
    let args = |fluent_port: &str| {
        ["--master-host", "localhost", "--master-port", &port, "--fluent-port", fluent_port, "--security-tls-enabled"]
            .into_iter()
            .chain(["--format", "yaml"])
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let store = [("SSL_CERT_FILE", root.to_str().unwrap())];

    // det-agent trusts the fixture root through SSL_CERT_FILE; Fluent Bit ignores the
    // variable, so a configuration that leaves the store to Fluent Bit is refused.
    let first = args(&first_port);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let system = write_config(&dir.path().join("system"), &first, &[]).await;
    let mut fb = FluentBit::start(&system, &store).await;
    refused(&mut master, &mut fb, "task.system").await;
    drop(fb);

    // Written with det-agent's store, it names the file, and delivers.
    let second = args(&second_port);
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let config = write_config(&dir.path().join("out"), &second, &store).await;
    assert_eq!(written_value(&config, "tls.ca_file"), Some(root.to_str().unwrap().to_owned()));
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.ca", &lines(4)).await;
    delivered(&mut master, &mut fb, "task.ca", 4).await;
}

#[tokio::test]
async fn ca_mode_with_ssl_cert_dir_gives_fluent_bit_the_folder() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A CA folder as OpenSSL reads it: the certificate under its hashed name.
    let store = dir.path().join("certs");
    std::fs::create_dir(&store).unwrap();
    std::fs::copy(pki("root-ca.pem"), store.join("det-test-root.pem")).unwrap();
    let rehash = std::process::Command::new("openssl")
        .arg("rehash")
        .arg(&store)
        .output()
        .expect("openssl runs (install Debian's openssl package; .ci/run does)");
    assert!(rehash.status.success(), "{}", String::from_utf8_lossy(&rehash.stderr));
    let port = master.addr().port().to_string();
    let args =
        ["--master-host", "localhost", "--master-port", &port, "--fluent-port", &free_port(), "--security-tls-enabled"];
    let config = write_config(&dir.path().join("out"), &args, &[("SSL_CERT_DIR", store.to_str().unwrap())]).await;
    assert_eq!(written_value(&config, "tls.ca_path"), Some(store.to_str().unwrap().to_owned()));
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.cadir", &lines(2)).await;
    delivered(&mut master, &mut fb, "task.cadir", 2).await;
}

#[tokio::test]
async fn name_override_dialing_an_ip_delivers() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
        "--security-tls-master-cert-name",
        "master.det.test",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.name", &lines(3)).await;
    let events = delivered(&mut master, &mut fb, "task.name", 3).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Handshake { sni: Some(sni), .. } if sni == "master.det.test")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_master_with_another_certificate_gets_nothing() {
    // Pinned to the fixture chain; the master presents a certificate of another CA with
    // the same names.
    let mut master = DevMaster::with_fixture("unrelated-ca").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let error = refused(&mut master, &mut fb, "task.unrelated").await;
    assert!(error.contains("UnknownCA"), "{error}");
}

#[tokio::test]
async fn a_name_the_certificate_lacks_is_refused() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = master.addr().port().to_string();
    // Only CA certificates are pinned, so det-agent can check the name's form only, and
    // writes it; Fluent Bit must then refuse the master, which lacks the name.
    let cas = pki("chain-to-root.pem");
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        cas.to_str().unwrap(),
        "--security-tls-master-cert-name",
        "logs.det.test",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let error = refused(&mut master, &mut fb, "task.wrongname").await;
    assert!(error.contains("BadCertificate"), "{error}");

    // With the master's own certificate pinned, det-agent refuses to write it at all.
    let chain = full_chain(dir.path());
    let mut args = args.to_vec();
    args[8] = chain.to_str().unwrap();
    let out = det_agent(&[&["fluent-bit"], &args[..]].concat(), &[]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Fluent Bit would verify the master as logs.det.test"), "{stderr}");
}

#[tokio::test]
async fn skip_verify_delivers_to_any_certificate() {
    let mut master = DevMaster::with_fixture("unrelated-ca").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-skip-verify",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.skip", &lines(2)).await;
    delivered(&mut master, &mut fb, "task.skip", 2).await;
}

#[tokio::test]
async fn mutual_tls_delivers_with_the_client_certificate() {
    let (chain, key) = fixtures::identity("master");
    let server = dev_master::server_config(chain, key, Some(fixtures::certs("root-ca.pem"))).unwrap();
    let mut master = DevMaster::start(([127, 0, 0, 1], 0).into(), server).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = full_chain(dir.path());
    let (client_cert, client_key) = (pki("client.pem"), pki("client.key"));
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        full.to_str().unwrap(),
        "--security-tls-client-cert",
        client_cert.to_str().unwrap(),
        "--security-tls-client-key",
        client_key.to_str().unwrap(),
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.mtls", &lines(3)).await;
    let events = delivered(&mut master, &mut fb, "task.mtls", 3).await;
    let client = Fingerprint::of(&fixtures::certs("client.pem")[0]);
    assert!(
        events.iter().any(|e| matches!(e, Event::Handshake { client_cert: Some(fp), .. } if *fp == client)),
        "the master saw the agent's client certificate: {events:?}"
    );
}

/// What Fluent Bit 5.1.1 itself does with the options the name rule is about, on a
/// written configuration edited by hand: without `tls.verify_hostname` it checks no name
/// at all (why it is always written), and since 5.0.6 it matches IP entries (the rule
/// of a DNS name stays for older versions).
#[tokio::test]
async fn fluent_bit_checks_names_only_with_verify_hostname_and_matches_ips() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
        "--security-tls-master-cert-name",
        "master.det.test",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let written = std::fs::read_to_string(&config).unwrap();
    let vhost = "    tls.vhost           master.det.test\n";
    let check = "    tls.verify_hostname On\n";
    assert!(written.contains(vhost) && written.contains(check), "{written}");
    let variants = [
        ("task.nocheck", written.replace(vhost, "    tls.vhost logs.det.test\n").replace(check, ""), true),
        ("task.ip", written.replace(vhost, "    tls.vhost 127.0.0.1\n"), true),
        ("task.otherip", written.replace(vhost, "    tls.vhost 10.0.0.5\n"), false),
    ];
    for (tag, text, delivers) in variants {
        let path = dir.path().join(format!("{tag}.conf"));
        std::fs::write(&path, text.replace("Port   24224", &format!("Port   {}", free_port()))).unwrap();
        let mut fb = FluentBit::start(&path, &[]).await;
        if delivers {
            let input = fb.forward_input().await;
            send_forward(input, tag, &lines(1)).await;
            delivered(&mut master, &mut fb, tag, 1).await;
        } else {
            refused(&mut master, &mut fb, tag).await;
        }
    }
}
