//! The TLS client that dials the master.
//!
//! A [`TlsClient`] holds one rustls `ClientConfig` per trust configuration, with its own
//! empty session cache: a TLS session negotiated under one set of trust settings can
//! never be resumed under another, because changing the settings means building a new
//! client. When the verifier refuses, rustls sends the master the TLS alert that matches
//! the cause, and the verifier's explained [`Rejection`] is kept for the caller of that
//! handshake in a task-local slot (rustls resumes a session only with the very verifier
//! that made it, so the verifier cannot be replaced per connection). An acceptance
//! reaches the caller the same way, as the certificates the verifier relied on; a
//! resumed session, which the verifier does not see, relies on what the client's last
//! full handshake relied on.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::time_provider::TimeProvider;
use rustls::version::{TLS12, TLS13};
use rustls::{AlertDescription, ClientConfig};
use rustls_pki_types::{ServerName, UnixTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::recording::{Recording, REJECTION, RELIED_ON};
use super::rejection::Rejection;
use super::relied::ReliedOn;
use super::verifier::{MasterVerifier, NameSource};
use crate::config::{ClientIdentity, TlsConfig};

/// The client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; their fields name themselves.
#[non_exhaustive]
pub enum TlsSetupError {
    /// rustls refused the protocol versions or the client certificate.
    #[error("cannot set up TLS{}: {source}", match .client_cert { Some(p) => format!(" with client certificate {}", p.display()), None => String::new() })]
    Rustls { client_cert: Option<std::path::PathBuf>, source: rustls::Error },
}

/// Dials the master over TLS 1.2 or 1.3 with the configured verifier (and client
/// certificate). Cheap to clone: clones share the session cache.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    verifier: Arc<MasterVerifier>,
    client_cert: bool,
    /// What the last full handshake relied on, for the sessions resumed from it.
    last_relied_on: Arc<Mutex<Vec<ReliedOn>>>,
}

impl TlsClient {
    /// The client for `tls`: the master verifier for its trust mode and key pins, and
    /// the client certificate when one is configured.
    ///
    /// # Errors
    /// rustls rejects the client certificate or key.
    pub fn new(tls: &TlsConfig) -> Result<TlsClient, TlsSetupError> {
        let provider = super::provider();
        let source = if tls.master_cert_name.is_some() { NameSource::MasterCertName } else { NameSource::DialedHost };
        let verifier =
            MasterVerifier::new(&tls.trust, source, provider.clone()).with_key_pins(tls.master_key_pins.clone());
        let client = TlsClient::with_verifier(verifier, tls.client_identity.as_ref(), provider)?;
        // Bare skip_verify: a resumed session skips the verifier, and with it the warning
        // that the master is not verified, which must be logged for every connection,
        // with the certificate presented this time. Resumption saves nothing worth that.
        let unverified = matches!(tls.trust, crate::config::Trust::SkipVerify) && tls.master_key_pins.is_empty();
        Ok(if unverified { client.without_resumption() } else { client })
    }

    /// Like [`new`](Self::new), with a verifier you built (custom anchors in tests and
    /// benches).
    ///
    /// # Errors
    /// rustls rejects the client certificate or key.
    pub fn with_verifier(
        verifier: MasterVerifier,
        identity: Option<&ClientIdentity>,
        provider: Arc<CryptoProvider>,
    ) -> Result<TlsClient, TlsSetupError> {
        let err = |source| TlsSetupError::Rustls { client_cert: identity.map(|i| i.cert_path.clone()), source };
        let verifier = Arc::new(verifier);
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&TLS13, &TLS12])
            .map_err(err)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recording(verifier.clone())));
        let config = match identity {
            Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key()).map_err(err)?,
            None => builder.with_no_client_auth(),
        };
        Ok(TlsClient {
            config: Arc::new(config),
            verifier,
            client_cert: identity.is_some(),
            last_relied_on: Arc::default(),
        })
    }

    /// The same client with its clock replaced: every certificate's validity, and the
    /// expiry warnings computed from [`now`](Self::now), are judged at the time `time`
    /// gives. For tests and simulations (a certificate's last days, a renewal) only; the
    /// agent always uses the system clock.
    pub fn with_time(mut self, time: Arc<dyn TimeProvider>) -> TlsClient {
        let mut config = (*self.config).clone();
        config.time_provider = time;
        self.config = Arc::new(config);
        self
    }

    /// The time this client verifies certificates at: the system clock, unless replaced
    /// by [`with_time`](Self::with_time). `None` when the clock cannot be read.
    pub fn now(&self) -> Option<UnixTime> {
        self.config.time_provider.current_time()
    }

    /// The same client with session resumption off, so every handshake is a full one
    /// (bare skip_verify, so its warning is never skipped; and for measuring what a first
    /// connect, or one after a master restart, costs).
    pub fn without_resumption(mut self) -> TlsClient {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        self.config = Arc::new(config);
        self
    }

    /// The verifier.
    pub fn verifier(&self) -> &MasterVerifier {
        &self.verifier
    }

    /// Runs the TLS handshake over `io`, verifying the master as `name`.
    ///
    /// # Errors
    /// The verifier's [`Rejection`], or why the handshake failed otherwise, in words.
    pub async fn connect<IO>(&self, name: ServerName<'static>, io: IO) -> Result<TlsStream<IO>, HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.handshake(name, io).await.map(|(stream, _)| stream)
    }

    /// Like [`connect`](Self::connect), and also says which certificates the agent
    /// relies on for this connection (see [`super::Verified::relied_on`]). A resumed
    /// session was verified by an earlier full handshake of this client (or a clone):
    /// it relies on what the most recent full handshake relied on.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn handshake<IO>(
        &self,
        name: ServerName<'static>,
        io: IO,
    ) -> Result<(TlsStream<IO>, Vec<ReliedOn>), HandshakeError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let connector = TlsConnector::from(self.config.clone());
        let handshake = async {
            let outcome = connector.connect(name, io).await;
            let rejection = REJECTION.with(|slot| slot.borrow_mut().take());
            let relied_on = RELIED_ON.with(|slot| slot.borrow_mut().take());
            (outcome, rejection, relied_on)
        };
        let handshake = RELIED_ON.scope(RefCell::new(None), handshake);
        match REJECTION.scope(RefCell::new(None), handshake).await {
            (Ok(stream), _, relied_on) => {
                let mut last = self.last_relied_on.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
                let relied_on = match relied_on {
                    Some(fresh) if !resumed => {
                        last.clone_from(&fresh);
                        fresh
                    }
                    _ => last.clone(),
                };
                Ok((stream, relied_on))
            }
            (Err(_), Some(rejection), _) => Err(HandshakeError::Rejected(rejection)),
            (Err(error), None, _) => Err(HandshakeError::from_io(error, self.client_cert)),
        }
    }
}

