//! A test double of the Determined master, for `det-agent demo`, the tests and the
//! benches. Never used by the agent's own code paths.
//!
//! It binds the address it is given (port 0 picks a free one) and reports what each
//! connection did as [`Event`]s, so tests wait on events instead of sleeping. It speaks
//! TLS or plain HTTP, serves the agent websocket on `/agents` and records
//! `POST /task-logs` batches, as Fluent Bit sends them.
//!
//! On `/agents` it follows the real master's agent lifecycle, so that a test passing here
//! means something there; each step names the Determined file it mirrors:
//!
//! - refusals in the master's order and words, as echo's JSON bodies (`agents.go`,
//!   `api/error.go`): 400 for a request that is not a websocket upgrade, 403 `Forbidden`
//!   without a client certificate when it requires one, 500 for a bad `reconnect`, a
//!   connected ID (`agent: websocket already connected`, the first agent stays), a
//!   `reconnect=true` from an agent it does not hold (`agent is past reconnect period, it
//!   must restart`), an empty ID and an unknown resource pool;
//! - the reconnect wait (`agent_reconnect_wait`, 25 s by default, [`Options`]): a started
//!   agent that drops is held that long, reused whatever `reconnect` says, then forgotten;
//!   with a state file, across a dev master restart, the wait counting from the start;
//! - `AgentShutdown` with the real `ErrMsg` when a held agent comes back with other devices
//!   or another pool (`agent.go`, `agent_state.go`);
//! - pings every 15 s, a read deadline only pongs extend (60 s), and the close the master
//!   sends: code 1000, reason `close called` (`master/pkg/ws/ws.go`);
//! - the agent's messages decoded as the master decodes them: an unknown name, which
//!   panics the real master, drops the connection as its death would and is reported as
//!   [`Event::ProtocolViolation`]; so are the shapes it would fail on.

mod agents;
mod events;
pub mod fixtures;
mod http;
pub mod in_memory;
mod registry;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::link::protocol::{Container, FromMaster, SignalContainer, StartContainer, State};
use crate::x509::Fingerprint;

pub use events::Event;

/// How the dev master treats agents; change it while running with
/// [`DevMaster::set_behaviour`]. Each connection reads it when it starts.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// After `AgentStarted`, go silent: no reads, no pongs, no pings.
    pub mute_after_register: bool,
    /// Raw bytes written after `AgentStarted`, bypassing websocket framing (to send
    /// oversized or malformed frames).
    pub after_register_raw: Vec<u8>,
    /// Text messages sent after `AgentStarted`.
    pub after_register: Vec<String>,
    /// Ping the agent this often (the master's 15 s, the default); `None`: never.
    pub ping_interval: Option<Duration>,
    /// No pong for this long drops the agent (the master's `pongWait`, 60 s).
    pub pong_wait: Duration,
    /// Answer refusals slowly: the head at once, then the body a few bytes at a time,
    /// this far apart.
    pub slow_answers: Option<Duration>,
    /// Accept `/agents` requests and never answer them.
    pub silent_upgrade: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            mute_after_register: false,
            after_register_raw: Vec::new(),
            after_register: Vec::new(),
            ping_interval: Some(Duration::from_secs(15)),
            pong_wait: Duration::from_secs(60),
            slow_answers: None,
            silent_upgrade: false,
        }
    }
}

/// The master's configuration, as far as agents see it; fixed for a dev master's life.
#[derive(Debug, Clone)]
pub struct Options {
    /// The resource pools (`resource_pools[].pool_name`); default `["default"]`.
    pub pools: Vec<String>,
    /// How long a dropped agent is held (`resource_pools[].agent_reconnect_wait`, 25 s).
    pub agent_reconnect_wait: Duration,
    /// Where started agents are kept across restarts (the real master's database).
    pub state_file: Option<PathBuf>,
    /// Refuse `/agents` with 403 to TLS clients without a certificate
    /// (`require_authentication` of the agent resource manager). Certificates that are
    /// presented are verified by TLS, as [`server_config_if_given`] sets up.
    pub require_authentication: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pools: vec!["default".to_owned()],
            agent_reconnect_wait: Duration::from_secs(25),
            state_file: None,
            require_authentication: false,
        }
    }
}

struct Shared {
    events: mpsc::UnboundedSender<Event>,
    behaviour: Mutex<Behaviour>,
    options: Options,
    agents: Mutex<registry::Registry>,
    /// Set when the dev master stops: its timers and state file are left alone after.
    stopped: AtomicBool,
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

