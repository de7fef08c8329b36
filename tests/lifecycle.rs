//! The daemon through the master's agent lifecycle, against the dev master over loopback:
//! `AgentShutdown` followed by a fresh registration, a reload into another pool, an
//! application that falls behind, a master that never answers the upgrade, containers it
//! cannot run, containers the master wants reattached, and attempts on the phase points.

use std::net::SocketAddr;
use std::time::Duration;

use det_agent::backoff::Phase;
use det_agent::daemon::{self, Channels, Control, DaemonError, Event as DaemonEvent, LoadError, Observer};
use det_agent::dev_master::{Behaviour, DevMaster, Event, Options};
use det_agent::dial::ProxyEnv;
use det_agent::link::protocol::Device;
use det_agent::link::{self, Bound, Ended, FromMaster, LinkError, LinkSettings, Stage, Target};
use det_agent::{Config, Host};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::link::until;

fn settings() -> LinkSettings {
    LinkSettings {
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ping_interval: Duration::from_millis(100),
        read_deadline: Duration::from_secs(5),
        close_timeout: Duration::from_secs(2),
        ..LinkSettings::default()
    }
}

/// A plain-HTTP agent configuration for `addr`, retrying within milliseconds.
fn agent_config(addr: SocketAddr, pool: &str) -> Config {
    let mut cfg = Config::new(Host::parse("127.0.0.1").unwrap(), None);
    cfg.master_port = addr.port();
    cfg.agent_id = "node-1".to_owned();
    cfg.resource_pool = pool.to_owned();
    cfg.agent_reconnect_backoff = Duration::from_millis(10);
    cfg.agent_reconnect_backoff_max = Duration::from_millis(50);
    cfg
}

fn cpu() -> Device {
    Device { id: 0, brand: "test CPU".into(), uuid: "0".into(), kind: "cpu".into() }
}

fn target(cfg: Config, settings: LinkSettings) -> Target {
    Target::new(cfg, ProxyEnv::none(), settings).unwrap().with_devices(vec![cpu()])
}

async fn plain(options: Options, behaviour: Behaviour) -> DevMaster {
    DevMaster::serve_with(([127, 0, 0, 1], 0).into(), None, behaviour, options).await.unwrap()
}

struct Agent {
    controls: mpsc::Sender<Control>,
    task: JoinHandle<Result<(), DaemonError>>,
}