/// Why a TLS handshake (or, under TLS 1.3, the first read after it) failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The verifier refused the master's certificate; the rejection explains it.
    Rejected(Box<Rejection>),
    /// The master's handshake signature does not verify with its certificate's key.
    KeyNotProven,
    /// The master ended the handshake with a TLS alert.
    Alert {
        /// The alert's name as the TLS RFCs write it, e.g. `certificate_required`.
        alert: String,
        /// Whether this agent presented a client certificate.
        client_cert: bool,
    },
    /// What answered is not speaking TLS.
    NotTls,
    /// The master and det-agent share no TLS version or cipher suite.
    Incompatible,
    /// The connection broke during the handshake.
    Io(io::Error),
    /// Another TLS failure, described by rustls.
    Other(String),
}

impl HandshakeError {
    /// Classifies an I/O error from tokio-rustls (or from a websocket read over TLS).
    pub fn from_io(error: io::Error, client_cert: bool) -> HandshakeError {
        let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
            return HandshakeError::Io(error);
        };
        match tls {
            rustls::Error::AlertReceived(alert) => HandshakeError::Alert { alert: alert_name(*alert), client_cert },
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => HandshakeError::KeyNotProven,
            rustls::Error::InvalidMessage(_) => HandshakeError::NotTls,
            rustls::Error::PeerIncompatible(_) => HandshakeError::Incompatible,
            other => HandshakeError::Other(crate::text::escape(&other.to_string()).into_owned()),
        }
    }

    /// One line for a list of attempts: the rejection's kind, or the first line of the
    /// explanation (the full explanation is given once, elsewhere).
    pub fn one_line(&self) -> String {
        match self {
            HandshakeError::Rejected(rejection) => format!("certificate rejected ({})", rejection.kind()),
            other => other.to_string().lines().next().unwrap_or_default().to_owned(),
        }
    }

    /// The verifier's rejection, when that is what failed.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            HandshakeError::Rejected(rejection) => Some(rejection),
            _ => None,
        }
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Rejected(rejection) => rejection.fmt(f),
            HandshakeError::KeyNotProven => f.write_str(
                "the master did not prove it holds the private key of the certificate it presented (its handshake signature does not verify with that certificate's key) — either something is posing as the master with a copy of its certificate, or the master's key file does not belong to its certificate",
            ),
            HandshakeError::Alert { alert, client_cert } => {
                write!(f, "the master refused the TLS handshake with the alert {alert}")?;
                let refusing_certificates = matches!(
                    alert.as_str(),
                    "certificate_required"
                        | "bad_certificate"
                        | "unknown_ca"
                        | "certificate_expired"
                        | "certificate_unknown"
                        | "unsupported_certificate"
                        | "access_denied"
                        | "handshake_failure"
                );
                match (refusing_certificates, client_cert) {
                    (true, false) => f.write_str("; the master requires a client certificate: set security.tls.client_cert and security.tls.client_key"),
                    (true, true) => f.write_str("; the master refused this agent's client certificate (security.tls.client_cert): check that a CA the master trusts issued it and that it is still valid"),
                    (false, _) => Ok(()),
                }
            }
            HandshakeError::NotTls => f.write_str(
                "the answer is not TLS; is this port the master's TLS port (8443 by default), and is TLS on at the master?",
            ),
            HandshakeError::Incompatible => f.write_str(
                "the master offers no TLS version or cipher suite det-agent accepts (TLS 1.2 and 1.3 with modern ciphers)",
            ),
            HandshakeError::Io(error) => write!(f, "the connection broke during the TLS handshake: {error}"),
            HandshakeError::Other(text) => write!(f, "TLS handshake failed: {text}"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// An alert's name as the TLS RFCs write it: `UnknownCA` → `unknown_ca`,
/// `UnknownPSKIdentity` → `unknown_psk_identity`.
fn alert_name(alert: AlertDescription) -> String {
    let Some(camel) = alert.as_str() else { return format!("{}", u8::from(alert)) };
    let chars: Vec<char> = camel.chars().collect();
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let after_lower = chars[i - 1].is_ascii_lowercase();
            let ends_acronym =
                chars[i - 1].is_ascii_uppercase() && chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if after_lower || ends_acronym {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_are_named_as_the_rfcs_write_them() {
        for (alert, name) in [
            (AlertDescription::UnknownCA, "unknown_ca"),
            (AlertDescription::CertificateRequired, "certificate_required"),
            (AlertDescription::UnknownPSKIdentity, "unknown_psk_identity"),
            (AlertDescription::BadRecordMac, "bad_record_mac"),
            (AlertDescription::Unknown(200), "200"),
        ] {
            assert_eq!(alert_name(alert), name);
        }
    }
}
