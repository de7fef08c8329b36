//! Everything TLS: the crypto provider, the master verifier and the client that dials
//! with it, built from a [`TlsConfig`](crate::config::TlsConfig).
//!
//! Every rustls object here is built with [`provider()`] passed explicitly; nothing relies
//! on a process-wide default provider.

mod anchors;
mod client;
mod path;
mod recording;
mod rejection;
mod relied;
mod verifier;

pub use anchors::{AnchorLimits, AnchorProblem, AnchorProblemKind, AnchorSource, Anchors};
pub use client::{HandshakeError, TlsClient, TlsSetupError};
pub use rejection::{Rejection, RejectionKind};
pub use relied::{issued_under, CertSource, ReliedOn, Role};
pub use rustls::time_provider::TimeProvider;
pub use verifier::{MasterVerifier, NameSource, Verified};

pub use crate::crypto::provider;
