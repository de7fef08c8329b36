//! `/agents`: what the real master answers before the websocket exists, in its order and
//! its words (`master/internal/rm/agentrm/agent_resource_manager.go`, the route, and
//! `agents.go`, `HandleWebsocketConnection`; errors are echo's JSON bodies, status 500
//! unless said, `master/internal/api/error.go`), then the upgrade and the session.

use std::sync::Arc;

use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::http::{respond, respond_json, Head};
use super::registry::{Admitted, Held};
use super::{session, Event, Shared};
use crate::link::protocol::{ContainerReattach, AGENT_MUST_RECONNECT};

/// The master's `maxMessageSize` (`master/pkg/ws/ws.go`).
const MAX_MESSAGE_SIZE: usize = 128 << 20;

/// Serves one `/agents` request on `stream`; `client_cert` says whether the TLS client
/// presented a certificate (`None` without TLS).
pub(super) async fn serve<S>(
    mut stream: S,
    head: Head,
    shared: &Arc<Shared>,
    client_cert: Option<bool>,
    mut stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = head.query_pair("id").unwrap_or_default();
    let behaviour = shared.behaviour();
    let admitted = match admit(&head, shared, &id, client_cert) {
        Ok(admitted) => admitted,
        Err((status, message)) => {
            shared.emit(Event::Refused { id: id.clone(), status, message: message.clone() });
            // echo's c.JSON: the object, then a newline (json.Encoder).
            let body = format!("{}\n", json!({ "message": message }));
            respond_json(&mut stream, status, &body, behaviour.slow_answers).await;
            return;
        }
    };
    if behaviour.silent_upgrade {
        // Accept the request and never answer it: a master too busy to.
        let _ = stopped.wait_for(|s| *s).await;
        return;
    }
    let Some(key) = head.header("sec-websocket-key").filter(|k| !k.trim().is_empty()) else {
        // gorilla's Upgrader answers in plain text (and the master stops the agent).
        super::registry::stop(shared, &id, admitted.session, "error upgrading connection to WebSocket");
        let text = "Bad Request\nwebsocket: not a websocket handshake: 'Sec-WebSocket-Key' header is missing or blank";
        respond(&mut stream, 400, text).await;
        return;
    };
    let accept = derive_accept_key(key.trim().as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream.write_all(response.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        super::registry::disconnected(shared, &id, admitted.session);
        return;
    }
    shared.emit(Event::AgentConnected {
        id: id.clone(),
        reconnect: head.query_pair("reconnect").is_some_and(|r| parse_bool(&r) == Some(true)),
        hostname: head.query_pair("hostname").unwrap_or_default(),
        version: head.query_pair("version").unwrap_or_default(),
        resource_pool: head.query_pair("resource_pool").unwrap_or_default(),
        held: admitted.reattach.is_some(),
    });
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_MESSAGE_SIZE);
    config.max_frame_size = Some(MAX_MESSAGE_SIZE);
    let mut ws = WebSocketStream::from_partially_read(stream, head.rest, Role::Server, Some(config)).await;
    let session = admitted.session;
    let reason = tokio::select! {
        reason = session::run(&mut ws, shared, &id, admitted, &behaviour) => reason,
        _ = stopped.wait_for(|s| *s) => "the dev master stopped".to_owned(),
    };
    super::registry::disconnected(shared, &id, session);
    shared.emit(Event::AgentGone { id, reason });
}

/// The checks before the upgrade, in the real master's order; on success the agent is
/// held and connected.
fn admit(head: &Head, shared: &Arc<Shared>, id: &str, client_cert: Option<bool>) -> Result<Admitted, (u16, String)> {
    // The route: anything but a websocket upgrade is echo.ErrBadRequest.
    if !head.header("upgrade").is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket")) {
        return Err((400, "Bad Request".to_owned()));
    }
    // require_authentication: a TLS client without a certificate is echo.ErrForbidden.
    if shared.options.require_authentication && client_cert == Some(false) {
        return Err((403, "Forbidden".to_owned()));
    }
    let reconnect_text = head.query_pair("reconnect").unwrap_or_default();
    let Some(reconnect) = parse_bool(&reconnect_text) else {
        return Err((
            500,
            format!(
                "parsing reconnect query param: strconv.ParseBool: parsing {}: invalid syntax",
                serde_json::Value::String(reconnect_text)
            ),
        ));
    };
    let mut registry = shared.lock_agents();
    let session = registry.next();
    let (commands_tx, commands) = mpsc::unbounded_channel();
    if let Some(held) = registry.agents.get_mut(id) {
        // A held ID is reused whatever `reconnect` says; a connected one is refused, and
        // the first agent stays (PR #8877; the forks wrap the error as "agent: …").
        if held.session.is_some() {
            return Err((500, "agent: websocket already connected".to_owned()));
        }
        held.session = Some((session, commands_tx));
        held.waiting = None;
        let reattach = held.containers.values().map(|c| ContainerReattach { container: c.clone() }).collect();
        return Ok(Admitted { session, commands, reattach: Some(reattach) });
    }
    if reconnect {
        return Err((500, AGENT_MUST_RECONNECT.to_owned()));
    }
    if id.is_empty() {
        return Err((500, "invalid agent id specified: ".to_owned()));
    }
    let pool = match head.query_pair("resource_pool").unwrap_or_default() {
        pool if pool.is_empty() => "default".to_owned(),
        pool => pool,
    };
    if !shared.options.pools.contains(&pool) {
        return Err((500, format!("cannot find specified resource pool {pool} for agent {id}")));
    }
    let held = Held { pool, session: Some((session, commands_tx)), ..Held::default() };
    registry.agents.insert(id.to_owned(), held);
    Ok(Admitted { session, commands, reattach: None })
}

/// Go's `strconv.ParseBool`.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn parses_booleans_as_go_does() {
        assert_eq!(parse_bool("True"), Some(true));
        assert_eq!(parse_bool("F"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_bool(""), None);
    }
}
