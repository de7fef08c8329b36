//! The dev master's `/agents` session: accept the upgrade, send `MasterSetAgentOptions`,
//! expect `AgentStarted`, ping, and report everything as events.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::http::{respond, Head};
use super::{Behaviour, Event, Shared};
use crate::link::protocol::{AgentStarted, ToMaster, AGENT_MUST_RECONNECT};

/// Serves one `/agents` request on `stream`.
pub(super) async fn serve<S>(mut stream: S, head: Head, shared: &Shared, mut stopped: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = head.query_pair("id").unwrap_or_default();
    let reconnect = head.query_pair("reconnect").as_deref() == Some("true");
    let behaviour = shared.behaviour();
    let Some(key) = head.header("sec-websocket-key").filter(|_| is_upgrade(&head)) else {
        respond(&mut stream, 400, "/agents expects a websocket upgrade").await;
        return;
    };
    if reconnect && behaviour.past_reconnect {
        shared.emit(Event::RefusedReconnect { id: id.clone() });
        let body = json!({ "message": AGENT_MUST_RECONNECT }).to_string();
        super::http::respond_json(&mut stream, 500, &body).await;
        return;
    }
    let accept = derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(response.as_bytes()).await.is_err() {
        return;
    }
    shared.emit(Event::AgentConnected {
        id: id.clone(),
        reconnect,
        hostname: head.query_pair("hostname").unwrap_or_default(),
        version: head.query_pair("version").unwrap_or_default(),
        resource_pool: head.query_pair("resource_pool").unwrap_or_default(),
    });
    let mut ws = WebSocketStream::from_partially_read(stream, head.rest, Role::Server, None).await;
    let reason = tokio::select! {
        reason = session(&mut ws, &id, &behaviour, shared) => reason,
        _ = stopped.wait_for(|s| *s) => "the dev master stopped".to_owned(),
    };
    shared.emit(Event::AgentGone { id, reason });
}

fn is_upgrade(head: &Head) -> bool {
    head.method == "GET" && head.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
}

async fn session<S>(ws: &mut WebSocketStream<S>, id: &str, behaviour: &Behaviour, shared: &Shared) -> String
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let options = json!({"MasterSetAgentOptions": {
        "MasterInfo": shared.info,
        "LoggingOptions": {"type": "default"},
        "ContainersToReattach": [],
    }});
    if let Err(e) = ws.send(Message::text(options.to_string())).await {
        return format!("cannot send MasterSetAgentOptions: {e}");
    }
    // Registration: the first text message must be AgentStarted.
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                match serde_json::from_value::<AgentStarted>(value["AgentStarted"].clone()) {
                    Ok(started) => {
                        shared.emit(Event::AgentStarted {
                            id: id.to_owned(),
                            devices: started.devices.len(),
                            resource_pool: started.resource_pool_name,
                        });
                        break;
                    }
                    Err(e) => return format!("expected AgentStarted, got {text}: {e}"),
                }
            }
            Some(Ok(Message::Close(frame))) => return closed_by_agent(frame),
            Some(Ok(_)) => {}
            Some(Err(e)) => return format!("websocket error before AgentStarted: {e}"),
            None => return "connection closed before AgentStarted".to_owned(),
        }
    }
    if !behaviour.after_register_raw.is_empty() {
        let raw = ws.get_mut();
        if raw.write_all(&behaviour.after_register_raw).await.is_err() || raw.flush().await.is_err() {
            return "connection closed while sending raw bytes".to_owned();
        }
    }
    for message in &behaviour.after_register {
        if ws.send(Message::text(message.clone())).await.is_err() {
            return "connection closed while sending messages".to_owned();
        }
    }
    if behaviour.mute_after_register {
        // Hold the connection and say nothing: no reads (so no pongs), no pings.
        std::future::pending::<()>().await;
    }
    let period = behaviour.ping_interval.unwrap_or(Duration::from_secs(15));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match ToMaster::decode(&text) {
                    // Same envelope in both directions.
                    Ok(message) => shared.emit(Event::AgentMessage { id: id.to_owned(), kind: message.kind().to_owned() }),
                    Err(e) => return format!("agent sent a bad message: {e}"),
                },
                Some(Ok(Message::Pong(_))) => shared.emit(Event::Pong { id: id.to_owned() }),
                Some(Ok(Message::Close(frame))) => {
                    let _ = ws.flush().await; // send tungstenite's queued close reply
                    return closed_by_agent(frame);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return format!("websocket error: {e}"),
                None => return "connection closed without a websocket close".to_owned(),
            },
            _ = ping.tick(), if behaviour.ping_interval.is_some() => {
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    return "connection closed while pinging".to_owned();
                }
            }
        }
    }
}

fn closed_by_agent(frame: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> String {
    match frame {
        Some(f) => format!("closed by the agent (code {})", u16::from(f.code)),
        None => "closed by the agent (no code)".to_owned(),
    }
}
