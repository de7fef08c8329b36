//! The master link: one verified websocket to the master's `/agents` endpoint.
//!
//! [`Target`] holds everything fixed for one configuration generation (the checked
//! config, its TLS client configuration, the proxy settings, the limits). [`connect`]
//! dials it: TCP (every resolved address in turn, or through an HTTP proxy), TLS with the
//! configured verifier and server name, the websocket upgrade, and registration
//! (`MasterSetAgentOptions` in, `AgentStarted` out). [`Link::run`] then keeps the link
//! alive until the master goes away, the link breaks, or the caller stops it.

mod error;
pub(crate) mod head;
pub mod protocol;
pub mod proxy;
mod stream;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::config::{Config, Host};
use crate::tls::{TlsClient, TlsSetupError};
use crate::x509::Fingerprint;

pub use error::{Ended, LinkError};
pub use protocol::{AgentStarted, Device, FromMaster, MasterSetAgentOptions, ToMaster};
pub use proxy::ProxyEnv;
pub use stream::Stream;

/// The text by which the master says a reconnecting agent must register afresh.
pub const PAST_RECONNECT: &str = "past reconnect period";

/// Timing and size limits of a link. The defaults are the Go agent's and master's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkSettings {
    /// One TCP connect (per address).
    pub connect_timeout: Duration,
    /// Each of: the proxy's CONNECT answer, the TLS handshake, the websocket upgrade, the
    /// master's first message.
    pub handshake_timeout: Duration,
    /// How often the agent pings the master.
    pub ping_interval: Duration,
    /// No frame from the master for this long means it is gone.
    pub read_deadline: Duration,
    /// How long the close handshake may take when the agent stops.
    pub close_timeout: Duration,
    /// Largest message (and frame) accepted from the master; larger ones drop the link
    /// before their payload is read.
    pub max_message_size: usize,
}

/// The master's own message limit.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 128 << 20;

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(15),
            read_deadline: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl LinkSettings {
    fn websocket(&self) -> WebSocketConfig {
        let mut ws = WebSocketConfig::default();
        // An idle agent holds one link: a small read buffer keeps it small; messages
        // grow it as needed, up to the limits.
        ws.read_buffer_size = 16 * 1024;
        ws.write_buffer_size = 0;
        // Every send is flushed before the next, so the buffer holds at most one message.
        ws.max_write_buffer_size = self.max_message_size.saturating_add(64 * 1024);
        ws.max_message_size = Some(self.max_message_size);
        ws.max_frame_size = Some(self.max_message_size);
        ws
    }
}

/// Everything fixed for one configuration generation. Build a new one when the
/// configuration changes: its TLS client configuration (and so its session cache) is new.
#[derive(Clone, Debug)]
pub struct Target {
    /// The checked configuration.
    pub config: Config,
    /// `None` when TLS is off.
    pub tls: Option<TlsClient>,
    /// Proxy settings.
    pub proxy: ProxyEnv,
    /// Limits.
    pub settings: LinkSettings,
}

impl Target {
    /// Builds the TLS client configuration for `config`. The message limit is the
    /// configuration's `max_message_size`, whatever `settings` says.
    ///
    /// # Errors
    /// rustls refused the configuration (e.g. the client certificate).
    pub fn new(config: Config, proxy: ProxyEnv, mut settings: LinkSettings) -> Result<Target, TlsSetupError> {
        let tls = config.tls.as_ref().map(TlsClient::new).transpose()?;
        settings.max_message_size = config.max_message_size;
        Ok(Target { config, tls, proxy, settings })
    }

    /// `host:port` as dialed, IPv6 bracketed.
    pub fn authority(&self) -> String {
        authority(&self.config.master_host, self.config.master_port)
    }

    /// The websocket URL of `/agents` for this agent.
    pub fn agents_url(&self, reconnect: bool) -> String {
        let c = &self.config;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("id", &c.agent_id)
            .append_pair("version", env!("CARGO_PKG_VERSION"))
            .append_pair("resource_pool", &c.resource_pool)
            .append_pair("reconnect", if reconnect { "true" } else { "false" })
            .append_pair("hostname", &hostname())
            .finish();
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}/agents?{query}", self.authority())
    }
}

