//! One agent's websocket at the dev master, as the real master runs it
//! (`master/internal/rm/agentrm/agent.go`; the socket's constants and close from
//! `master/pkg/ws/ws.go`): `MasterSetAgentOptions` at once, `AgentStarted` checked against
//! what the master holds, pings, a read deadline that only pongs extend, the agent's
//! messages decoded as the master decodes them, and a close with code 1000 and reason
//! `close called`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::registry::{self, Admitted, Command};
use super::{Behaviour, Event, Shared};
use crate::link::protocol::{
    AgentStarted, Change, ContainerStateChanged, DecodeError, Device, FromMaster, SignalContainer, State, ToMaster,
    AGENT_MUST_RECONNECT,
};

/// The master's `closeWait`: how long its `Close` waits for the peer.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// How a session goes on after a message.
enum Flow {
    Continue,
    /// End with a close frame (1000, `close called`), for this reason.
    Close(String),
    /// End without one: the real master's process would have died.
    Crash(String),
}

/// Runs the session until it ends; returns how it ended, in words.
pub(super) async fn run<S>(
    ws: &mut WebSocketStream<S>,
    shared: &Arc<Shared>,
    id: &str,
    admitted: Admitted,
    behaviour: &Behaviour,
) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Admitted { session, mut commands, reattach } = admitted;
    let options = json!({
        "MasterInfo": shared.info,
        "LoggingOptions": {"type": "default"},
        "ContainersToReattach": reattach,
    });
    if let Err(e) = ws.send(Message::text(go_envelope("MasterSetAgentOptions", options))).await {
        return format!("cannot send MasterSetAgentOptions: {e}");
    }
    let mut started = false;
    // The master's pingInterval; without pings, the timer is never polled.
    let every = behaviour.ping_interval.unwrap_or(Duration::from_secs(15));
    let mut ping = tokio::time::interval_at(Instant::now() + every, every);
    let mut pong_deadline = Instant::now() + behaviour.pong_wait;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let flow = match frame {
                    None => return "connection closed without a websocket close".to_owned(),
                    Some(Err(e)) => return format!("websocket error: {e}"),
                    Some(Ok(Message::Close(frame))) => {
                        let _ = ws.flush().await; // send tungstenite's queued close reply
                        return match frame {
                            Some(f) => format!("closed by the agent (code {})", u16::from(f.code)),
                            None => "closed by the agent (no code)".to_owned(),
                        };
                    }
                    Some(Ok(Message::Pong(_))) => {
                        pong_deadline = Instant::now() + behaviour.pong_wait;
                        shared.emit(Event::Pong { id: id.to_owned() });
                        Flow::Continue
                    }
                    Some(Ok(Message::Ping(_))) => {
                        let _ = ws.flush().await; // gorilla's default ping handler answers
                        Flow::Continue
                    }
                    // The master decodes text and binary frames alike.
                    Some(Ok(Message::Text(text))) => received(ws, shared, id, session, &text, &mut started, behaviour).await,
                    Some(Ok(Message::Binary(bytes))) => {
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        received(ws, shared, id, session, &text, &mut started, behaviour).await
                    }
                    Some(Ok(Message::Frame(_))) => Flow::Continue,
                };
                match flow {
                    Flow::Continue => {}
                    Flow::Close(reason) => {
                        close(ws).await;
                        return reason;
                    }
                    Flow::Crash(reason) => return reason,
                }
            }
            Some(Command::Send(message)) = commands.recv() => {
                if ws.send(Message::text(go_message(&message))).await.is_err() {
                    return "connection closed while sending".to_owned();
                }
            }
            _ = ping.tick(), if behaviour.ping_interval.is_some() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    return "connection closed while pinging".to_owned();
                }
            }
            _ = sleep_until(pong_deadline) => {
                close(ws).await;
                return format!("no pong for {}", crate::text::seconds(behaviour.pong_wait));
            }
        }
    }
}

