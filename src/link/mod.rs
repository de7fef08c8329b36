//! The master link: one verified websocket to the master's `/agents` endpoint.
//!
//! [`Target`] holds everything fixed for one configuration generation (the checked
//! config, its [`Dialer`] with the TLS client and proxy settings, the limits).
//! [`connect`] dials it (see [`crate::dial`]), upgrades to the websocket and registers
//! (`MasterSetAgentOptions` in, `AgentStarted` out). [`Link::run`] then keeps the link
//! alive until the master goes away, the link breaks, or the caller stops it.

mod error;
pub mod protocol;

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

use crate::config::Config;
use crate::dial::{Connection, Dialer, Stream, Timeouts};
use crate::tls::{TlsClient, TlsSetupError};

pub use crate::dial::{Peer, ProxyEnv, TlsInfo};
pub use error::{Ended, LinkError};
pub use protocol::{AgentStarted, Device, FromMaster, MasterInfo, MasterSetAgentOptions, ToMaster};

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

pub use crate::config::DEFAULT_MAX_MESSAGE_SIZE;

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
/// configuration changes: its TLS client (and so its session cache) is new.
#[derive(Clone, Debug)]
pub struct Target {
    /// The checked configuration.
    pub config: Config,
    /// How the master is reached.
    pub dialer: Dialer,
    /// Limits.
    pub settings: LinkSettings,
}

impl Target {
    /// Builds the TLS client for `config`. The message limit is the configuration's
    /// `max_message_size`, whatever `settings` says.
    ///
    /// # Errors
    /// rustls refused the configuration (e.g. the client certificate).
    pub fn new(config: Config, proxy: ProxyEnv, settings: LinkSettings) -> Result<Target, TlsSetupError> {
        let tls = config.tls.as_ref().map(TlsClient::new).transpose()?;
        Ok(Target::with_client(config, tls, proxy, settings))
    }

    /// Like [`new`](Self::new), with a TLS client you built (`None` when TLS is off).
    pub fn with_client(config: Config, tls: Option<TlsClient>, proxy: ProxyEnv, mut settings: LinkSettings) -> Target {
        settings.max_message_size = config.max_message_size;
        let timeouts = Timeouts { connect: settings.connect_timeout, handshake: settings.handshake_timeout };
        let dialer = Dialer::new(&config, tls, proxy, timeouts);
        Target { config, dialer, settings }
    }

    /// `host:port` as dialed, IPv6 bracketed.
    pub fn authority(&self) -> String {
        self.dialer.authority()
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
        let scheme = if self.dialer.tls() { "wss" } else { "ws" };
        format!("{scheme}://{}/agents?{query}", self.authority())
    }
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
    let Connection { stream, peer, .. } = target.dialer.dial().await.map_err(LinkError::Dial)?;
    let address = peer.address;
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
    let started =
        ToMaster::AgentStarted(AgentStarted::answering(&options, protocol::this_node(), &target.config.resource_pool));
    match timeout(s.handshake_timeout, ws.send(Message::text(started.encode()))).await {
        Err(_) => {
            return Err(LinkError::Timeout { stage: "sending AgentStarted", address, after: s.handshake_timeout })
        }
        Ok(Err(e)) => return Err(LinkError::Protocol { address, what: format!("cannot send AgentStarted: {e}") }),
        Ok(Ok(())) => {}
    }
    Ok(Link { ws, peer, options, settings: *s })
}

/// Reads until the master's first message, which must be `MasterSetAgentOptions`.
async fn first_message(ws: &mut WebSocketStream<Stream>) -> Result<MasterSetAgentOptions, String> {
    loop {
        match ws.next().await {
            None => return Err("the master closed the connection before sending MasterSetAgentOptions".to_owned()),
            Some(Err(e)) => return Err(format!("reading the master's first message: {e}")),
            Some(Ok(Message::Text(text))) => {
                return match FromMaster::decode(&text).map_err(|e| e.to_string())? {
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
                            Err(_) => return Ended::Failed(format!("a send to the master took over {}", crate::text::seconds(s.handshake_timeout))),
                        }
                    }
                    None => outbound_open = false,
                },
                _ = ping.tick() => {
                    match timeout(s.handshake_timeout, self.ws.send(Message::Ping(Default::default()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Ended::Failed(describe_ws_error(&e, &s)),
                        Err(_) => return Ended::Failed(format!("a ping to the master took over {}", crate::text::seconds(s.handshake_timeout))),
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

fn hostname() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