/// What was reached and how it was verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The address the TCP connection went to (the proxy's, when tunnelled).
    pub address: SocketAddr,
    /// The proxy tunnelled through, if any.
    pub proxy: Option<String>,
    /// TLS details; `None` when TLS is off.
    pub tls: Option<TlsInfo>,
}

/// What the TLS handshake settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// Protocol version, e.g. `TLSv1_3`.
    pub version: String,
    /// SHA-256 of the master's leaf certificate.
    pub fingerprint: Fingerprint,
    /// The name the certificate was verified against.
    pub verified_name: String,
    /// Whether the session was resumed from one made earlier under the same
    /// [`Target`] (so its certificate was verified then, not re-verified now).
    pub resumed: bool,
}

/// A registered link to the master.
pub struct Link {
    ws: WebSocketStream<Stream>,
    peer: Peer,
    options: MasterSetAgentOptions,
    settings: LinkSettings,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("peer", &self.peer).finish_non_exhaustive()
    }
}

/// Dials the master, verifies it, upgrades to a websocket and registers.
///
/// `reconnect` says whether this agent registered with the master before (the master
/// then expects it to reattach its containers).
///
/// # Errors
/// Every stage has its own [`LinkError`]; a certificate the verifier refused carries the
/// verifier's full explanation.
pub async fn connect(target: &Target, reconnect: bool) -> Result<Link, LinkError> {
    let s = &target.settings;
    let (tcp, address, proxy) = dial(target).await?;
    let (stream, tls) = match &target.tls {
        None => (Stream::Plain(tcp), None),
        Some(client) => {
            let name = target.config.server_name();
            let verified_name = name.to_str().into_owned();
            let tls = match timeout(s.handshake_timeout, client.connect(name, tcp)).await {
                Err(_) => {
                    return Err(LinkError::Timeout { stage: "TLS handshake", address, after: s.handshake_timeout })
                }
                Ok(Err(error)) => return Err(LinkError::Tls { address, error }),
                Ok(Ok(tls)) => tls,
            };
            let (_, conn) = tls.get_ref();
            let info = TlsInfo {
                version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
                fingerprint: conn
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| Fingerprint::of(c))
                    .unwrap_or(Fingerprint([0; 32])),
                verified_name,
                resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            };
            (Stream::Tls(tls), Some(info))
        }
    };

    let client_cert = target.config.tls.as_ref().is_some_and(|t| t.client_identity.is_some());
    let url = target.agents_url(reconnect);
    let mut request = url.as_str().into_client_request().map_err(|e| LinkError::Protocol {
        address,
        what: format!("cannot build the upgrade request for {url}: {e}"),
    })?;
    if let Ok(agent) = format!("det-agent/{}", env!("CARGO_PKG_VERSION")).parse() {
        request.headers_mut().insert("User-Agent", agent);
    }
    let upgrade = tokio_tungstenite::client_async_with_config(request, stream, Some(s.websocket()));
    let mut ws = match timeout(s.handshake_timeout, upgrade).await {
        Err(_) => return Err(LinkError::Timeout { stage: "websocket upgrade", address, after: s.handshake_timeout }),
        Ok(Err(error)) => return Err(LinkError::upgrade(address, error, client_cert)),
        Ok(Ok((ws, _response))) => ws,
    };

    let options = match timeout(s.handshake_timeout, first_message(&mut ws)).await {
        Err(_) => {
            return Err(LinkError::Timeout {
                stage: "the master's MasterSetAgentOptions",
                address,
                after: s.handshake_timeout,
            })
        }
        Ok(Err(what)) if what.contains(PAST_RECONNECT) => return Err(LinkError::PastReconnect { message: what }),
        Ok(Err(what)) => return Err(LinkError::Protocol { address, what }),
        Ok(Ok(options)) => options,
    };
    let started = ToMaster::AgentStarted(AgentStarted::for_this_node(&target.config.resource_pool));
    match timeout(s.handshake_timeout, ws.send(Message::text(started.encode()))).await {
        Err(_) => {
            return Err(LinkError::Timeout { stage: "sending AgentStarted", address, after: s.handshake_timeout })
        }
        Ok(Err(e)) => return Err(LinkError::Protocol { address, what: format!("cannot send AgentStarted: {e}") }),
        Ok(Ok(())) => {}
    }
    Ok(Link { ws, peer: Peer { address, proxy: proxy.map(|p| p.to_string()), tls }, options, settings: *s })
}

