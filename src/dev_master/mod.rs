//! A test double of the Determined master, for `det-agent demo`, the tests and the
//! benches. Never used by the agent's own code paths.
//!
//! It binds the address it is given (port 0 picks a free one) and reports what each
//! connection did as [`Event`]s, so tests wait on events instead of sleeping. It speaks
//! TLS or plain HTTP, serves the agent websocket on `/agents` (options, `AgentStarted`,
//! pings; on request it refuses reconnects, goes mute or sends hostile frames) and
//! records `POST /task-logs` batches, as Fluent Bit sends them.

mod agents;
pub mod fixtures;
mod http;
pub mod in_memory;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::x509::Fingerprint;

/// What happened at the dev master. `det-agent dev-master` prints each as a JSON line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A TLS handshake completed.
    Handshake {
        /// The SNI the client sent, if any.
        sni: Option<String>,
        /// Fingerprint of the client certificate, if one was presented.
        client_cert: Option<Fingerprint>,
        /// Negotiated protocol version, e.g. `TLSv1_3`.
        version: String,
    },
    /// A TLS handshake failed on the server side (often: the client sent an alert).
    HandshakeFailed {
        /// The server's view of why.
        error: String,
    },
    /// An agent upgraded `/agents` to a websocket.
    AgentConnected {
        /// `id` from the query.
        id: String,
        /// `reconnect` from the query.
        reconnect: bool,
        /// `hostname` from the query.
        hostname: String,
        /// `version` from the query.
        version: String,
        /// `resource_pool` from the query.
        resource_pool: String,
    },
    /// A reconnecting agent was told it is past its reconnect period.
    RefusedReconnect {
        /// The agent.
        id: String,
    },
    /// The agent answered `MasterSetAgentOptions` with `AgentStarted`.
    AgentStarted {
        /// The agent.
        id: String,
        /// How many devices it reported.
        devices: usize,
        /// Its `ResourcePoolName`.
        resource_pool: String,
    },
    /// The agent answered a ping.
    Pong {
        /// The agent.
        id: String,
    },
    /// The agent sent another message.
    AgentMessage {
        /// The agent.
        id: String,
        /// The message's name.
        kind: String,
    },
    /// The agent's websocket ended.
    AgentGone {
        /// The agent.
        id: String,
        /// How it ended, e.g. `closed by the agent (code 1000)`.
        reason: String,
    },
    /// `POST /task-logs` delivered a batch.
    TaskLogs {
        /// `X-Fluent-Tag`, if sent.
        tag: Option<String>,
        /// Records in the batch (a JSON array, or one object).
        records: usize,
    },
    /// Any other request, and its answer.
    Request {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Status answered.
        status: u16,
    },
}

/// How the dev master treats agents; change it while running with
/// [`DevMaster::set_behaviour`]. Each connection reads it when it starts.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Answer `reconnect=true` with "agent is past reconnect period, it must restart".
    pub past_reconnect: bool,
    /// After `AgentStarted`, go silent: no reads, no pongs, no pings.
    pub mute_after_register: bool,
    /// Raw bytes written after `AgentStarted`, bypassing websocket framing (to send
    /// oversized or malformed frames).
    pub after_register_raw: Vec<u8>,
    /// Text messages sent after `AgentStarted`.
    pub after_register: Vec<String>,
    /// Ping the agent this often (the master pings every 15 s); `None`: never.
    pub ping_interval: Option<Duration>,
}

struct Shared {
    events: mpsc::UnboundedSender<Event>,
    behaviour: Mutex<Behaviour>,
    /// What `GET /info` answers and `MasterSetAgentOptions.MasterInfo` carries, with the
    /// real master's fields (Determined's aproto.MasterInfo, master/internal/core.go
    /// `getInfo`): a cluster ID and a master ID made at start.
    info: serde_json::Value,
}

