//! The master link and the daemon against the dev master over loopback: registration,
//! restarts, silence, certificate changes, hostile frames, proxies and reloads.
//!
//! Timing is shortened through `LinkSettings` and the backoff base (milliseconds, not
//! seconds); tests wait on dev master events, never on sleeps.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use det_agent::config::TlsConfig;
use det_agent::daemon::LoadError;
use det_agent::daemon::{self, Channels, Control, DaemonError};
use det_agent::dev_master::{fixtures, server_config, Behaviour, DevMaster, Event, Options};
use det_agent::dial::ProxyEnv;
use det_agent::link::protocol::{ContainerLog, Timestamp, AGENT_MUST_RECONNECT};
use det_agent::link::{self, Ended, FromMaster, LinkError, LinkSettings, Target, ToMaster};
use det_agent::tls::RejectionKind;
use det_agent::{Config, Host};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::util::{config, pinned, with_name};

fn fast() -> LinkSettings {
    LinkSettings {
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_millis(100),
        read_deadline: Duration::from_millis(600),
        close_timeout: Duration::from_secs(2),
        ..LinkSettings::default()
    }
}

/// Pinned to the fixture root, dialing 127.0.0.1 at `addr`, retrying within milliseconds.
fn pinned_config(addr: SocketAddr, root: &str) -> Config {
    let mut cfg = config("127.0.0.1", addr, TlsConfig::new(pinned(root)));
    cfg.agent_id = "node-1".to_owned();
    cfg.agent_reconnect_backoff = Duration::from_millis(10);
    cfg.agent_reconnect_backoff_max = Duration::from_millis(50);
    cfg
}

fn target(cfg: Config) -> Target {
    Target::new(cfg, ProxyEnv::none(), fast()).unwrap()
}

