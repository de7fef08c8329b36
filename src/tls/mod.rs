//! Everything TLS: the crypto provider, the master verifier and the client that dials
//! with it, built from a [`TlsConfig`](crate::config::TlsConfig).
//!
//! Every rustls object here is built with [`provider()`] passed explicitly; nothing relies
//! on a process-wide default provider.

mod anchors;
mod client;
mod path;
mod rejection;
mod verifier;

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

pub use anchors::{AnchorLimits, AnchorProblem, AnchorProblemKind, AnchorSource, Anchors};
pub use client::{HandshakeError, TlsClient, TlsSetupError};
pub use rejection::{Rejection, RejectionKind};
pub use verifier::{MasterVerifier, NameSource, Verified};

/// The crypto provider every det-agent TLS object uses: *ring*, with its default
/// cipher suites, key exchange groups and signature algorithms.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}
