//! The dev master is a faithful double of the real master's agent lifecycle
//! (`master/internal/rm/agentrm/agents.go`, `agent.go`, `master/pkg/ws/ws.go`): its
//! refusals, bodies and close, its reconnect wait (paused time) and state file, its
//! `AgentShutdown` on a changed agent, and a message name it does not decode, which the
//! real master dies of. Each is also read by det-agent's link, as an operator would see it.

use std::net::SocketAddr;
use std::time::Duration;

use det_agent::config::{ClientIdentity, TlsConfig};
use det_agent::dev_master::{fixtures, server_config_if_given, Behaviour, DevMaster, Event, Options};
use det_agent::dial::ProxyEnv;
use det_agent::link::protocol::{Device, AGENT_MUST_RECONNECT};
use det_agent::link::{self, Ended, FromMaster, LinkError, LinkSettings, Refusal, SaidIn, Target};
use det_agent::{Config, Host};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::link::until;
use crate::util::{config, pinned};

fn settings() -> LinkSettings {
    LinkSettings {
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..LinkSettings::default()
    }
}

/// A plain-HTTP dev master with these options.
async fn plain(options: Options, behaviour: Behaviour) -> DevMaster {
    DevMaster::serve_with(([127, 0, 0, 1], 0).into(), None, behaviour, options).await.unwrap()
}

/// An agent configuration for a plain master at `addr`.
fn plain_config(addr: SocketAddr, id: &str) -> Config {
    let mut cfg = Config::new(Host::parse("127.0.0.1").unwrap(), None);
    cfg.master_port = addr.port();
    cfg.agent_id = id.to_owned();
    cfg
}

fn target(cfg: Config) -> Target {
    Target::new(cfg, ProxyEnv::none(), settings()).unwrap()
}

fn cpu() -> Device {
    Device { id: 0, brand: "test CPU".into(), uuid: "0".into(), kind: "cpu".into() }
}

/// One request, its whole answer as text.
async fn request(addr: SocketAddr, head: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).await.unwrap();
    answer
}