    fn lock_agents(&self) -> MutexGuard<'_, registry::Registry> {
        self.agents.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
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
        DevMaster::serve_with(bind, config, behaviour, Options::default()).await
    }

    /// Like [`serve`](Self::serve), with the master's `options`. Agents in the state file
    /// are held from now, each for the reconnect wait.
    ///
    /// # Errors
    /// The address cannot be bound, or the state file exists and cannot be read.
    pub async fn serve_with(
        bind: SocketAddr,
        config: Option<Arc<ServerConfig>>,
        behaviour: Behaviour,
        options: Options,
    ) -> std::io::Result<DevMaster> {
        let restored = match &options.state_file {
            Some(path) => registry::load(path)?,
            None => registry::Registry::default(),
        };
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
        let shared = Arc::new(Shared {
            events: events_tx,
            behaviour: Mutex::new(behaviour),
            options,
            agents: Mutex::new(restored),
            stopped: AtomicBool::new(false),
            info,
        });
        registry::arm_restored(&shared);
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

    /// Whether it holds agent `id` (connected, or waiting for it to reconnect).
    pub fn holds(&self, id: &str) -> bool {
        self.shared.lock_agents().agents.contains_key(id)
    }

    /// Assigns a new container to agent `id`, as the scheduler would, and sends it
    /// `StartContainer`; its ID, or `None` when the agent is not connected and started.
    pub fn start_container(&self, id: &str) -> Option<String> {
        let mut registry = self.shared.lock_agents();
        let held = registry.agents.get_mut(id)?;
        let devices = held.devices.clone()?;
        let (_, commands) = held.session.as_ref()?;
        let mut container = Container::new(random_uuid(), State::Assigned);
        container.devices = devices.into_iter().take(1).collect();
        container.description = "dev-master-task".to_owned();
        let spec = serde_json::json!({"TaskType": "COMMAND", "PullSpec": {"ForcePull": false, "Registry": null}});
        // A json! value always serializes.
        let spec = crate::link::RawJson::of(&spec).unwrap_or_default();
        let start = FromMaster::StartContainer(StartContainer { container: container.clone(), spec });
        commands.send(registry::Command::Send(start)).ok()?;
        let container_id = container.id.clone();
        held.containers.insert(container_id.clone(), container);
        registry::save(&self.shared, &registry);
        drop(registry);
        self.shared.emit(Event::Sent {
            id: id.to_owned(),
            kind: "StartContainer".into(),
            container_id: container_id.clone(),
        });
        Some(container_id)
    }

    /// Sends agent `id` a SIGKILL for `container_id`, as the master kills a task's
    /// container; `false` when the agent is not connected.
    pub fn kill_container(&self, id: &str, container_id: &str) -> bool {
        let registry = self.shared.lock_agents();
        let Some((_, commands)) = registry.agents.get(id).and_then(|h| h.session.as_ref()) else { return false };
        let kill = FromMaster::SignalContainer(SignalContainer { container_id: container_id.to_owned(), signal: 9 });
        let sent = commands.send(registry::Command::Send(kill)).is_ok();
        drop(registry);
        if sent {
            self.shared.emit(Event::Sent {
                id: id.to_owned(),
                kind: "SignalContainer".into(),
                container_id: container_id.to_owned(),
            });
        }
        sent
    }

    /// Stops accepting, drops every connection (as a crashing master would) and waits for
    /// the accept loop to end, so the port can be bound again. The state file keeps what
    /// it held.
    pub async fn stop(mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let _ = (&mut self.task).await;
    }
}

impl Drop for DevMaster {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
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
    shared: &Arc<Shared>,
    stopped: watch::Receiver<bool>,
) {
    let Some(acceptor) = acceptor else {
        return http_exchange(tcp, shared, None, stopped).await;
    };
    match acceptor.accept(tcp).await {
        Ok(tls) => {
            let (_, conn) = tls.get_ref();
            let client_cert = conn.peer_certificates().and_then(|c| c.first()).map(|c| Fingerprint::of(c));
            let presented = client_cert.is_some();
            shared.emit(Event::Handshake {
                sni: conn.server_name().map(str::to_owned),
                client_cert,
                version: conn.protocol_version().and_then(|v| v.as_str()).unwrap_or("unknown").to_owned(),
            });
            http_exchange(tls, shared, Some(presented), stopped).await;
        }
        Err(err) => shared.emit(Event::HandshakeFailed { error: err.to_string() }),
    }
}

/// One request: `/agents` becomes a websocket session, `POST /task-logs` is recorded.
async fn http_exchange<S>(
    mut stream: S,
    shared: &Arc<Shared>,
    client_cert: Option<bool>,
    stopped: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = match http::read_head(&mut stream).await {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return,
    };
    match (head.method.as_str(), head.path.as_str()) {
        (_, "/agents") => agents::serve(stream, head, shared, client_cert, stopped).await,
        ("GET", "/info") => {
            shared.emit(Event::Request { method: head.method.clone(), path: head.path.clone(), status: 200 });
            http::respond_json(&mut stream, 200, &shared.info.to_string(), None).await;
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
/// a certificate issued by one of those CAs (refused in the TLS handshake otherwise; the
/// real master's way is [`server_config_if_given`]).
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

/// A server configuration as the real master sets its TLS listener up when
/// `require_authentication` is on (`master/internal/core.go`, `startServers`): a client
/// certificate is verified against `client_ca` when presented (`VerifyClientCertIfGiven`),
/// and a client without one is refused later, by `/agents` (403, [`Options`]).
///
/// # Errors
/// The key does not match the certificate, or the CA certificates are unusable.
pub fn server_config_if_given(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Vec<CertificateDer<'static>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = crate::tls::provider();
    let mut roots = RootCertStore::empty();
    for ca in client_ca {
        roots.add(ca)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let builder = ServerConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    Ok(Arc::new(builder.with_client_cert_verifier(verifier).with_single_cert(chain, key)?))
}
