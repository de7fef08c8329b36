//! Resident memory of an idle, registered `det-agent run`: starts `det-agent dev-master`
//! and `det-agent run` (release builds), waits until the agent has registered and
//! answered pings, lets it idle (60 s unless told otherwise; the master pings every
//! second throughout), then reads VmRSS and VmHWM from /proc.
//!
//! `cargo build --release && cargo run --release --example idle_rss [pinned|ca|skip-verify] [IDLE_SECONDS] [HOST]`
//! measures the release `det-agent` beside this example (`target/release/`, or under
//! `CARGO_TARGET_DIR`); `DET_AGENT_BIN=PATH` measures another build. CA mode uses the host's
//! bundle (/etc/ssl/certs/ca-certificates.crt) plus the test root, so the agent holds a
//! real-sized trust store. The agent dials 127.0.0.1 unless HOST says otherwise: a name
//! /etc/hosts maps to 127.0.0.1 (`$(hostname)` on most machines) measures a dial by name,
//! as a node dials its master (the resolver's code and, with glibc, the resolver thread's
//! malloc arena stay resident); the test certificate's name, `localhost`, is then verified
//! (`master_cert_name`). `localhost` itself is never looked up (RFC 6761), so it measures
//! no resolver.
//!
//! Then it says where the resident memory is, from /proc/PID/smaps: each file mapping (the
//! binary's segments by permission, each shared library), anonymous memory (heap and
//! allocator mappings, the binary's relocated data, thread stacks) and the main stack.

mod memory;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .expect("field present")
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "pinned".to_owned());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // DET_AGENT_BIN measures another build, e.g. the static musl `dist` binary.
    // This example runs from TARGET/release/examples/; the release binary is in TARGET/release/.
    let beside = std::env::current_exe().ok().and_then(|exe| Some(exe.parent()?.parent()?.join("det-agent")));
    let bin = std::env::var_os("DET_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .or(beside)
        .unwrap_or_else(|| root.join("target/release/det-agent"));
    assert!(
        bin.exists(),
        "{}: build the release binary first (cargo build --release), or set DET_AGENT_BIN",
        bin.display()
    );
    let pki = root.join("fixtures/pki");

    let mut master = Command::new(&bin)
        .args(["dev-master", "--test-cert", "--port", "0", "--ping-interval", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events = BufReader::new(master.stdout.take().unwrap()).lines();
    let listening: serde_json::Value = serde_json::from_str(&events.next().unwrap().unwrap()).unwrap();
    let addr: std::net::SocketAddr = listening["address"].as_str().unwrap().parse().unwrap();

    let host = std::env::args().nth(3).unwrap_or_else(|| "127.0.0.1".to_owned());
    let mut agent = Command::new(&bin);
    agent.args(["run", "--master-host", &host, "--master-port", &addr.port().to_string(), "--security-tls-enabled"]);
    if !matches!(host.as_str(), "127.0.0.1" | "localhost") && mode != "skip-verify" {
        agent.args(["--security-tls-master-cert-name", "localhost"]);
    }
    agent.env("RUST_LOG", "warn").stderr(Stdio::null());
    let bundle = std::env::temp_dir().join("det-agent-idle-rss-bundle.pem");
    match mode.as_str() {
        "pinned" => {
            agent.arg("--security-tls-master-cert").arg(pki.join("root-ca.pem"));
        }
        "skip-verify" => {
            agent.arg("--security-tls-skip-verify");
        }
        "ca" => {
            let mut pem = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
            pem.extend(std::fs::read(pki.join("root-ca.pem")).unwrap());
            std::fs::write(&bundle, pem).unwrap();
            agent.env("SSL_CERT_FILE", &bundle);
        }
        other => panic!("unknown mode {other}"),
    }
    let mut agent = agent.spawn().unwrap();

    // Registered, then three ping round trips: the agent is in its steady state.
    let mut pongs = 0;
    for line in events.by_ref() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "pong" {
            pongs += 1;
            if pongs == 3 {
                break;
            }
        }
    }
    // Measuring after a fixed idle time is the point here, not synchronisation.
    let idle: u64 = std::env::args().nth(2).map_or(60, |s| s.parse().expect("IDLE_SECONDS is a whole number"));
    std::thread::sleep(Duration::from_secs(idle));
    let pid = agent.id();
    let pss = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    println!(
        "{mode}, dialing {host}: det-agent run idle {idle} s: VmRSS {} KiB (anonymous {} KiB, file {} KiB), PSS {pss} KiB, VmHWM {} KiB",
        status_kib(pid, "VmRSS:"),
        status_kib(pid, "RssAnon:"),
        status_kib(pid, "RssFile:"),
        status_kib(pid, "VmHWM:")
    );
    println!(
        "  {}: {} thread(s)",
        bin.display(),
        std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
    );
    println!("  resident KiB (of which anonymous) per mapping, from /proc/{pid}/smaps:");
    for (name, rss, anon) in memory::mappings(pid) {
        println!("  {rss:>6} ({anon:>5})  {name}");
    }
    match memory::sections(pid, &bin) {
        Ok(sections) => {
            println!("  the binary's resident pages by ELF section (KiB resident / size), from /proc/{pid}/pagemap:");
            for (name, resident, size) in sections {
                println!("  {resident:>6} / {size:<6} {name}");
            }
        }
        Err(err) => println!("  (no breakdown by section: {err})"),
    }
    let _ = agent.kill();
    let _ = agent.wait();
    let _ = master.kill();
    let _ = master.wait();
    let _ = std::fs::remove_file(&bundle);
}
