//! The crypto provider every det-agent TLS object uses, passed explicitly (never the
//! process-wide default). A leaf: the configuration checks a client key with it before
//! the TLS layer exists.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;

/// *ring*, with its default cipher suites, key exchange groups and signature algorithms.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}