/// TCP to the master, or to the proxy and through its tunnel.
async fn dial(target: &Target) -> Result<(TcpStream, SocketAddr, Option<&proxy::Proxy>), LinkError> {
    let c = &target.config;
    let s = &target.settings;
    let proxy = target.proxy.proxy_for(target.tls.is_some(), &c.master_host, c.master_port);
    let (host, port) = match proxy {
        Some(p) => (p.host.clone(), p.port),
        None => (c.master_host.to_string(), c.master_port),
    };
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let resolved = tokio::net::lookup_host((host.as_str(), port)).await.map(|a| a.collect());
            match resolved {
                Ok(addrs) => addrs,
                Err(source) => return Err(LinkError::Resolve { host, proxy: proxy.is_some(), source }),
            }
        }
    };
    let mut failures = Vec::new();
    for address in addrs {
        let mut tcp = match timeout(s.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                failures.push((address, e.to_string()));
                continue;
            }
            Err(_) => {
                failures.push((address, format!("timed out after {:?}", s.connect_timeout)));
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        if let Some(p) = proxy {
            match timeout(s.handshake_timeout, p.connect(&mut tcp, &target.authority())).await {
                Ok(Ok(())) => {}
                Ok(Err(what)) => return Err(LinkError::Proxy { what }),
                Err(_) => {
                    return Err(LinkError::Proxy {
                        what: format!("proxy {p} did not answer CONNECT within {:?}", s.handshake_timeout),
                    })
                }
            }
        }
        return Ok((tcp, address, proxy));
    }
    Err(LinkError::Connect { target: format!("{host}:{port}"), proxy: proxy.is_some(), failures })
}

