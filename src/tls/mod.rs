//! Everything TLS: the crypto provider, the master verifier and the client configuration
//! built from a [`TlsConfig`](crate::config::TlsConfig).
//!
//! Every rustls object here is built with [`provider()`] passed explicitly; nothing relies
//! on a process-wide default provider.

mod client_config;
mod rejection;
mod verifier;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use client_config::{client_config, client_config_with, TlsSetupError};
pub use rejection::{Rejection, RejectionKind};
pub use verifier::{MasterVerifier, NameSource};

/// The crypto provider every det-agent TLS object uses: *ring*, with its default
/// cipher suites, key exchange groups and signature algorithms.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}

/// Finds the verifier's typed rejection inside an error returned by a handshake, however
/// it was wrapped (`io::Error` from tokio-rustls, or `rustls::Error`).
pub fn rejection_of<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Rejection> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(found) = rejection_of(inner) {
                    return Some(found);
                }
            }
        }
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other))) =
            e.downcast_ref::<rustls::Error>()
        {
            return other.0.downcast_ref::<Rejection>();
        }
        if let Some(rejection) = e.downcast_ref::<Rejection>() {
            return Some(rejection);
        }
        current = e.source();
    }
    None
}