/// Handles one message from the agent, as `HandleIncomingWebsocketMessage` does.
async fn received<S>(
    ws: &mut WebSocketStream<S>,
    shared: &Arc<Shared>,
    id: &str,
    session: u64,
    text: &str,
    started: &mut bool,
    behaviour: &Behaviour,
) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if text.trim() == "null" {
        // Decodes to a nil message: the handler takes it for a closed inbox.
        return Flow::Close("the agent sent null: closed gracefully".to_owned());
    }
    let violation = |what: String| {
        shared.emit(Event::ProtocolViolation { id: id.to_owned(), what: what.clone() });
        what
    };
    let message = match ToMaster::decode(text) {
        Ok(message) => message,
        // No known message: `check.Panic("error parsing incoming message")`, unrecovered.
        Err(e @ DecodeError::NoKnownMessage { .. }) => {
            return Flow::Crash(violation(format!("the real master would panic and exit: {e}")))
        }
        Err(e) => return Flow::Close(violation(format!("unmarshalling message: {e}"))),
    };
    let has_started = *started || shared.lock_agents().agents.get(id).is_some_and(|h| h.devices.is_some());
    match message {
        ToMaster::AgentStarted(agent_started) => {
            if let Err(reason) = agent_started_checked(shared, id, session, &agent_started) {
                shared.emit(Event::AgentShutdownSent { id: id.to_owned(), reason: reason.clone() });
                let shutdown = go_envelope("AgentShutdown", json!({ "ErrMsg": AGENT_MUST_RECONNECT }));
                let _ = ws.send(Message::text(shutdown)).await;
                registry::stop(shared, id, session, &reason);
                return Flow::Close(format!("stopped: {reason}"));
            }
            *started = true;
            after_start(ws, behaviour).await
        }
        // Before the agent ever started, the master's agent state is nil: these crash it.
        other if !has_started => {
            Flow::Crash(violation(format!("{} before AgentStarted: the real master would crash", other.kind())))
        }
        ToMaster::ContainerStateChanged(changed) => {
            container_state_changed(shared, id, &changed);
            Flow::Continue
        }
        other => {
            shared.emit(Event::AgentMessage { id: id.to_owned(), kind: other.kind().to_owned() });
            Flow::Continue
        }
    }
}

/// `AgentStarted`: for an agent the master held, its devices and pool must be the ones
/// held (`checkAgentStartedDevicesMatch`, `checkAgentResourcePoolMatch`); for a new one,
/// they are recorded. Containers not reattached are killed (`clearNonReattachedContainers`).
fn agent_started_checked(shared: &Arc<Shared>, id: &str, session: u64, started: &AgentStarted) -> Result<(), String> {
    let mut registry = shared.lock_agents();
    let Some(held) = registry.agents.get_mut(id) else { return Ok(()) };
    if held.session.as_ref().map(|(n, _)| *n) != Some(session) {
        return Ok(());
    }
    match &held.devices {
        Some(devices) => {
            devices_match(devices, &started.devices)?;
            if held.pool != started.resource_pool_name {
                return Err(format!("resource pool has changed: {} -> {}", held.pool, started.resource_pool_name));
            }
        }
        None => held.devices = Some(started.devices.clone()),
    }
    let recovered: Vec<&str> = started
        .containers_reattached
        .iter()
        .filter(|ack| ack.failure.is_none() && ack.container.state != State::Terminated)
        .map(|ack| ack.container.id.as_str())
        .collect();
    let doomed: Vec<String> = held.containers.keys().filter(|c| !recovered.contains(&c.as_str())).cloned().collect();
    for container_id in &doomed {
        held.containers.remove(container_id);
        if let Some((_, commands)) = &held.session {
            let kill = FromMaster::SignalContainer(SignalContainer { container_id: container_id.clone(), signal: 9 });
            let _ = commands.send(Command::Send(kill));
        }
    }
    let event = Event::AgentStarted {
        id: id.to_owned(),
        devices: started.devices.len(),
        resource_pool: started.resource_pool_name.clone(),
        reattached: started.containers_reattached.len(),
    };
    registry::save(shared, &registry);
    drop(registry);
    shared.emit(event);
    for container_id in doomed {
        shared.emit(Event::Sent { id: id.to_owned(), kind: "SignalContainer".into(), container_id });
    }
    Ok(())
}

