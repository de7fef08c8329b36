//! One connection attempt: dial (see [`crate::dial`]), upgrade `/agents` to a websocket,
//! and register (`MasterSetAgentOptions` in, `AgentStarted` out). Every stage is bounded.
//!
//! The upgrade is written here rather than left to tungstenite's client handshake, which
//! keeps only the part of an error body that arrived with the head: the master's
//! "past reconnect period" answer must be recognised however its bytes arrive.

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::handshake::client::generate_key;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::error::{LinkError, LinkFailure, SaidIn, Stage, Violation};
use super::protocol::{is_past_reconnect, AgentStarted, FromMaster, MasterSetAgentOptions, ToMaster};
use super::refusal::{self, Asked};
use super::{Link, Target};
use crate::dial::http::{read_response_body, read_response_head, HttpError};
use crate::dial::{Connection, Stream};
use crate::tls::HandshakeError;

/// Dials the master, verifies it, upgrades to a websocket and registers.
///
/// `reconnect` says whether this agent registered with the master before (the master
/// then expects it to reattach its containers).
///
/// # Errors
/// Every stage has its own [`LinkError`]; a certificate the verifier refused carries the
/// verifier's full explanation, and a refused upgrade the master's reason in words.
pub async fn connect(target: &Target, reconnect: bool) -> Result<Link, LinkError> {
    let s = &target.settings;
    let Connection { stream, peer, .. } = target.dialer.dial().await.map_err(LinkError::Dial)?;
    let address = peer.address;
    let client_cert = target.config.tls.as_ref().is_some_and(|t| t.client_identity.is_some());
    let fail = |stage, error: std::io::Error| io_error(address, stage, error, client_cert);

    let upgraded = timeout(s.handshake_timeout, upgrade(stream, target, reconnect)).await;
    let (stream, rest) = match upgraded {
        Err(_) => return Err(LinkError::Timeout { stage: Stage::Upgrade, address, after: s.handshake_timeout }),
        Ok(Err(Failed::Io(error))) => return Err(fail(Stage::Upgrade, error)),
        Ok(Err(Failed::Refused { status, body })) => {
            let asked = Asked {
                agent_id: &target.config.agent_id,
                resource_pool: &target.config.resource_pool,
                tls: target.dialer.tls(),
                client_cert,
            };
            return Err(refusal::read(address, status, &body, &asked));
        }
        Ok(Err(Failed::Violation(violation))) => return Err(LinkError::Protocol { address, violation }),
        Ok(Ok(upgraded)) => upgraded,
    };
    let mut ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(s.websocket())).await;

    let options = match timeout(s.handshake_timeout, first_message(&mut ws, client_cert)).await {
        Err(_) => return Err(LinkError::Timeout { stage: Stage::Options, address, after: s.handshake_timeout }),
        Ok(Err(First::PastReconnect(said_in))) => return Err(LinkError::PastReconnect { said_in }),
        Ok(Err(First::Violation(violation))) => return Err(LinkError::Protocol { address, violation }),
        Ok(Ok(options)) => options,
    };
    let started = AgentStarted::answering(&options, target.devices.clone(), target.resource_pool());
    let sent = timeout(s.handshake_timeout, ws.send(Message::text(ToMaster::AgentStarted(started).encode()))).await;
    match sent {
        Err(_) => return Err(LinkError::Timeout { stage: Stage::Register, address, after: s.handshake_timeout }),
        Ok(Err(e)) => {
            let violation = Violation::Websocket(LinkFailure::from_ws(e, client_cert));
            return Err(LinkError::Protocol { address, violation });
        }
        Ok(Ok(())) => {}
    }
    Ok(Link::new(ws, peer, options, *s, client_cert))
}

/// Why the upgrade gave no websocket.
enum Failed {
    Io(std::io::Error),
    Refused { status: u16, body: Vec<u8> },
    Violation(Violation),
}

impl From<HttpError> for Failed {
    fn from(e: HttpError) -> Failed {
        match e {
            HttpError::Io(io) => Failed::Io(io),
            HttpError::Closed => Failed::Violation(Violation::ClosedDuringUpgrade),
            HttpError::NotHttp(what) => Failed::Violation(Violation::NotHttp(what)),
        }
    }
}

