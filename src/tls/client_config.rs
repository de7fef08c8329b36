//! Builds the rustls `ClientConfig` for a trust configuration.
//!
//! Every call builds a new `ClientConfig`, with its own empty session cache. A TLS
//! session negotiated under one set of trust settings can therefore never be resumed
//! under another: changing the settings means building a new config.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::version::{TLS12, TLS13};
use rustls::ClientConfig;

use super::verifier::{MasterVerifier, NameSource};
use crate::config::{ClientIdentity, TlsConfig};

/// The client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; their fields (path, option, origin, …) name themselves.
#[non_exhaustive]
pub enum TlsSetupError {
    /// rustls refused the protocol versions or the client certificate.
    #[error("cannot set up TLS{}: {source}", match .client_cert { Some(p) => format!(" with client certificate {}", p.display()), None => String::new() })]
    Rustls { client_cert: Option<std::path::PathBuf>, source: rustls::Error },
}

/// The client configuration for `tls`: TLS 1.2 or 1.3, the master verifier for its trust
/// mode and key pins, and the client certificate when one is configured.
///
/// # Errors
/// rustls rejects the client certificate or key.
pub fn client_config(tls: &TlsConfig) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let provider = super::provider();
    let source = if tls.master_cert_name.is_some() { NameSource::MasterCertName } else { NameSource::DialedHost };
    let verifier = MasterVerifier::new(&tls.trust, source, provider.clone()).with_key_pins(tls.master_key_pins.clone());
    client_config_with(verifier, tls.client_identity.as_ref(), provider)
}

/// Like [`client_config`], with a verifier you built (custom roots in tests and benches).
///
/// # Errors
/// rustls rejects the client certificate or key.
pub fn client_config_with(
    verifier: MasterVerifier,
    identity: Option<&ClientIdentity>,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let err = |source| TlsSetupError::Rustls { client_cert: identity.map(|i| i.cert_path.clone()), source };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key()).map_err(err)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
