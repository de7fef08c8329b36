//! Every way a connection attempt fails, classified for the reconnect schedule
//! ([`Failure`], see [`crate::backoff`]): what a retry costs the master, and whether
//! retrying soon can help.

use crate::backoff::Failure;
use crate::dial::{DialError, ProxyError};
use crate::link::{LinkError, Refusal};
use crate::tls::HandshakeError;

/// TLS alerts by which a master refuses this agent's certificate: an operator must act.
const CERTIFICATE_ALERTS: [&str; 8] = [
    "bad_certificate",
    "unsupported_certificate",
    "certificate_revoked",
    "certificate_expired",
    "certificate_unknown",
    "unknown_ca",
    "access_denied",
    "certificate_required",
];

/// How `error` counts for the schedule.
///
/// - [`Failure::Down`]: nothing reached a master process. Its name does not resolve, no
///   address accepts TCP (refused, unreachable, timed out), the proxy cannot be reached,
///   or the proxy says it cannot reach the master (5xx: 502, 503, 504) or does not answer
///   in time. A retry costs the master nothing.
/// - [`Failure::Refused`]: a certificate refused either way, the master asking for a
///   client certificate or naming a pool it does not have, HTTP 401/403 on `/agents`, or
///   a proxy refusing the tunnel itself (407 wants credentials, 403 and other 4xx forbid
///   the destination). An operator must act; retried at the cap.
/// - [`Failure::Failing`]: everything else. A master process answered and failed (TLS
///   broken, HTTP error, a stage timed out, the protocol broken, the connection cut), or a
///   proxy misbehaved: backed off.
///
/// A proxy that refuses CONNECT is not "master down": its refusal is a decision about
/// this agent, which an operator changes. Only its 5xx answers, by which it reports that
/// the master cannot be reached, count as the master being down.
pub fn classify(error: &LinkError) -> Failure {
    match error {
        LinkError::Dial(failure) => match &failure.error {
            DialError::Resolve { .. } | DialError::Unreachable { .. } => Failure::Down,
            DialError::Proxy { error, .. } => proxy(error),
            DialError::Tls { error, .. } => handshake(error),
            DialError::TlsTimeout { .. } => Failure::Failing,
        },
        LinkError::Tls { error, .. } => handshake(error),
        LinkError::Upgrade { status, refusal, .. } => match refusal {
            Refusal::ClientCertificateRequired | Refusal::UnknownPool { .. } => Failure::Refused,
            _ if matches!(status, 401 | 403) => Failure::Refused,
            _ => Failure::Failing,
        },
        LinkError::Timeout { .. }
        | LinkError::PastReconnect { .. }
        | LinkError::Broken { .. }
        | LinkError::Protocol { .. } => Failure::Failing,
    }
}

fn handshake(error: &HandshakeError) -> Failure {
    match error {
        HandshakeError::Rejected(_) | HandshakeError::KeyNotProven => Failure::Refused,
        HandshakeError::Alert { alert, .. } if CERTIFICATE_ALERTS.contains(&alert.as_str()) => Failure::Refused,
        _ => Failure::Failing,
    }
}

fn proxy(error: &ProxyError) -> Failure {
    match error {
        ProxyError::Refused { status: 500..=599, .. } | ProxyError::Timeout { .. } => Failure::Down,
        ProxyError::Refused { .. } => Failure::Refused,
        _ => Failure::Failing,
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;
    use crate::dial::DialFailure;
    use crate::link::{SaidIn, Stage, Violation};

    fn dial(error: DialError) -> LinkError {
        LinkError::Dial(Box::new(DialFailure { attempts: Vec::new(), error }))
    }

    fn proxy_refused(status: u16) -> LinkError {
        let error = ProxyError::Refused { proxy: "p".into(), target: "m:8443".into(), status, reason: String::new() };
        dial(DialError::Proxy { proxy: "p".into(), error })
    }

    fn alert(name: &str) -> LinkError {
        let address: SocketAddr = "10.0.0.5:8443".parse().unwrap();
        LinkError::Tls { address, error: HandshakeError::Alert { alert: name.into(), client_cert: false } }
    }

    #[test]
    fn every_failure_has_its_kind() {
        let address: SocketAddr = "10.0.0.5:8443".parse().unwrap();
        let after = Duration::from_secs(45);
        let upgrade = |status, refusal| LinkError::Upgrade { address, status, refusal };
        let other = |status| Refusal::Other { status, said: String::new() };
        let cases = [
            (
                dial(DialError::Resolve {
                    host: "m".into(),
                    via_proxy: false,
                    cause: crate::dial::ResolveError::Failed(std::io::Error::other("x")),
                }),
                Failure::Down,
            ),
            (dial(DialError::Unreachable { target: "m".into(), via_proxy: true }), Failure::Down),
            (proxy_refused(502), Failure::Down),
            (proxy_refused(504), Failure::Down),
            (dial(DialError::Proxy { proxy: "p".into(), error: ProxyError::Timeout { after } }), Failure::Down),
            (proxy_refused(407), Failure::Refused),
            (proxy_refused(403), Failure::Refused),
            (
                dial(DialError::Proxy { proxy: "p".into(), error: ProxyError::DataAfterAnswer { proxy: "p".into() } }),
                Failure::Failing,
            ),
            (dial(DialError::TlsTimeout { address, after }), Failure::Failing),
            (dial(DialError::Tls { address, error: HandshakeError::KeyNotProven }), Failure::Refused),
            (dial(DialError::Tls { address, error: HandshakeError::NotTls }), Failure::Failing),
            (alert("certificate_required"), Failure::Refused),
            (alert("unknown_ca"), Failure::Refused),
            (alert("internal_error"), Failure::Failing),
            (upgrade(403, Refusal::ClientCertificateRequired), Failure::Refused),
            (upgrade(500, Refusal::UnknownPool { pool: "gpu".into() }), Failure::Refused),
            (upgrade(403, other(403)), Failure::Refused),
            (upgrade(401, other(401)), Failure::Refused),
            (upgrade(500, Refusal::AlreadyConnected { agent_id: "a".into() }), Failure::Failing),
            (upgrade(502, other(502)), Failure::Failing),
            (upgrade(404, other(404)), Failure::Failing),
            (LinkError::Timeout { stage: Stage::Upgrade, address, after }, Failure::Failing),
            (LinkError::PastReconnect { said_in: SaidIn::UpgradeAnswer }, Failure::Failing),
            (LinkError::Broken { address, stage: Stage::Options, error: std::io::Error::other("x") }, Failure::Failing),
            (LinkError::Protocol { address, violation: Violation::ClosedBeforeOptions }, Failure::Failing),
        ];
        for (error, kind) in cases {
            assert_eq!(classify(&error), kind, "{error}");
        }
    }
}