/// Skips events until one matches.
pub async fn until(master: &mut DevMaster, mut wanted: impl FnMut(&Event) -> bool) -> Event {
    let wait = async {
        loop {
            match master.next_event().await {
                Some(event) if wanted(&event) => return event,
                Some(_) => {}
                None => panic!("dev master stopped"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("the awaited dev master event within 30 s")
}

fn connected(reconnect: bool) -> impl FnMut(&Event) -> bool {
    move |e| matches!(e, Event::AgentConnected { reconnect: r, .. } if *r == reconnect)
}

struct Agent {
    controls: mpsc::Sender<Control>,
    inbound: mpsc::Receiver<FromMaster>,
    _outbound: mpsc::Sender<ToMaster>,
    task: JoinHandle<Result<(), DaemonError>>,
}

fn spawn_agent(
    target: Target,
    options: daemon::Options,
    reload: impl FnMut() -> Result<Target, LoadError> + Send + 'static,
) -> Agent {
    spawn_agent_with(target, options, reload, 64)
}

/// The daemon, with a channel of `capacity` messages to the application.
fn spawn_agent_with(
    target: Target,
    options: daemon::Options,
    reload: impl FnMut() -> Result<Target, LoadError> + Send + 'static,
    capacity: usize,
) -> Agent {
    let (controls, mut control_rx) = mpsc::channel(4);
    let (inbound_tx, inbound) = mpsc::channel(capacity);
    let (outbound, outbound_rx) = mpsc::channel(64);
    let task = tokio::spawn(async move {
        daemon::run(target, reload, options, &mut control_rx, Channels { inbound: inbound_tx, outbound: outbound_rx })
            .await
    });
    Agent { controls, inbound, _outbound: outbound, task }
}

fn no_reload() -> Result<Target, LoadError> {
    // What a reload of a file that lost its master_host gives.
    Err(LoadError::Config(det_agent::ConfigError::Missing {
        option: "master_host",
        flag: "--master-host",
        env: "DET_MASTER_HOST",
    }))
}

async fn shutdown(agent: Agent) {
    agent.controls.send(Control::Shutdown).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), agent.task).await.expect("stops").unwrap();
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn registers_with_encoded_values_and_the_configured_name_as_sni() {
    let options = Options { pools: vec!["a/b c".to_owned()], ..Options::default() };
    let mut master =
        DevMaster::serve_with(([127, 0, 0, 1], 0).into(), Some(master_config("master")), Behaviour::default(), options)
            .await
            .unwrap();
    let mut cfg =
        config("127.0.0.1", master.addr(), with_name(TlsConfig::new(pinned("root-ca.pem")), "master.det.test"));
    cfg.agent_id = "gpu node&1=2".to_owned();
    cfg.resource_pool = "a/b c".to_owned();
    let cpu = link::Device { id: 0, brand: "test CPU".into(), uuid: "GenuineIntel".into(), kind: "cpu".into() };
    let link = link::connect(&target(cfg).with_devices(vec![cpu]), false).await.unwrap();
    let tls = link.peer().tls.clone().unwrap();
    assert_eq!(tls.verified_name, "master.det.test");
    assert_eq!(
        tls.fingerprint.to_string(),
        det_agent::x509::Fingerprint::of(&fixtures::certs("master.pem")[0]).to_string()
    );
    assert_eq!(
        link.options().master_info.parse::<serde_json::Value>().unwrap()["cluster_id"],
        master.info()["cluster_id"]
    );
    match until(&mut master, |e| matches!(e, Event::Handshake { .. })).await {
        Event::Handshake { sni, .. } => assert_eq!(sni.as_deref(), Some("master.det.test")),
        _ => unreachable!(),
    }
    match until(&mut master, connected(false)).await {
        Event::AgentConnected { id, resource_pool, version, .. } => {
            assert_eq!((id.as_str(), resource_pool.as_str()), ("gpu node&1=2", "a/b c"));
            assert_eq!(version, env!("CARGO_PKG_VERSION"));
        }
        _ => unreachable!(),
    }
    match until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await {
        Event::AgentStarted { devices, resource_pool, .. } => {
            assert_eq!(devices, 1);
            assert_eq!(resource_pool, "a/b c");
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn tls_off_is_a_plain_websocket() {
    let mut master = DevMaster::serve(([127, 0, 0, 1], 0).into(), None, Behaviour::default()).await.unwrap();
    let mut cfg = Config::new(Host::parse("127.0.0.1").unwrap(), None);
    cfg.master_port = master.addr().port();
    let link = link::connect(&target(cfg), false).await.unwrap();
    assert!(link.peer().tls.is_none());
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
}

#[tokio::test]
async fn ipv6_literals_and_dns_names_register() {
    let mut v6 = DevMaster::with_fixture_at("[::1]:0".parse().unwrap(), "master").await.unwrap();
    let link = link::connect(&target(config("::1", v6.addr(), TlsConfig::new(pinned("root-ca.pem")))), false).await;
    assert_eq!(link.unwrap().peer().address, v6.addr());
    until(&mut v6, |e| matches!(e, Event::AgentStarted { .. })).await;

    let mut v4 = DevMaster::with_fixture("master").await.unwrap();
    let link =
        link::connect(&target(config("localhost", v4.addr(), TlsConfig::new(pinned("root-ca.pem")))), false).await;
    assert_eq!(link.unwrap().peer().tls.as_ref().unwrap().verified_name, "localhost");
    until(&mut v4, |e| matches!(e, Event::AgentStarted { .. })).await;
}

/// A dev master serving `stem` on `addr` that keeps its agents in `state` across
/// restarts, as the real master keeps them in its database.
pub async fn master_with_state(addr: SocketAddr, stem: &str, state: &std::path::Path) -> DevMaster {
    let options = Options { state_file: Some(state.to_owned()), ..Options::default() };
    DevMaster::serve_with(addr, Some(master_config(stem)), Behaviour::default(), options).await.unwrap()
}

#[tokio::test]
async fn a_master_restart_brings_the_agent_back_with_reconnect_true() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agents.json");
    let mut master = master_with_state(([127, 0, 0, 1], 0).into(), "master", &state).await;
    let addr = master.addr();
    let agent = spawn_agent(target(pinned_config(addr, "root-ca.pem")), daemon::Options::default(), no_reload);
    until(&mut master, connected(false)).await;
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    // The restarted master restores the agent from its state and waits for it.
    master.stop().await;
    let mut master = master_with_state(addr, "master", &state).await;
    assert!(master.holds("node-1"));
    match until(&mut master, connected(true)).await {
        Event::AgentConnected { held, .. } => assert!(held),
        _ => unreachable!(),
    }
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    shutdown(agent).await;
}

#[tokio::test]
async fn a_master_that_accepts_tcp_but_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let mut settings = fast();
    settings.handshake_timeout = Duration::from_millis(300);
    let t = Target::new(pinned_config(addr, "root-ca.pem"), ProxyEnv::none(), settings).unwrap();
    let err = link::connect(&t, false).await.unwrap_err();
    assert!(
        matches!(&err, LinkError::Dial(failure) if matches!(failure.error, det_agent::dial::DialError::TlsTimeout { .. })),
        "{err}"
    );
    assert!(err.to_string().contains("is this port the master's TLS port"), "{err}");
    hold.abort();
}

#[tokio::test]
async fn a_master_that_stops_answering_is_detected_and_the_agent_reconnects() {
    let behaviour = Behaviour { mute_after_register: true, ..Behaviour::default() };
    let mut master =
        DevMaster::serve(([127, 0, 0, 1], 0).into(), Some(master_config("master")), behaviour).await.unwrap();
    let agent = spawn_agent(target(pinned_config(master.addr(), "root-ca.pem")), daemon::Options::default(), no_reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    master.set_behaviour(|b| b.mute_after_register = false);
    // The muted session never answers pings; the agent gives up on it after the read
    // deadline (600 ms here, 60 s by default) and registers again.
    until(&mut master, connected(true)).await;
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    shutdown(agent).await;
}

fn master_config(stem: &str) -> Arc<rustls::ServerConfig> {
    let (chain, key) = fixtures::identity(stem);
    server_config(chain, key, None).unwrap()
}

#[tokio::test]
async fn a_pinned_master_back_with_another_certificate_is_refused_until_the_right_one_returns() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agents.json");
    let mut master = master_with_state(([127, 0, 0, 1], 0).into(), "master", &state).await;
    let addr = master.addr();
    let cfg = pinned_config(addr, "root-ca.pem");
    let agent = spawn_agent(target(cfg.clone()), daemon::Options::default(), no_reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    // Back with a certificate from another CA: the agent refuses it, attempt after attempt.
    master.stop().await;
    let mut impostor = DevMaster::with_fixture_at(addr, "unrelated-ca").await.unwrap();
    for _ in 0..2 {
        until(&mut impostor, |e| matches!(e, Event::HandshakeFailed { .. })).await;
    }
    let err = link::connect(&target(cfg), true).await.unwrap_err();
    let rejection = err.rejection().expect("a verifier rejection");
    assert_eq!(rejection.kind(), RejectionKind::UnknownIssuer);
    assert!(err.to_string().contains("does not chain to any of them"), "{err}");
    while let Some(event) = impostor.try_next_event() {
        assert!(!matches!(event, Event::AgentConnected { .. }), "the impostor was accepted: {event:?}");
    }

    impostor.stop().await;
    let mut master = master_with_state(addr, "master", &state).await;
    until(&mut master, connected(true)).await;
    shutdown(agent).await;
}

#[tokio::test]
async fn past_reconnect_period_means_a_fresh_registration() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let addr = master.addr();
    let agent = spawn_agent(target(pinned_config(addr, "root-ca.pem")), daemon::Options::default(), no_reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    // A master back without the agent (no state kept): it refuses the reconnect with its
    // 500, and the agent registers afresh.
    master.stop().await;
    let mut master = DevMaster::with_fixture_at(addr, "master").await.unwrap();
    match until(&mut master, |e| matches!(e, Event::Refused { .. })).await {
        Event::Refused { id, status, message } => {
            assert_eq!((id.as_str(), status, message.as_str()), ("node-1", 500, AGENT_MUST_RECONNECT));
        }
        _ => unreachable!(),
    }
    until(&mut master, connected(false)).await;
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    shutdown(agent).await;
}

async fn run_against(raw: Vec<u8>, max_message_size: usize) -> String {
    let behaviour = Behaviour { after_register_raw: raw, ..Behaviour::default() };
    let master = DevMaster::serve(([127, 0, 0, 1], 0).into(), Some(master_config("master")), behaviour).await.unwrap();
    let mut cfg = pinned_config(master.addr(), "root-ca.pem");
    cfg.max_message_size = max_message_size;
    let link = link::connect(&target(cfg), false).await.unwrap();
    let (inbound, _keep) = mpsc::channel(4);
    let (_keep_tx, mut outbound) = mpsc::channel(4);
    let ended = link.run(&inbound, &mut outbound, std::future::pending::<()>()).await;
    match ended {
        Ended::Failed(why) => why.to_string(),
        other => panic!("expected a failure, got {other}"),
    }
}

#[tokio::test]
async fn an_oversized_frame_drops_the_link_before_its_payload_is_read() {
    // A text frame header announcing 1 GiB, and no payload at all: the link must refuse
    // on the header, without waiting for (or allocating) the payload.
    let header = vec![0x81, 127, 0, 0, 0, 0, 0x40, 0, 0, 0];
    let why = run_against(header, 64 * 1024).await;
    assert!(why.contains("1073741824 bytes, over the limit of 65536 (max_message_size)"), "{why}");
}

#[tokio::test]
async fn a_malformed_frame_drops_the_link() {
    // Opcode 0x3 is reserved.
    let why = run_against(vec![0x83, 0x00], 64 * 1024).await;
    assert!(why.contains("broke the websocket protocol"), "{why}");
}

#[tokio::test]
async fn messages_reach_a_slow_application_in_order_and_pings_are_still_answered() {
    let messages: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"StartContainer":{{"Container":{{"id":"c{i}","state":"ASSIGNED"}},"Spec":{{}}}}}}"#))
        .collect();
    let behaviour =
        Behaviour { after_register: messages, ping_interval: Some(Duration::from_millis(50)), ..Behaviour::default() };
    let mut master =
        DevMaster::serve(([127, 0, 0, 1], 0).into(), Some(master_config("master")), behaviour).await.unwrap();
    // A channel of one: the link itself holds the other four.
    let mut agent =
        spawn_agent_with(target(pinned_config(master.addr(), "root-ca.pem")), daemon::Options::default(), no_reload, 1);
    // Nobody reads `agent.inbound` yet: the application is busy.
    for _ in 0..3 {
        until(&mut master, |e| matches!(e, Event::Pong { .. })).await;
    }
    for i in 0..5 {
        match agent.inbound.recv().await.unwrap() {
            FromMaster::StartContainer(start) => assert_eq!(start.container.id, format!("c{i}")),
            other => panic!("unexpected {other:?}"),
        }
    }
    let log = ContainerLog {
        container_id: "c0".into(),
        timestamp: Timestamp::now(),
        level: Some("INFO".into()),
        pull_message: None,
        run_message: None,
        aux_message: Some("hello".into()),
        source: Some("agent".into()),
        agent_id: Some("node-1".into()),
    };
    agent._outbound.send(ToMaster::ContainerLog(log)).await.unwrap();
    until(&mut master, |e| matches!(e, Event::AgentMessage { kind, .. } if kind == "ContainerLog")).await;
    shutdown(agent).await;
    until(&mut master, |e| matches!(e, Event::AgentGone { reason, .. } if reason.contains("code 1000"))).await;
}

#[tokio::test]
async fn a_reload_never_reuses_a_session_made_under_the_old_trust() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let addr = master.addr();
    // The reloaded configuration pins another CA, which does not vouch for this master.
    let reload = move || Ok(target(pinned_config(addr, "other-root-ca.pem")));
    let options = daemon::Options { reconnect_on_reload: true, ..daemon::Options::default() };
    let agent = spawn_agent(target(pinned_config(addr, "root-ca.pem")), options, reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    agent.controls.send(Control::Reload).await.unwrap();
    // Reconnected at once with the new settings: a resumed session would skip
    // verification and succeed; a fresh handshake fails.
    until(&mut master, |e| matches!(e, Event::AgentGone { reason, .. } if reason.contains("code 1000"))).await;
    until(&mut master, |e| matches!(e, Event::HandshakeFailed { .. })).await;
    shutdown(agent).await;
}

#[tokio::test]
async fn a_failed_reload_keeps_the_running_configuration() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let options = daemon::Options { reconnect_on_reload: true, ..daemon::Options::default() };
    let agent = spawn_agent(target(pinned_config(master.addr(), "root-ca.pem")), options, no_reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    agent.controls.send(Control::Reload).await.unwrap();
    shutdown(agent).await;
    // The only disconnect is the shutdown's: the failed reload did not drop the link.
    match until(&mut master, |e| matches!(e, Event::AgentGone { .. } | Event::AgentConnected { .. })).await {
        Event::AgentGone { reason, .. } => assert!(reason.contains("code 1000"), "{reason}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn gives_up_after_agent_reconnect_attempts() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cfg = pinned_config(refused, "root-ca.pem");
    cfg.agent_reconnect_attempts = 3;
    let agent = spawn_agent(target(cfg), daemon::Options::default(), no_reload);
    let result = tokio::time::timeout(Duration::from_secs(30), agent.task).await.unwrap().unwrap();
    match result {
        Err(DaemonError::GaveUp { attempts, last }) => {
            assert_eq!(attempts, 3);
            assert!(last.to_string().contains("cannot connect to 127.0.0.1"), "{last}");
        }
        other => panic!("expected to give up, got {other:?}"),
    }
}

/// A CONNECT proxy: records each request head, then tunnels to `route(authority)`.
pub(crate) async fn proxy(
    route: impl Fn(&str) -> SocketAddr + Send + Sync + 'static,
    answer: &'static str,
) -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heads_tx, heads) = mpsc::unbounded_channel();
    let route = Arc::new(route);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let heads_tx = heads_tx.clone();
            let route = route.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let authority = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                let _ = heads_tx.send(head);
                client.write_all(answer.as_bytes()).await.unwrap();
                if answer.starts_with("HTTP/1.1 200") {
                    let mut upstream = tokio::net::TcpStream::connect(route(&authority)).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, heads)
}

fn proxy_env(proxy: SocketAddr) -> ProxyEnv {
    let url = format!("http://agent:pa%20ss@{proxy}");
    ProxyEnv::from_env(&move |k| (k == "HTTPS_PROXY").then(|| url.clone())).unwrap()
}

#[tokio::test]
async fn through_a_connect_proxy_the_master_is_verified_end_to_end() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port();
    let (proxy_addr, mut heads) =
        proxy(move |_| ([127, 0, 0, 1], port).into(), "HTTP/1.1 200 Connection established\r\n\r\n").await;
    // master.det.test resolves nowhere: only the proxy can find it, so the agent must not
    // resolve it itself.
    let cfg = config("master.det.test", master.addr(), TlsConfig::new(pinned("root-ca.pem")));
    let link = link::connect(&Target::new(cfg, proxy_env(proxy_addr), fast()).unwrap(), false).await.unwrap();
    assert_eq!(link.peer().address, proxy_addr);
    let head = heads.recv().await.unwrap();
    assert!(head.starts_with(&format!("CONNECT master.det.test:{port} HTTP/1.1\r\n")), "{head}");
    // "agent:pa ss", percent-decoded from the URL.
    assert!(head.contains("Proxy-Authorization: Basic YWdlbnQ6cGEgc3M=\r\n"), "{head}");
    match until(&mut master, |e| matches!(e, Event::Handshake { .. })).await {
        Event::Handshake { sni, .. } => assert_eq!(sni.as_deref(), Some("master.det.test")),
        _ => unreachable!(),
    }
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
}

#[tokio::test]
async fn a_proxy_that_routes_to_another_server_cannot_impersonate_the_master() {
    let impostor = DevMaster::with_fixture("unrelated-ca").await.unwrap();
    let to = impostor.addr();
    let (proxy_addr, _heads) = proxy(move |_| to, "HTTP/1.1 200 OK\r\n\r\n").await;
    let cfg = config("master.det.test", "127.0.0.1:8443".parse().unwrap(), TlsConfig::new(pinned("root-ca.pem")));
    let err = link::connect(&Target::new(cfg, proxy_env(proxy_addr), fast()).unwrap(), false).await.unwrap_err();
    assert_eq!(err.rejection().map(|r| r.kind()), Some(RejectionKind::UnknownIssuer), "{err}");
}

#[tokio::test]
async fn a_proxy_refusal_is_explained() {
    let (proxy_addr, _heads) = proxy(|_| unreachable!(), "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n").await;
    let cfg = config("master.det.test", "127.0.0.1:8443".parse().unwrap(), TlsConfig::new(pinned("root-ca.pem")));
    let err = link::connect(&Target::new(cfg, proxy_env(proxy_addr), fast()).unwrap(), false).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("refused CONNECT master.det.test:8443: HTTP 407"), "{text}");
    assert!(text.contains("http://user:password@host:port"), "{text}");
    assert!(!text.contains("pa%20ss") && !text.contains("pa ss"), "credentials leaked: {text}");
}
