//! TLS handshakes between two in-memory connections, with no sockets and no runtime:
//! what the benchmarks measure, so that only the TLS state machines are counted.

use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::ServerName;

use super::{fixtures, server_config};
use crate::config::{PinnedCerts, Trust};
use crate::tls::{self, AnchorSource, Anchors, MasterVerifier, NameSource};

/// The verifiers compared by the benchmarks, by label: rustls's stock
/// `WebPkiServerVerifier` and each det-agent mode, all able to accept the fixture
/// master's chain (`master.pem`) for `localhost`.
pub fn verifiers() -> Vec<(&'static str, Arc<dyn ServerCertVerifier>)> {
    let provider = tls::provider();
    let roots = || {
        let mut roots = RootCertStore::empty();
        roots.add(fixtures::certs("root-ca.pem").remove(0)).expect("fixture root is a valid anchor");
        roots
    };
    let pinned = |file: &str| -> Arc<dyn ServerCertVerifier> {
        let mut certs = fixtures::certs(file);
        certs.truncate(1);
        let pinned = PinnedCerts { path: fixtures::path(file), certs, store_entry: None };
        Arc::new(
            MasterVerifier::new(&Trust::Pinned(pinned), NameSource::DialedHost, provider.clone()).remembering(false),
        )
    };
    // The fixture root as if installed in the host's trust store.
    let anchors = || {
        let mut anchors = Anchors::empty();
        anchors.add(&fixtures::certs("root-ca.pem")[0], AnchorSource::HostStore("the fixture root".to_owned()));
        anchors
    };
    let stock = WebPkiServerVerifier::builder_with_provider(Arc::new(roots()), provider.clone())
        .build()
        .expect("stock verifier builds with a non-empty root store");
    vec![
        ("stock_webpki", stock),
        ("ca", Arc::new(MasterVerifier::ca_mode(anchors(), provider.clone()).remembering(false))),
        ("ca_remembered", Arc::new(MasterVerifier::ca_mode(anchors(), provider.clone()))),
        ("pinned_chain", pinned("root-ca.pem")),
        ("pinned_exact", pinned("master.pem")),
        ("skip_verify", Arc::new(MasterVerifier::dangerous_unverified(provider))),
    ]
}

/// A client with `verifier` and resumption off, so every handshake is a full one.
pub fn client(verifier: Arc<dyn ServerCertVerifier>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

/// A server with the fixture master identity and no session cache or tickets.
pub fn server() -> Arc<ServerConfig> {
    let (chain, key) = fixtures::identity("master");
    let mut config = (*server_config(chain, key, None).expect("fixture identity is valid")).clone();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Arc::new(config)
}

/// Moves TLS records between a new client and server connection until both have
/// finished the handshake with `localhost`.
///
/// # Errors
/// Either side failed the handshake.
pub fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> Result<(), rustls::Error> {
    let name = ServerName::try_from("localhost").expect("valid name");
    let mut client = ClientConnection::new(client.clone(), name)?;
    let mut server = ServerConnection::new(server.clone())?;
    let mut buf = Vec::with_capacity(8192);
    while client.is_handshaking() || server.is_handshaking() {
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).map_err(|e| rustls::Error::General(e.to_string()))?;
        }
        server.read_tls(&mut &buf[..]).map_err(|e| rustls::Error::General(e.to_string()))?;
        server.process_new_packets()?;
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).map_err(|e| rustls::Error::General(e.to_string()))?;
        }
        client.read_tls(&mut &buf[..]).map_err(|e| rustls::Error::General(e.to_string()))?;
        client.process_new_packets()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_benchmarked_verifier_completes_a_handshake() {
        let server = server();
        for (label, verifier) in verifiers() {
            handshake(&client(verifier), &server).unwrap_or_else(|e| panic!("{label}: {e}"));
        }
    }
}