impl Agent {
    async fn shutdown(self) {
        self.controls.send(Control::Shutdown).await.unwrap();
        let result = tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("stops").unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}

/// The daemon with `channels`, reloading with `reload`.
fn spawn(
    target: Target,
    reload: impl FnMut() -> Result<Target, LoadError> + Send + 'static,
    channels: Channels,
    options: daemon::Options,
) -> Agent {
    let (controls, mut control_rx) = mpsc::channel(4);
    let task = tokio::spawn(async move { daemon::run(target, reload, options, &mut control_rx, channels).await });
    Agent { controls, task }
}

/// The daemon as `det-agent run` runs it: the master's container requests answered.
fn spawn_run(target: Target, reload: impl FnMut() -> Result<Target, LoadError> + Send + 'static) -> Agent {
    let (inbound, from_master) = mpsc::channel(64);
    let (to_master, outbound) = mpsc::channel(64);
    tokio::spawn(daemon::serve_without_containers(from_master, to_master));
    spawn(target, reload, Channels { inbound, outbound }, daemon::Options::default())
}

fn no_reload() -> Result<Target, LoadError> {
    Err(LoadError::Config(det_agent::ConfigError::Missing {
        option: "master_host",
        flag: "--master-host",
        env: "DET_MASTER_HOST",
    }))
}

fn connected(reconnect: bool) -> impl FnMut(&Event) -> bool {
    move |e| matches!(e, Event::AgentConnected { reconnect: r, .. } if *r == reconnect)
}

#[tokio::test]
async fn agent_shutdown_on_a_reconnect_is_followed_by_a_fresh_registration() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("agents.json");
    let options = Options { state_file: Some(state.clone()), ..Options::default() };
    let mut master = plain(options.clone(), Behaviour::default()).await;
    let addr = master.addr();
    let agent = spawn_run(target(agent_config(addr, "default"), settings()), no_reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    // The master restarts remembering other devices for this agent: on the reconnect it
    // sends AgentShutdown, and the agent registers afresh instead of exiting.
    master.stop().await;
    let saved = std::fs::read_to_string(&state).unwrap().replace("test CPU", "another CPU");
    std::fs::write(&state, saved).unwrap();
    let mut master = DevMaster::serve_with(addr, None, Behaviour::default(), options).await.unwrap();
    until(&mut master, connected(true)).await;
    match until(&mut master, |e| matches!(e, Event::AgentShutdownSent { .. })).await {
        Event::AgentShutdownSent { reason, .. } => {
            assert!(reason.starts_with("device properties have changed"), "{reason}")
        }
        _ => unreachable!(),
    }
    match until(&mut master, |e| matches!(e, Event::AgentConnected { .. })).await {
        Event::AgentConnected { reconnect, held, .. } => assert_eq!((reconnect, held), (false, false)),
        _ => unreachable!(),
    }
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    assert!(!agent.task.is_finished());
    agent.shutdown().await;
}

#[tokio::test]
async fn a_reload_into_another_pool_comes_back_registered_in_it() {
    let options = Options { pools: vec!["default".into(), "gpu".into()], ..Options::default() };
    let mut master = plain(options, Behaviour::default()).await;
    let addr = master.addr();
    let reload = move || Ok(target(agent_config(addr, "gpu"), settings()));
    let agent = spawn_run(target(agent_config(addr, "default"), settings()), reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    // Without --reconnect-on-reload: a new pool is a new registration, so at once.
    agent.controls.send(Control::Reload).await.unwrap();
    until(&mut master, |e| matches!(e, Event::AgentGone { reason, .. } if reason.contains("code 1000"))).await;
    // The master still holds the agent in the old pool: it refuses the move as the real
    // master does, and the agent registers afresh, in the new pool.
    match until(&mut master, |e| matches!(e, Event::AgentShutdownSent { .. })).await {
        Event::AgentShutdownSent { reason, .. } => assert_eq!(reason, "resource pool has changed: default -> gpu"),
        _ => unreachable!(),
    }
    match until(&mut master, connected(false)).await {
        Event::AgentConnected { resource_pool, held, .. } => assert_eq!((resource_pool.as_str(), held), ("gpu", false)),
        _ => unreachable!(),
    }
    match until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await {
        Event::AgentStarted { resource_pool, .. } => assert_eq!(resource_pool, "gpu"),
        _ => unreachable!(),
    }
    agent.shutdown().await;
}

fn start_containers(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!(r#"{{"StartContainer":{{"Container":{{"id":"c{i}","state":"ASSIGNED"}},"Spec":{{}}}}}}"#))
        .collect()
}

#[tokio::test]
async fn an_application_far_behind_closes_the_link_with_its_reason() {
    let behaviour = Behaviour { after_register: start_containers(10), ..Behaviour::default() };
    let mut master = plain(Options::default(), behaviour).await;
    let bounded = LinkSettings { inbound_buffer_messages: 4, ..settings() };
    let link = link::connect(&target(agent_config(master.addr(), "default"), bounded), false).await.unwrap();
    // An application that never takes a message, behind a channel of one.
    let (inbound, _never_read) = mpsc::channel(1);
    let (_keep, mut outbound) = mpsc::channel(1);
    let ended = link.run(&inbound, &mut outbound, std::future::pending::<()>()).await;
    assert!(matches!(ended, Ended::Overflow { messages: 4, bound: Bound::Messages(4), .. }), "{ended}");
    let text = ended.to_string();
    assert!(text.contains("the application fell behind the master: 4 messages"), "{text}");
    assert!(text.contains("over the bound of 4 messages (inbound_buffer_messages)"), "{text}");
    // The master saw the agent close, with a code that is not a clean 1000.
    until(&mut master, |e| matches!(e, Event::AgentGone { reason, .. } if reason.contains("code 1011"))).await;
}

#[tokio::test]
async fn the_daemon_reconnects_after_its_application_fell_behind() {
    let behaviour = Behaviour { after_register: start_containers(10), ..Behaviour::default() };
    let mut master = plain(Options::default(), behaviour).await;
    let bounded = LinkSettings { inbound_buffer_messages: 4, ..settings() };
    let (inbound, _never_read) = mpsc::channel(1);
    let (_keep, outbound) = mpsc::channel(1);
    let channels = Channels { inbound, outbound };
    let agent = spawn(target(agent_config(master.addr(), "default"), bounded), no_reload, channels, Default::default());
    until(&mut master, |e| matches!(e, Event::AgentGone { reason, .. } if reason.contains("code 1011"))).await;
    until(&mut master, connected(true)).await;
    agent.shutdown().await;
}

#[tokio::test]
async fn a_master_that_never_answers_the_upgrade_times_out_after_the_handshake_timeout() {
    let behaviour = Behaviour { silent_upgrade: true, ..Behaviour::default() };
    let master = plain(Options::default(), behaviour).await;
    let short = LinkSettings { handshake_timeout: Duration::from_millis(300), ..settings() };
    let err = link::connect(&target(agent_config(master.addr(), "default"), short), false).await.unwrap_err();
    assert!(
        matches!(err, LinkError::Timeout { stage: Stage::Upgrade, after, .. } if after == Duration::from_millis(300)),
        "{err}"
    );
    assert!(err.to_string().contains("websocket upgrade with 127.0.0.1"), "{err}");
    assert!(err.to_string().contains("timed out after 300 ms; the master may be overloaded"), "{err}");
}

#[tokio::test]
async fn a_container_is_answered_at_once_and_kills_are_acknowledged() {
    let mut master = plain(Options::default(), Behaviour::default()).await;
    let agent = spawn_run(target(agent_config(master.addr(), "default"), settings()), no_reload);
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    let container = master.start_container("node-1").unwrap();
    match until(&mut master, |e| matches!(e, Event::ContainerStateChanged { .. })).await {
        Event::ContainerStateChanged { container_id, state, known, failure_type, err_msg, .. } => {
            assert_eq!((container_id.as_str(), state.as_str(), known), (container.as_str(), "TERMINATED", true));
            assert_eq!(failure_type.as_deref(), Some("task failed without an associated exit code"));
            assert_eq!(err_msg.as_deref(), Some(daemon::RUNS_NO_CONTAINERS));
        }
        _ => unreachable!(),
    }
    // A kill after the fact: the same terminal state again; the master ignores it.
    assert!(master.kill_container("node-1", &container));
    match until(&mut master, |e| matches!(e, Event::ContainerStateChanged { .. })).await {
        Event::ContainerStateChanged { container_id, known, failure_type, .. } => {
            assert_eq!((container_id, known), (container, false));
            assert_eq!(failure_type.as_deref(), Some("task failed without an associated exit code"));
        }
        _ => unreachable!(),
    }
    // A kill for a container this node never heard of: the Go agent's answer.
    assert!(master.kill_container("node-1", "never-seen"));
    match until(&mut master, |e| matches!(e, Event::ContainerStateChanged { .. })).await {
        Event::ContainerStateChanged { container_id, state, failure_type, err_msg, .. } => {
            assert_eq!((container_id.as_str(), state.as_str()), ("never-seen", "TERMINATED"));
            assert_eq!(failure_type.as_deref(), Some("request for action on unknown container"));
            assert_eq!(err_msg.as_deref(), Some("container is gone on reattachment"));
        }
        _ => unreachable!(),
    }
    agent.shutdown().await;
}

#[tokio::test]
async fn containers_the_master_wants_reattached_are_acknowledged_gone() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { state_file: Some(dir.path().join("agents.json")), ..Options::default() };
    let mut master = plain(options.clone(), Behaviour::default()).await;
    let addr = master.addr();
    // An application that takes messages and never answers: the container stays assigned.
    let (inbound, mut from_master) = mpsc::channel(8);
    let (_to_master, outbound) = mpsc::channel(8);
    let channels = Channels { inbound, outbound };
    let agent = spawn(target(agent_config(addr, "default"), settings()), no_reload, channels, Default::default());
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;
    let container = master.start_container("node-1").unwrap();
    assert!(matches!(from_master.recv().await, Some(FromMaster::StartContainer(_))));

    master.stop().await;
    let mut master = DevMaster::serve_with(addr, None, Behaviour::default(), options).await.unwrap();
    match until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await {
        Event::AgentStarted { reattached, .. } => assert_eq!(reattached, 1),
        _ => unreachable!(),
    }
    // Not reattached: the master kills it, as it does every container it gives up on.
    match until(&mut master, |e| matches!(e, Event::Sent { .. })).await {
        Event::Sent { kind, container_id, .. } => {
            assert_eq!((kind.as_str(), container_id), ("SignalContainer", container))
        }
        _ => unreachable!(),
    }
    agent.shutdown().await;
}

/// Records when each attempt starts.
struct Attempts(mpsc::UnboundedSender<Instant>);

impl Observer for Attempts {
    fn event(&mut self, event: &DaemonEvent<'_>) {
        if matches!(event, DaemonEvent::Connecting { .. }) {
            let _ = self.0.send(Instant::now());
        }
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_land_on_the_agents_phase_points() {
    // Nothing listens: every attempt fails as "master down", so the agent tries again at
    // its next phase point. Base 1 s, so a period of 3 s; phase 0.5, so 1.5 s into each.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cfg = agent_config(refused, "default");
    cfg.agent_reconnect_backoff = Duration::from_secs(1);
    cfg.agent_reconnect_backoff_max = Duration::from_secs(60);
    cfg.agent_reconnect_attempts = 4;
    let options = daemon::Options { phase: Some(Phase::new(0.5)), ..daemon::Options::default() };
    let (tx, mut starts) = mpsc::unbounded_channel();
    let (_controls, mut control_rx) = mpsc::channel(1);
    let (inbound, _from_master) = mpsc::channel(1);
    let (_to_master, outbound) = mpsc::channel(1);
    let origin = Instant::now();
    let result = daemon::run_observed(
        target(cfg, settings()),
        no_reload,
        options,
        &mut control_rx,
        Channels { inbound, outbound },
        &mut Attempts(tx),
    )
    .await;
    assert!(matches!(result, Err(DaemonError::GaveUp { attempts: 4, .. })), "{result:?}");
    let mut at = Vec::new();
    while let Ok(start) = starts.try_recv() {
        at.push((start - origin).as_millis());
    }
    assert_eq!(at, [0, 1500, 4500, 7500]);
}

#[tokio::test(start_paused = true)]
async fn by_default_a_silent_master_gets_the_go_agents_45_seconds() {
    let behaviour = Behaviour { silent_upgrade: true, ..Behaviour::default() };
    let master = plain(Options::default(), behaviour).await;
    let t = Target::new(agent_config(master.addr(), "default"), ProxyEnv::none(), LinkSettings::default()).unwrap();
    let started = Instant::now();
    let err = link::connect(&t, false).await.unwrap_err();
    assert!(matches!(err, LinkError::Timeout { stage: Stage::Upgrade, .. }), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(45));
}

/// Names the events it sees.
struct Names(mpsc::UnboundedSender<&'static str>);

impl Observer for Names {
    fn event(&mut self, event: &DaemonEvent<'_>) {
        let name = match event {
            DaemonEvent::Connecting { .. } => "connecting",
            DaemonEvent::ConnectFailed { .. } => "connect_failed",
            DaemonEvent::Waiting { .. } => "waiting",
            DaemonEvent::Reloading => "reloading",
            DaemonEvent::ReloadFailed { .. } => "reload_failed",
            DaemonEvent::Heartbeat => "heartbeat",
            DaemonEvent::ShuttingDown => "shutting_down",
            _ => "other",
        };
        let _ = self.0.send(name);
    }
}

#[tokio::test(start_paused = true)]
async fn the_observer_sees_each_state_change_once_and_heartbeats_from_the_loop() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut cfg = agent_config(refused, "default");
    cfg.agent_reconnect_backoff = Duration::from_secs(20);
    cfg.agent_reconnect_backoff_max = Duration::from_secs(60);
    let options = daemon::Options {
        phase: Some(Phase::new(0.0)),
        heartbeat: Some(Duration::from_secs(10)),
        ..daemon::Options::default()
    };
    let (tx, mut names) = mpsc::unbounded_channel();
    let (controls, mut control_rx) = mpsc::channel(4);
    let (inbound, _from_master) = mpsc::channel(1);
    let (_to_master, outbound) = mpsc::channel(1);
    let daemon = tokio::spawn(async move {
        let channels = Channels { inbound, outbound };
        daemon::run_observed(target(cfg, settings()), no_reload, options, &mut control_rx, channels, &mut Names(tx))
            .await
    });
    // One failed attempt, then a wait of a whole period (60 s), with a heartbeat every 10 s.
    let mut seen = Vec::new();
    while seen.iter().filter(|n| **n == "heartbeat").count() < 2 {
        seen.push(names.recv().await.unwrap());
    }
    controls.send(Control::Reload).await.unwrap();
    // The reload runs on the blocking pool; a shutdown sent before it ends abandons it.
    while seen.last() != Some(&"reload_failed") {
        seen.push(names.recv().await.unwrap());
    }
    controls.send(Control::Shutdown).await.unwrap();
    assert!(daemon.await.unwrap().is_ok());
    while let Ok(name) = names.try_recv() {
        seen.push(name);
    }
    assert_eq!(
        seen,
        [
            "connecting",
            "connect_failed",
            "waiting",
            "heartbeat",
            "heartbeat",
            "reloading",
            "reload_failed",
            "shutting_down"
        ]
    );
}