/// Sends the upgrade request and reads the answer: the stream and the bytes that came
/// after a `101`, or the status and (bounded) body of a refusal.
async fn upgrade(mut stream: Stream, target: &Target, reconnect: bool) -> Result<(Stream, Vec<u8>), Failed> {
    let key = generate_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: det-agent/{version}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n",
        path = target.agents_path(reconnect),
        host = target.authority(),
        version = env!("CARGO_PKG_VERSION"),
    );
    stream.write_all(request.as_bytes()).await.map_err(Failed::Io)?;
    stream.flush().await.map_err(Failed::Io)?;
    let head = read_response_head(&mut stream).await?;
    if head.status != 101 {
        // Whatever arrives within the limit and the stage's time: a body cut short still
        // says what it says.
        let body = match read_response_body(&mut stream, &head, refusal::MAX_BODY).await {
            Ok(body) => body,
            Err(_) => head.rest.iter().copied().take(refusal::MAX_BODY).collect(),
        };
        return Err(Failed::Refused { status: head.status, body });
    }
    let has = |name: &str, value: &str| head.header(name).is_some_and(|v| v.to_ascii_lowercase().contains(value));
    if !has("upgrade", "websocket") {
        return Err(Failed::Violation(Violation::BadUpgrade("without \"Upgrade: websocket\"")));
    }
    if !has("connection", "upgrade") {
        return Err(Failed::Violation(Violation::BadUpgrade("without \"Connection: Upgrade\"")));
    }
    if head.header("sec-websocket-accept").as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(Failed::Violation(Violation::BadUpgrade(
            "with a Sec-WebSocket-Accept that does not answer the key sent",
        )));
    }
    Ok((stream, head.rest))
}

/// Why the first message did not register the agent.
enum First {
    PastReconnect(SaidIn),
    Violation(Violation),
}

/// Reads until the master's first message, which must be `MasterSetAgentOptions`.
async fn first_message(ws: &mut WebSocketStream<Stream>, client_cert: bool) -> Result<MasterSetAgentOptions, First> {
    loop {
        let message = match ws.next().await {
            None => return Err(First::Violation(Violation::ClosedBeforeOptions)),
            Some(Err(e)) => return Err(First::Violation(Violation::Websocket(LinkFailure::from_ws(e, client_cert)))),
            Some(Ok(message)) => message,
        };
        match message {
            Message::Text(text) => {
                return match FromMaster::decode(&text) {
                    Ok(FromMaster::SetAgentOptions(options)) => Ok(options),
                    Ok(FromMaster::Shutdown { err_msg }) if is_past_reconnect(&err_msg) => {
                        Err(First::PastReconnect(SaidIn::AgentShutdown))
                    }
                    Ok(FromMaster::Shutdown { err_msg }) => {
                        Err(First::Violation(Violation::ShutdownBeforeOptions { err_msg }))
                    }
                    Ok(other) => Err(First::Violation(Violation::NotOptionsFirst(other.kind()))),
                    Err(e) => Err(First::Violation(Violation::Undecodable(e))),
                };
            }
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                    None => (None, String::new()),
                };
                if is_past_reconnect(&reason) {
                    return Err(First::PastReconnect(SaidIn::CloseReason));
                }
                return Err(First::Violation(Violation::CloseBeforeOptions { code, reason }));
            }
            _ => {} // pings (tungstenite queues the pong) and pongs
        }
    }
}

/// An I/O error during a stage: a TLS failure that surfaced after the handshake (TLS 1.3
/// sends a refusal of the client certificate after the client's Finished), or a broken
/// connection.
fn io_error(address: std::net::SocketAddr, stage: Stage, error: std::io::Error, client_cert: bool) -> LinkError {
    if error.get_ref().is_some_and(|e| e.is::<rustls::Error>()) {
        return LinkError::Tls { address, error: HandshakeError::from_io(error, client_cert) };
    }
    LinkError::Broken { address, stage, error }
}