impl Shared {
    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn behaviour(&self) -> Behaviour {
        self.behaviour.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

/// A running dev master. Dropping it stops it and drops every connection.
pub struct DevMaster {
    addr: SocketAddr,
    tls: bool,
    events: mpsc::UnboundedReceiver<Event>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl DevMaster {
    /// Serves TLS with `config` on `bind` (use port 0 for a free port).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(bind: SocketAddr, config: Arc<ServerConfig>) -> std::io::Result<DevMaster> {
        DevMaster::serve(bind, Some(config), Behaviour::default()).await
    }

    /// Serves on `bind`: TLS with `config`, plain HTTP without; agents treated as
    /// `behaviour` says.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn serve(
        bind: SocketAddr,
        config: Option<Arc<ServerConfig>>,
        behaviour: Behaviour,
    ) -> std::io::Result<DevMaster> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let info = serde_json::json!({
            "version": format!("{}-dev", env!("CARGO_PKG_VERSION")),
            "master_id": random_uuid(),
            "cluster_id": random_uuid(),
            "cluster_name": "det-agent dev master",
            "telemetry": {"enabled": false, "otel_enabled": false, "otel_endpoint": ""},
            "sso_providers": null,
        });
        let shared = Arc::new(Shared { events: events_tx, behaviour: Mutex::new(behaviour), info });
        let (stop, stopped) = watch::channel(false);
        let tls = config.is_some();
        let acceptor = config.map(TlsAcceptor::from);
        let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone(), stopped));
        Ok(DevMaster { addr, tls, events, shared, stop, task })
    }

    /// Serves a fixture identity (e.g. `"master"`) on 127.0.0.1 with a free port.
    ///
    /// # Errors
    /// The address cannot be bound, or the identity is unusable.
    pub async fn with_fixture(stem: &str) -> std::io::Result<DevMaster> {
        DevMaster::with_fixture_at(([127, 0, 0, 1], 0).into(), stem).await
    }

    /// Serves a fixture identity on `bind` (e.g. `[::1]:0`).
    ///
    /// # Errors
    /// The address cannot be bound, or the identity is unusable.
    pub async fn with_fixture_at(bind: SocketAddr, stem: &str) -> std::io::Result<DevMaster> {
        let (chain, key) = fixtures::identity(stem);
        let config = server_config(chain, key, None).map_err(std::io::Error::other)?;
        DevMaster::start(bind, config).await
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it answers at `GET /info` and sends as `MasterInfo`.
    pub fn info(&self) -> &serde_json::Value {
        &self.shared.info
    }

    /// Whether it serves TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Changes how connections from now on are treated.
    pub fn set_behaviour(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.shared.behaviour.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    }

    /// The next event; `None` once the server has stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next event if one is already waiting.
    pub fn try_next_event(&mut self) -> Option<Event> {
        self.events.try_recv().ok()
    }

    /// Stops accepting, drops every connection (as a crashing master would) and waits for
    /// the accept loop to end, so the port can be bound again.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for DevMaster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = stopped.wait_for(|s| *s) => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => { tracing::warn!(%err, "dev master: accept failed"); continue; }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let mut until_stopped = stopped.clone();
            tokio::select! {
                _ = until_stopped.wait_for(|s| *s) => {}
                _ = connection(tcp, acceptor, &shared, stopped) => {}
            }
        });
    }
}

async fn connection(
    tcp: tokio::net::TcpStream,
    acceptor: Option<TlsAcceptor>,
    shared: &Shared,
    stopped: watch::Receiver<bool>,
) {
    let Some(acceptor) = acceptor else {
        return http_exchange(tcp, shared, stopped).await;
    };
    match acceptor.accept(tcp).await {
        Ok(tls) => {
            let (_, conn) = tls.get_ref();
            shared.emit(Event::Handshake {
                sni: conn.server_name().map(str::to_owned),
                client_cert: conn.peer_certificates().and_then(|c| c.first()).map(|c| Fingerprint::of(c)),
                version: conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("unknown").to_owned(),
            });
            http_exchange(tls, shared, stopped).await;
        }
        Err(err) => shared.emit(Event::HandshakeFailed { error: err.to_string() }),
    }
}

/// One request: `/agents` becomes a websocket session, `POST /task-logs` is recorded.
async fn http_exchange<S>(mut stream: S, shared: &Shared, stopped: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = match http::read_head(&mut stream).await {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return,
    };
    match (head.method.as_str(), head.path.as_str()) {
        (_, "/agents") => agents::serve(stream, head, shared, stopped).await,
        ("GET", "/info") => {
            shared.emit(Event::Request { method: head.method.clone(), path: head.path.clone(), status: 200 });
            http::respond_json(&mut stream, 200, &shared.info.to_string()).await;
        }
        ("POST", "/task-logs") => {
            let (status, answer) = match http::read_body(&mut stream, &mut head).await {
                Ok(body) => match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(value) => {
                        let records = value.as_array().map_or(1, Vec::len);
                        shared.emit(Event::TaskLogs { tag: head.header("x-fluent-tag").map(str::to_owned), records });
                        (200, String::new())
                    }
                    Err(e) => (400, format!("task logs must be JSON: {e}")),
                },
                Err(refusal) => refusal,
            };
            if status != 200 {
                shared.emit(Event::Request { method: head.method.clone(), path: head.path.clone(), status });
            }
            http::respond(&mut stream, status, &answer).await;
        }
        (method, path) => {
            let status = if path == "/task-logs" { 405 } else { 404 };
            shared.emit(Event::Request { method: method.to_owned(), path: path.to_owned(), status });
            http::respond(&mut stream, status, "the dev master serves /agents, GET /info and POST /task-logs").await;
        }
    }
}

/// A random UUID (version 4), as the master makes its master and cluster IDs.
fn random_uuid() -> String {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 16];
    // The OS generator failing would leave zeros: still a well-formed ID for a test double.
    let _ = SystemRandom::new().fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = data_encoding::HEXLOWER.encode(&b);
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// A server configuration for the given identity; with `client_ca`, clients must present
/// a certificate issued by one of those CAs.
///
/// # Errors
/// The key does not match the certificate, or the CA certificates are unusable.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<Vec<CertificateDer<'static>>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = crate::tls::provider();
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(cas) => {
            let mut roots = RootCertStore::empty();
            for ca in cas {
                roots.add(ca)?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(chain, key)?))
}
