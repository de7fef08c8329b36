//! The verifier as [`super::TlsClient`] hands it to rustls: the decision stays the
//! [`MasterVerifier`]'s; what rustls cannot carry (the explained refusal, the
//! certificates an acceptance relied on) reaches the handshake's caller through
//! task-local slots, since rustls resumes a session only with the very verifier object
//! that made it and the verifier cannot be replaced per connection.

use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::{DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::rejection::Rejection;
use super::relied::ReliedOn;
use super::verifier::{MasterVerifier, SigResult};

tokio::task_local! {
    /// Where [`Recording`] leaves a refusal for the handshake running in this task.
    pub(super) static REJECTION: std::cell::RefCell<Option<Box<Rejection>>>;
    /// Where [`Recording`] leaves what an acceptance relied on, likewise.
    pub(super) static RELIED_ON: std::cell::RefCell<Option<Vec<ReliedOn>>>;
}

/// The [`MasterVerifier`] as [`super::TlsClient`] hands it to rustls: the decision is
/// the verifier's; a refusal goes to rustls as the error that sends the matching alert
/// (so the master's log says why: unknown_ca, certificate_expired, bad_certificate, …),
/// and the full [`Rejection`] goes to the handshake's caller through [`REJECTION`]. An
/// acceptance leaves the certificates it relied on in [`RELIED_ON`].
#[derive(Debug)]
pub(super) struct Recording(pub Arc<MasterVerifier>);

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self.0.verify(end_entity, intermediates, server_name, now) {
            Ok(verified) => {
                // Outside a TlsClient handshake nobody asked what was relied on.
                let _ = RELIED_ON.try_with(|slot| *slot.borrow_mut() = Some(verified.into_relied_on()));
                Ok(ServerCertVerified::assertion())
            }
            Err(rejection) => {
                let error = rejection.certificate_error();
                // Outside a TlsClient handshake nobody asked for the explanation.
                let _ = REJECTION.try_with(|slot| *slot.borrow_mut() = Some(rejection));
                Err(Error::InvalidCertificate(error))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> SigResult {
        self.0.tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> SigResult {
        self.0.tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
