//! Client CPU per full connect: TCP, TLS 1.3 with the verifier, the websocket upgrade to
//! /agents and registration (MasterSetAgentOptions in, AgentStarted out), then the link
//! is dropped. The dev master runs on another OS thread, and only this (client) thread's
//! CPU time is counted, from /proc/thread-self/schedstat (nanoseconds on CPU).
//!
//! `cargo run --release --example connect_cost [pinned-chain|pinned-exact|skip-verify|plain] [N] [full|resume]`
//!
//! This VM's CPU accounting swings by 2x between runs (other guests, steal); take the
//! minimum of several runs.

use std::time::Duration;

use det_agent::config::{PinnedCerts, TlsConfig};
use det_agent::dev_master::{fixtures, Behaviour, DevMaster};
use det_agent::dial::ProxyEnv;
use det_agent::link::{self, LinkSettings, Target};
use det_agent::tls::TlsClient;
use det_agent::{Config, Host, Trust};

fn thread_cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux schedstat");
    stat.split_whitespace().next().and_then(|v| v.parse().ok()).expect("schedstat's first field")
}

/// (user, system) CPU of this thread in microseconds, from /proc/thread-self/stat
/// (clock ticks of 10 ms: fine over hundreds of connects).
fn thread_user_sys_us() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("Linux stat");
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = after.split_whitespace().skip(11).take(2).map(|v| v.parse().unwrap_or(0)).collect();
    (fields[0] * 10_000, fields[1] * 10_000)
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "pinned-chain".to_owned());
    let n: u32 = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(500);

    // The server: its own runtime on its own thread, so its CPU is not counted.
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let plain = mode == "plain";
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let config = (!plain).then(|| {
                let (chain, key) = fixtures::identity("master");
                det_agent::dev_master::server_config(chain, key, None).unwrap()
            });
            let mut master = DevMaster::serve(([127, 0, 0, 1], 0).into(), config, Behaviour::default()).await.unwrap();
            addr_tx.send(master.addr()).unwrap();
            while master.next_event().await.is_some() {}
        });
    });
    let addr = addr_rx.recv().unwrap();

    let trust = |file: &str| {
        Trust::Pinned(PinnedCerts { path: fixtures::path(file), certs: fixtures::certs(file), store_entry: None })
    };
    let tls = match mode.as_str() {
        "pinned-chain" => Some(TlsConfig::new(trust("root-ca.pem"))),
        "pinned-exact" => Some(TlsConfig::new(trust("master-leaf.pem"))),
        "skip-verify" => Some(TlsConfig::new(Trust::SkipVerify)),
        "plain" => None,
        other => panic!("unknown mode {other}"),
    };
    let mut config = Config::new(Host::parse("127.0.0.1").unwrap(), tls);
    config.master_port = addr.port();
    config.agent_id = "bench".to_owned();
    let settings = LinkSettings { handshake_timeout: Duration::from_secs(30), ..LinkSettings::default() };
    // `full`: no session resumption, so every connect is a full handshake (as a first
    // connect, or any connect after a master restart, is).
    let full = std::env::args().nth(3).as_deref() == Some("full");
    let tls = config.tls.as_ref().map(|t| TlsClient::new(t).unwrap());
    let tls = if full { tls.map(TlsClient::without_resumption) } else { tls };
    let target = Target::with_client(config, tls, ProxyEnv::none(), settings);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for _ in 0..20 {
            drop(link::connect(&target, false).await.unwrap()); // warm up: device detection, allocator
        }
        let (cpu0, wall0, (user0, sys0)) = (thread_cpu_ns(), std::time::Instant::now(), thread_user_sys_us());
        let mut resumed = 0;
        for _ in 0..n {
            let link = link::connect(&target, false).await.unwrap();
            resumed += u32::from(link.peer().tls.as_ref().is_some_and(|t| t.resumed));
        }
        let cpu = thread_cpu_ns() - cpu0;
        let wall = wall0.elapsed();
        let (user, sys) = thread_user_sys_us();
        let per = |us: u64| us as f64 / f64::from(n);
        println!(
            "{mode}: {n} connects ({resumed} resumed), client CPU {:.0} µs per connect (user {:.0}, kernel {:.0}; wall {:.0})",
            cpu as f64 / 1e3 / f64::from(n),
            per(user - user0),
            per(sys - sys0),
            wall.as_secs_f64() * 1e6 / f64::from(n)
        );
    });
}