/// Reads until the master's first message, which must be `MasterSetAgentOptions`.
async fn first_message(ws: &mut WebSocketStream<Stream>) -> Result<MasterSetAgentOptions, String> {
    loop {
        match ws.next().await {
            None => return Err("the master closed the connection before sending MasterSetAgentOptions".to_owned()),
            Some(Err(e)) => return Err(format!("reading the master's first message: {e}")),
            Some(Ok(Message::Text(text))) => {
                return match FromMaster::decode(&text)? {
                    FromMaster::SetAgentOptions(options) => Ok(options),
                    FromMaster::Shutdown { err_msg } => {
                        Err(format!("the master sent AgentShutdown: {}", crate::text::escape(&err_msg)))
                    }
                    other => {
                        Err(format!("expected MasterSetAgentOptions first, got {}", crate::text::escape(other.kind())))
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                return Err(format!(
                    "the master closed the websocket before registering: {}",
                    crate::text::escape(&reason)
                ));
            }
            Some(Ok(_)) => {} // pings and pongs
        }
    }
}

impl Link {
    /// What was reached and how it was verified.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The master's `MasterSetAgentOptions`.
    pub fn options(&self) -> &MasterSetAgentOptions {
        &self.options
    }

    /// Keeps the link alive: pings every `ping_interval`, gives up after `read_deadline`
    /// without a frame, hands the master's messages to `inbound` and sends what arrives
    /// on `outbound`.
    ///
    /// `inbound`'s capacity is the buffer between the master and a slow application:
    /// while it has room the link keeps reading, so pings are answered at once; when it is
    /// full the link stops reading (TCP backpressure) rather than buffering without bound,
    /// and the read deadline is paused, since the wait is the application's, not the
    /// master's. When `stop` completes, closes the websocket (bounded by
    /// `close_timeout`) and returns [`Ended::Stopped`] with its output.
    pub async fn run<S>(
        mut self,
        inbound: &mpsc::Sender<FromMaster>,
        outbound: &mut mpsc::Receiver<ToMaster>,
        stop: impl Future<Output = S>,
    ) -> Ended<S> {
        let s = self.settings;
        tokio::pin!(stop);
        let mut ping = tokio::time::interval_at(Instant::now() + s.ping_interval, s.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_frame = Instant::now();
        let mut pending: Option<FromMaster> = None;
        let mut outbound_open = true;
        loop {
            tokio::select! {
                biased;
                why = &mut stop => {
                    self.close().await;
                    return Ended::Stopped(why);
                }
                permit = inbound.reserve(), if pending.is_some() => {
                    if let (Ok(permit), Some(message)) = (permit, pending.take()) {
                        permit.send(message);
                    } else {
                        pending = None; // nobody listens: drop, as the daemon would
                    }
                    // Time spent waiting on the application is not the master's silence.
                    last_frame = Instant::now();
                }
                frame = self.ws.next(), if pending.is_none() => {
                    last_frame = Instant::now();
                    match frame {
                        None => return Ended::Failed("the connection closed without a websocket close".to_owned()),
                        Some(Err(e)) => return Ended::Failed(describe_ws_error(&e, &s)),
                        Some(Ok(Message::Text(text))) => match FromMaster::decode(&text) {
                            Ok(FromMaster::Shutdown { err_msg }) => {
                                self.close().await;
                                return Ended::MasterShutdown { err_msg };
                            }
                            Ok(message) => pending = Some(message),
                            Err(what) => tracing::warn!(%what, "ignoring a message from the master"),
                        },
                        Some(Ok(Message::Ping(_))) => {
                            // tungstenite queued the pong; send it now, not on the next read.
                            if let Err(e) = timeout(s.handshake_timeout, self.ws.flush()).await.unwrap_or(Ok(())) {
                                return Ended::Failed(describe_ws_error(&e, &s));
                            }
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = match frame {
                                Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                                None => (None, String::new()),
                            };
                            // Finish the close handshake politely; the master is leaving anyway.
                            let _ = timeout(s.close_timeout, self.ws.flush()).await;
                            return Ended::MasterClosed { code, reason };
                        }
                        Some(Ok(_)) => {} // pongs and binary frames: liveness only
                    }
                }
                message = outbound.recv(), if outbound_open => match message {
                    Some(message) => {
                        match timeout(s.handshake_timeout, self.ws.send(Message::text(message.encode()))).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Ended::Failed(describe_ws_error(&e, &s)),
                            Err(_) => return Ended::Failed(format!("a send to the master took over {:?}", s.handshake_timeout)),
                        }
                    }
                    None => outbound_open = false,
                },
                _ = ping.tick() => {
                    match timeout(s.handshake_timeout, self.ws.send(Message::Ping(Default::default()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Ended::Failed(describe_ws_error(&e, &s)),
                        Err(_) => return Ended::Failed(format!("a ping to the master took over {:?}", s.handshake_timeout)),
                    }
                }
                _ = sleep_until(last_frame + s.read_deadline), if pending.is_none() => {
                    return Ended::Silent { after: s.read_deadline };
                }
            }
        }
    }

    /// Sends a close frame and waits (bounded) for the master's answer.
    async fn close(&mut self) {
        let limit = self.settings.close_timeout;
        let _ = timeout(limit, async {
            let frame = CloseFrame { code: CloseCode::Normal, reason: "agent stopping".into() };
            if self.ws.close(Some(frame)).await.is_err() {
                return;
            }
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}

fn describe_ws_error(e: &tungstenite::Error, s: &LinkSettings) -> String {
    use tungstenite::error::CapacityError;
    match e {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => format!(
            "the master sent a message of {size} bytes, over the limit of {max_size} (max_message_size); dropped before reading it"
        ),
        tungstenite::Error::Protocol(p) => format!("the master broke the websocket protocol: {p}"),
        tungstenite::Error::Io(io) => format!("connection error: {io}"),
        other => format!("websocket error: {other} (limit {} bytes per message)", s.max_message_size),
    }
}

/// `host:port`, IPv6 bracketed.
pub fn authority(host: &Host, port: u16) -> String {
    match host {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        other => format!("{other}:{port}"),
    }
}

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