fn upgrade_request(query: &str) -> String {
    format!(
        "GET /agents?{query} HTTP/1.1\r\nHost: m\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
}

#[tokio::test]
async fn refusals_are_the_masters_status_and_json_body() {
    let master = plain(Options::default(), Behaviour::default()).await;
    let addr = master.addr();
    let not_ws = request(addr, "GET /agents?id=a&reconnect=false HTTP/1.1\r\nHost: m\r\n\r\n").await;
    assert!(not_ws.starts_with("HTTP/1.1 400 "), "{not_ws}");
    assert!(not_ws.contains("Content-Type: application/json\r\n"), "{not_ws}");
    assert!(not_ws.ends_with("\r\n\r\n{\"message\":\"Bad Request\"}\n"), "{not_ws}");
    let cases = [
        ("id=a", "parsing reconnect query param: strconv.ParseBool: parsing \\\"\\\": invalid syntax"),
        ("id=a&reconnect=yes", "parsing reconnect query param: strconv.ParseBool: parsing \\\"yes\\\": invalid syntax"),
        ("id=a&reconnect=true", AGENT_MUST_RECONNECT),
        ("id=&reconnect=false", "invalid agent id specified: "),
        ("id=a&reconnect=0&resource_pool=gpu", "cannot find specified resource pool gpu for agent a"),
    ];
    for (query, message) in cases {
        let answer = request(addr, &upgrade_request(query)).await;
        assert!(answer.starts_with("HTTP/1.1 500 "), "{query}: {answer}");
        assert!(answer.ends_with(&format!("\r\n\r\n{{\"message\":\"{message}\"}}\n")), "{query}: {answer}");
    }
}

#[tokio::test]
async fn past_reconnect_is_recognised_when_its_body_arrives_late_and_in_pieces() {
    // The head at once, then the body 7 bytes at a time, 30 ms apart: the agent has read
    // the head long before the message arrives.
    let behaviour = Behaviour { slow_answers: Some(Duration::from_millis(30)), ..Behaviour::default() };
    let mut master = plain(Options::default(), behaviour).await;
    let err = link::connect(&target(plain_config(master.addr(), "node-1")), true).await.unwrap_err();
    assert!(matches!(err, LinkError::PastReconnect { said_in: SaidIn::UpgradeAnswer }), "{err}");
    until(&mut master, |e| matches!(e, Event::Refused { status: 500, .. })).await;
    // The same pacing for another refusal: its words arrive whole.
    let mut cfg = plain_config(master.addr(), "node-1");
    cfg.resource_pool = "gpu".into();
    let err = link::connect(&target(cfg), false).await.unwrap_err();
    assert!(
        matches!(&err, LinkError::Upgrade { status: 500, refusal: Refusal::UnknownPool { pool }, .. } if pool == "gpu"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_pool_is_named() {
    let options = Options { pools: vec!["default".into(), "a100".into()], ..Options::default() };
    let master = plain(options, Behaviour::default()).await;
    let mut cfg = plain_config(master.addr(), "node-1");
    cfg.resource_pool = "gpu-pool".into();
    let err = link::connect(&target(cfg), false).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("refused the websocket upgrade to /agents with HTTP 500"), "{text}");
    assert!(text.contains("the master has no resource pool named \"gpu-pool\" (resource_pool)"), "{text}");
    let mut cfg = plain_config(master.addr(), "node-1");
    cfg.resource_pool = "a100".into();
    assert_eq!(link::connect(&target(cfg), false).await.unwrap().options().containers_to_reattach.len(), 0);
}

#[tokio::test]
async fn a_master_that_requires_client_certificates_answers_403_and_the_agent_says_what_to_set() {
    let (chain, key) = fixtures::identity("master");
    let tls = server_config_if_given(chain, key, fixtures::certs("root-ca.pem")).unwrap();
    let options = Options { require_authentication: true, ..Options::default() };
    let mut master =
        DevMaster::serve_with(([127, 0, 0, 1], 0).into(), Some(tls), Behaviour::default(), options).await.unwrap();
    let mut cfg = config("localhost", master.addr(), TlsConfig::new(pinned("root-ca.pem")));
    cfg.agent_id = "node-1".into();
    let err = link::connect(&target(cfg.clone()), false).await.unwrap_err();
    assert!(
        matches!(err, LinkError::Upgrade { status: 403, refusal: Refusal::ClientCertificateRequired, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("requires agents to present a client certificate (require_authentication"), "{text}");
    assert!(text.contains("set security.tls.client_cert and security.tls.client_key"), "{text}");
    match until(&mut master, |e| matches!(e, Event::Refused { .. })).await {
        Event::Refused { status, message, .. } => assert_eq!((status, message.as_str()), (403, "Forbidden")),
        _ => unreachable!(),
    }
    // With a certificate from the CA the master trusts for agents, it registers.
    let dir = env!("CARGO_MANIFEST_DIR");
    let identity = ClientIdentity::load(
        format!("{dir}/fixtures/pki/client.pem").as_ref(),
        format!("{dir}/fixtures/pki/client.key").as_ref(),
    )
    .unwrap();
    cfg.tls.as_mut().unwrap().client_identity = Some(identity);
    link::connect(&target(cfg), false).await.unwrap();
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
}

#[tokio::test]
async fn a_connected_id_is_refused_and_the_first_agent_stays() {
    let mut master = plain(Options::default(), Behaviour::default()).await;
    let first = link::connect(&target(plain_config(master.addr(), "node-1")), false).await.unwrap();
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    let (inbound, mut from_master) = mpsc::channel(4);
    let (_to_master, mut outbound) = mpsc::channel(4);
    let running = tokio::spawn(async move { first.run(&inbound, &mut outbound, std::future::pending::<()>()).await });

    let err = link::connect(&target(plain_config(master.addr(), "node-1")), true).await.unwrap_err();
    assert!(matches!(&err, LinkError::Upgrade { status: 500, refusal: Refusal::AlreadyConnected { .. }, .. }), "{err}");
    assert!(err.to_string().contains("already holds a live connection from an agent with the ID \"node-1\""), "{err}");
    // The first agent still gets the master's messages.
    let container = master.start_container("node-1").expect("node-1 is connected");
    match from_master.recv().await.unwrap() {
        FromMaster::StartContainer(start) => assert_eq!(start.container.id, container),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!running.is_finished());
    running.abort();
}

#[tokio::test]
async fn a_dropped_agent_is_held_then_forgotten_after_the_reconnect_wait() {
    let options = Options { agent_reconnect_wait: Duration::from_millis(300), ..Options::default() };
    let mut master = plain(options, Behaviour::default()).await;
    let t = target(plain_config(master.addr(), "node-1"));
    let link = link::connect(&t, false).await.unwrap();
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    drop(link); // the connection breaks without a close
    until(&mut master, |e| matches!(e, Event::AgentGone { .. })).await;
    match until(&mut master, |e| matches!(e, Event::AgentForgotten { .. })).await {
        Event::AgentForgotten { id, reason } => {
            assert_eq!((id.as_str(), reason.as_str()), ("node-1", "agent failed to reconnect by deadline"));
        }
        _ => unreachable!(),
    }
    assert!(!master.holds("node-1"));
    let err = link::connect(&t, true).await.unwrap_err();
    assert!(matches!(err, LinkError::PastReconnect { said_in: SaidIn::UpgradeAnswer }), "{err}");
}

#[tokio::test]
async fn a_held_agent_is_reused_whatever_reconnect_says() {
    let mut master = plain(Options::default(), Behaviour::default()).await;
    let t = target(plain_config(master.addr(), "node-1"));
    drop(link::connect(&t, false).await.unwrap());
    until(&mut master, |e| matches!(e, Event::AgentGone { .. })).await;
    assert!(master.holds("node-1"));
    let link = link::connect(&t, false).await.unwrap();
    match until(&mut master, |e| matches!(e, Event::AgentConnected { .. })).await {
        Event::AgentConnected { reconnect, held, .. } => assert_eq!((reconnect, held), (false, true)),
        _ => unreachable!(),
    }
    // A held agent's options list what it should reattach: an empty list, not null.
    assert!(link.options().containers_to_reattach.is_empty());
}

#[tokio::test(start_paused = true)]
async fn restored_agents_wait_from_the_masters_start_and_are_forgotten_then() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agents.json");
    let saved = serde_json::json!({"agents": [{"id": "node-1", "resource_pool": "default",
        "devices": [{"id": 0, "brand": "test CPU", "uuid": "0", "type": "cpu"}]}]});
    std::fs::write(&state, saved.to_string()).unwrap();
    let options = Options { state_file: Some(state.clone()), ..Options::default() };
    let started = tokio::time::Instant::now();
    let mut master = plain(options, Behaviour::default()).await;
    assert!(master.holds("node-1"));
    match master.next_event().await.unwrap() {
        Event::AgentForgotten { id, reason } => {
            assert_eq!((id.as_str(), reason.as_str()), ("node-1", "agent failed to reconnect by deadline"));
        }
        other => panic!("unexpected {other:?}"),
    }
    // The master's default agent_reconnect_wait, counted from its start, to the instant.
    assert_eq!(started.elapsed(), Duration::from_secs(25));
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(kept["agents"], serde_json::json!([]));
}

#[tokio::test]
async fn a_state_file_keeps_agents_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agents.json");
    let options = Options { state_file: Some(state.clone()), ..Options::default() };
    let mut master = plain(options.clone(), Behaviour::default()).await;
    let addr = master.addr();
    let t = target(plain_config(addr, "node-1").clone()).with_devices(vec![cpu()]);
    let _link = link::connect(&t, false).await.unwrap();
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    master.stop().await;
    let mut master = DevMaster::serve_with(addr, None, Behaviour::default(), options).await.unwrap();
    assert!(master.holds("node-1"));
    link::connect(&t, true).await.unwrap();
    match until(&mut master, |e| matches!(e, Event::AgentConnected { .. })).await {
        Event::AgentConnected { reconnect, held, .. } => assert!(reconnect && held),
        _ => unreachable!(),
    }
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
}

/// Registers `t` once, drops it, and reconnects with `changed`: the master sends
/// `AgentShutdown` with the real `ErrMsg` and forgets the agent.
async fn shutdown_on_change(master: &mut DevMaster, t: &Target, changed: &Target) -> String {
    drop(link::connect(t, false).await.unwrap());
    until(master, |e| matches!(e, Event::AgentGone { .. })).await;
    let link = link::connect(changed, true).await.unwrap();
    let (inbound, _from_master) = mpsc::channel(4);
    let (_to_master, mut outbound) = mpsc::channel(4);
    let ended = link.run(&inbound, &mut outbound, std::future::pending::<()>()).await;
    match &ended {
        Ended::MasterShutdown { err_msg } => assert_eq!(err_msg, AGENT_MUST_RECONNECT),
        other => panic!("unexpected {other}"),
    }
    assert!(ended.past_reconnect());
    let reason = match until(master, |e| matches!(e, Event::AgentShutdownSent { .. })).await {
        Event::AgentShutdownSent { reason, .. } => reason,
        _ => unreachable!(),
    };
    until(master, |e| matches!(e, Event::AgentForgotten { .. })).await;
    assert!(!master.holds("node-1"));
    reason
}

#[tokio::test]
async fn a_reconnect_with_other_devices_or_another_pool_gets_agent_shutdown() {
    let options = Options { pools: vec!["default".into(), "gpu".into()], ..Options::default() };
    let mut master = plain(options, Behaviour::default()).await;
    let t = target(plain_config(master.addr(), "node-1")).with_devices(vec![cpu()]);
    let gpu = Device { id: 1, brand: "NVIDIA A100".into(), uuid: "GPU-1".into(), kind: "cuda".into() };
    let more = t.clone().with_devices(vec![cpu(), gpu]);
    assert_eq!(shutdown_on_change(&mut master, &t, &more).await, "device count has changed: 1 -> 2");
    let other = t.clone().with_devices(vec![Device { brand: "another CPU".into(), ..cpu() }]);
    assert_eq!(
        shutdown_on_change(&mut master, &t, &other).await,
        "device properties have changed: {0 test CPU 0 cpu} -> {0 another CPU 0 cpu}"
    );
    let mut cfg = plain_config(master.addr(), "node-1");
    cfg.resource_pool = "gpu".into();
    let moved = target(cfg).with_devices(vec![cpu()]);
    assert_eq!(shutdown_on_change(&mut master, &t, &moved).await, "resource pool has changed: default -> gpu");
}

/// A websocket to the dev master's `/agents`, without det-agent's link, and the master's
/// first message.
async fn raw_agent(addr: SocketAddr, id: &str) -> (tokio_tungstenite::WebSocketStream<TcpStream>, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let url = format!("ws://{addr}/agents?id={id}&reconnect=false&resource_pool=default");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        // The master's envelope: every field, the unused ones null.
        Message::Text(text) => {
            assert!(
                text.ends_with(",\"StartContainer\":null,\"SignalContainer\":null,\"AgentShutdown\":null}"),
                "{text}"
            );
            (ws, text.to_string())
        }
        other => panic!("unexpected {other:?}"),
    }
}

const STARTED: &str = r#"{"AgentStarted":{"Version":"x","Devices":[{"id":0,"brand":"test CPU","uuid":"0","type":"cpu"}],"ContainersReattached":null,"ResourcePoolName":"default"}}"#;

#[tokio::test]
async fn an_unknown_message_name_drops_the_connection_as_the_masters_death_would() {
    let mut master = plain(Options::default(), Behaviour::default()).await;
    for (n, bad) in [r#"{"ContainerExploded":{}}"#, "{}"].into_iter().enumerate() {
        let (mut ws, options) = raw_agent(master.addr(), &format!("node-{n}")).await;
        // A fresh agent gets the master's template, whose ContainersToReattach is null.
        assert!(options.contains("\"ContainersToReattach\":null"), "{options}");
        ws.send(Message::text(STARTED)).await.unwrap();
        until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
        ws.send(Message::text(bad)).await.unwrap();
        match until(&mut master, |e| matches!(e, Event::ProtocolViolation { .. })).await {
            Event::ProtocolViolation { what, .. } => assert!(what.contains("the real master would panic"), "{what}"),
            _ => unreachable!(),
        }
        // No close frame: the connection just ends.
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => panic!("a dead master sends no close: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        until(&mut master, |e| matches!(e, Event::AgentGone { .. })).await;
    }
}

#[tokio::test]
async fn a_container_message_before_agent_started_is_a_violation() {
    let mut master = plain(Options::default(), Behaviour::default()).await;
    let (mut ws, _) = raw_agent(master.addr(), "node-2").await;
    let log = r#"{"ContainerLog":{"ContainerID":"c","Timestamp":"2024-05-01T12:00:00Z","Level":null,"PullMessage":null,"RunMessage":null,"AuxMessage":"x","Source":null,"AgentID":null}}"#;
    ws.send(Message::text(log)).await.unwrap();
    match until(&mut master, |e| matches!(e, Event::ProtocolViolation { .. })).await {
        Event::ProtocolViolation { what, .. } => assert!(what.contains("ContainerLog before AgentStarted"), "{what}"),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn the_master_closes_with_1000_close_called() {
    let mut master = plain(Options::default(), Behaviour::default()).await;
    let (mut ws, _) = raw_agent(master.addr(), "node-3").await;
    ws.send(Message::text(STARTED)).await.unwrap();
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    drop(ws);
    until(&mut master, |e| matches!(e, Event::AgentGone { .. })).await;
    // Back with two devices: AgentShutdown, then the master's close.
    let (mut ws, options) = raw_agent(master.addr(), "node-3").await;
    assert!(options.contains("\"ContainersToReattach\":[]"), "{options}");
    let two = STARTED.replace(r#"}],"#, r#"},{"id":1,"brand":"test CPU","uuid":"1","type":"cpu"}],"#);
    ws.send(Message::text(two)).await.unwrap();
    match ws.next().await.unwrap().unwrap() {
        Message::Text(text) => {
            assert!(text.contains(&format!("\"AgentShutdown\":{{\"ErrMsg\":\"{AGENT_MUST_RECONNECT}\"}}")), "{text}")
        }
        other => panic!("unexpected {other:?}"),
    }
    match ws.next().await.unwrap().unwrap() {
        Message::Close(Some(frame)) => {
            assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1000, "close called"))
        }
        other => panic!("unexpected {other:?}"),
    }
}
