//! A test double of the Determined master, for `det-agent demo`, the tests and the
//! benches. Never used by the agent's own code paths.
//!
//! It binds the address it is given (port 0 picks a free one) and reports what each
//! connection did as [`Event`]s, so tests wait on events instead of sleeping.

pub mod fixtures;
pub mod in_memory;

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::x509::Fingerprint;

/// What happened on one connection to the dev master.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

/// A running dev master. Dropping it stops it.
pub struct DevMaster {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl DevMaster {
    /// Serves TLS with `config` on `bind` (use port 0 for a free port).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn start(bind: SocketAddr, config: Arc<ServerConfig>) -> std::io::Result<DevMaster> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let (stop, mut stopped) = oneshot::channel();
        let acceptor = TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stopped => return,
                    accepted = listener.accept() => match accepted {
                        Ok(conn) => conn,
                        Err(err) => { tracing::warn!(%err, "dev master: accept failed"); continue; }
                    },
                };
                let acceptor = acceptor.clone();
                let events = events_tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let (_, conn) = tls.get_ref();
                            let event = Event::Handshake {
                                sni: conn.server_name().map(str::to_owned),
                                client_cert: conn
                                    .peer_certificates()
                                    .and_then(|c| c.first())
                                    .map(|c| Fingerprint::of(c)),
                                version: conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
                            };
                            let _ = events.send(event);
                            // Hold the connection until the client is done with it.
                            let mut sink = [0u8; 1024];
                            while matches!(tls.read(&mut sink).await, Ok(n) if n > 0) {}
                        }
                        Err(err) => {
                            let _ = events.send(Event::HandshakeFailed { error: err.to_string() });
                        }
                    }
                });
            }
        });
        Ok(DevMaster { addr, events, stop: Some(stop), task })
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

    /// The next connection event; `None` once the server has stopped.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for DevMaster {
    fn drop(&mut self) {
        self.task.abort();
    }
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