/// Go's comparison: the count, then each device by ID.
fn devices_match(held: &[Device], reported: &[Device]) -> Result<(), String> {
    if held.len() != reported.len() {
        return Err(format!("device count has changed: {} -> {}", held.len(), reported.len()));
    }
    let show =
        |d: Option<&Device>| d.map_or("{}".to_owned(), |d| format!("{{{} {} {} {}}}", d.id, d.brand, d.uuid, d.kind));
    for ours in held {
        let theirs = reported.iter().find(|d| d.id == ours.id);
        if theirs != Some(ours) {
            return Err(format!("device properties have changed: {} -> {}", show(Some(ours)), show(theirs)));
        }
    }
    Ok(())
}

/// What the behaviour asks for once the agent registered.
async fn after_start<S>(ws: &mut WebSocketStream<S>, behaviour: &Behaviour) -> Flow
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !behaviour.after_register_raw.is_empty() {
        let raw = ws.get_mut();
        if raw.write_all(&behaviour.after_register_raw).await.is_err() || raw.flush().await.is_err() {
            return Flow::Crash("connection closed while sending raw bytes".to_owned());
        }
    }
    for message in &behaviour.after_register {
        if ws.send(Message::text(message.clone())).await.is_err() {
            return Flow::Crash("connection closed while sending messages".to_owned());
        }
    }
    if behaviour.mute_after_register {
        // Hold the connection and say nothing: no pongs, no pings. Bytes are read only to
        // see the agent leave, and thrown away unparsed.
        let raw = ws.get_mut();
        let mut sink = [0u8; 4096];
        while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(raw, &mut sink).await {
            let _ = n;
        }
        return Flow::Crash("the agent left the muted connection".to_owned());
    }
    Flow::Continue
}

fn container_state_changed(shared: &Arc<Shared>, id: &str, changed: &ContainerStateChanged) {
    let container = changed.container();
    let mut registry = shared.lock_agents();
    let known = match registry.agents.get_mut(id) {
        Some(held) if held.containers.contains_key(&container.id) => {
            if container.state == State::Terminated {
                held.containers.remove(&container.id);
            } else if let Some(c) = held.containers.get_mut(&container.id) {
                c.state = container.state;
            }
            true
        }
        _ => false,
    };
    registry::save(shared, &registry);
    drop(registry);
    let failure = match changed.change() {
        Change::Terminated(stopped) => stopped.failure.as_ref(),
        _ => None,
    };
    shared.emit(Event::ContainerStateChanged {
        id: id.to_owned(),
        container_id: container.id.clone(),
        state: container.state.as_str().to_owned(),
        known,
        failure_type: failure.map(|f| f.failure_type.as_str().to_owned()),
        err_msg: failure.map(|f| f.err_msg.clone()),
    });
}

/// `message` in Go's `aproto.AgentMessage` envelope.
fn go_message(message: &FromMaster) -> String {
    let encoded: Value = serde_json::from_str(&message.encode()).unwrap_or_default();
    go_envelope(message.kind(), encoded[message.kind()].clone())
}

/// `{"Name": body, …}` with every other field of Go's `aproto.AgentMessage` null, in the
/// struct's order, as the master marshals it.
fn go_envelope(name: &str, body: Value) -> String {
    let fields: Vec<String> = ["MasterSetAgentOptions", "StartContainer", "SignalContainer", "AgentShutdown"]
        .iter()
        .map(|field| {
            let value = if *field == name { body.to_string() } else { "null".to_owned() };
            format!("\"{field}\":{value}")
        })
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// The master's `Close`: close 1000 `close called`, then up to `closeWait` for the agent.
async fn close<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame { code: CloseCode::Normal, reason: "close called".into() };
    let _ = timeout(CLOSE_WAIT, async {
        if ws.close(Some(frame)).await.is_ok() {
            while let Some(Ok(_)) = ws.next().await {}
        }
    })
    .await;
}
