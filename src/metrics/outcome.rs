//! How a connection attempt ended and how a registered link dropped, as the bounded label
//! values the metrics carry: every value is a fixed word, never text from the network, so
//! a hostile master cannot mint new series.

use std::fmt;

use crate::dial::DialError;
use crate::link::{Ended, LinkError, Stage};
use crate::tls::{HandshakeError, RejectionKind};

/// How one connection attempt ended: `outcome` and, where it has one, `reason` of
/// `det_agent_connect_attempts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectOutcome {
    /// Verified (or accepted, as the trust mode says) and registered.
    Registered,
    /// The verifier refused the master's certificate.
    Rejected(RejectionKind),
    /// The TLS handshake failed other than by a refusal of the certificate.
    TlsError(TlsFailure),
    /// Name resolution or TCP connection failed, to the master or to the proxy.
    NetworkError(NetworkStage),
    /// The HTTP proxy refused or broke the tunnel.
    ProxyRefused,
    /// A stage did not finish in time.
    Timeout(TimeoutStage),
    /// The master answered the websocket upgrade with an HTTP status, by its class
    /// (`1` for 1xx … `5` for 5xx; anything else counts as `other`).
    UpgradeRefused(u16),
    /// The master says this agent is past its reconnect period; the daemon registers afresh.
    PastReconnect,
    /// The master spoke something other than the agent protocol.
    ProtocolError,
}

/// How a TLS handshake failed when the certificate itself was not refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The master did not prove it holds its certificate's key.
    KeyNotProven,
    /// The master sent a TLS alert (often: it wants a client certificate).
    Alert,
    /// What answered does not speak TLS.
    NotTls,
    /// No common TLS version or cipher suite.
    Incompatible,
    /// The connection broke during the handshake.
    Io,
    /// Anything else.
    Other,
}

/// Which network step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkStage {
    /// The master's name did not resolve.
    Resolve,
    /// No address of the master accepted a TCP connection.
    Connect,
    /// The proxy's name did not resolve.
    ProxyResolve,
    /// The proxy did not accept a TCP connection.
    ProxyConnect,
}

/// Which stage timed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutStage {
    /// The TLS handshake.
    TlsHandshake,
    /// The websocket upgrade.
    Upgrade,
    /// Registration: the master's `MasterSetAgentOptions`, or sending `AgentStarted`.
    Registration,
    /// A stage this version does not name.
    Other,
}

impl ConnectOutcome {
    /// Classifies a failed attempt.
    pub fn of(error: &LinkError) -> ConnectOutcome {
        match error {
            LinkError::Dial(failure) => match &failure.error {
                DialError::Resolve { via_proxy: false, .. } => ConnectOutcome::NetworkError(NetworkStage::Resolve),
                DialError::Resolve { via_proxy: true, .. } => ConnectOutcome::NetworkError(NetworkStage::ProxyResolve),
                DialError::Unreachable { via_proxy: false, .. } => ConnectOutcome::NetworkError(NetworkStage::Connect),
                DialError::Unreachable { via_proxy: true, .. } => {
                    ConnectOutcome::NetworkError(NetworkStage::ProxyConnect)
                }
                DialError::Proxy { .. } => ConnectOutcome::ProxyRefused,
                DialError::Tls { error, .. } => ConnectOutcome::of_handshake(error),
                DialError::TlsTimeout { .. } => ConnectOutcome::Timeout(TimeoutStage::TlsHandshake),
            },
            LinkError::Tls { error, .. } => ConnectOutcome::of_handshake(error),
            LinkError::Timeout { stage, .. } => ConnectOutcome::Timeout(match *stage {
                Stage::Upgrade => TimeoutStage::Upgrade,
                Stage::Options | Stage::Register => TimeoutStage::Registration,
            }),
            LinkError::Upgrade { status, .. } => ConnectOutcome::UpgradeRefused(*status),
            LinkError::PastReconnect { .. } => ConnectOutcome::PastReconnect,
            // A connection that broke after TLS, before registration: counted with the
            // protocol errors until this table has a label of its own for it.
            LinkError::Protocol { .. } | LinkError::Broken { .. } => ConnectOutcome::ProtocolError,
        }
    }

    fn of_handshake(error: &HandshakeError) -> ConnectOutcome {
        match error {
            HandshakeError::Rejected(rejection) => ConnectOutcome::Rejected(rejection.kind()),
            HandshakeError::KeyNotProven => ConnectOutcome::TlsError(TlsFailure::KeyNotProven),
            HandshakeError::Alert { .. } => ConnectOutcome::TlsError(TlsFailure::Alert),
            HandshakeError::NotTls => ConnectOutcome::TlsError(TlsFailure::NotTls),
            HandshakeError::Incompatible => ConnectOutcome::TlsError(TlsFailure::Incompatible),
            HandshakeError::Io(_) => ConnectOutcome::TlsError(TlsFailure::Io),
            _ => ConnectOutcome::TlsError(TlsFailure::Other),
        }
    }

    /// The `outcome` label.
    pub fn outcome(&self) -> &'static str {
        match self {
            ConnectOutcome::Registered => "registered",
            ConnectOutcome::Rejected(_) => "rejected",
            ConnectOutcome::TlsError(_) => "tls_error",
            ConnectOutcome::NetworkError(_) => "network_error",
            ConnectOutcome::ProxyRefused => "proxy_refused",
            ConnectOutcome::Timeout(_) => "timeout",
            ConnectOutcome::UpgradeRefused(_) => "upgrade_refused",
            ConnectOutcome::PastReconnect => "past_reconnect",
            ConnectOutcome::ProtocolError => "protocol_error",
        }
    }

    /// The `reason` label, for the outcomes that have one.
    pub fn reason(&self) -> Option<&'static str> {
        Some(match self {
            ConnectOutcome::Rejected(kind) => rejection_label(*kind),
            ConnectOutcome::TlsError(failure) => match failure {
                TlsFailure::KeyNotProven => "key_not_proven",
                TlsFailure::Alert => "alert",
                TlsFailure::NotTls => "not_tls",
                TlsFailure::Incompatible => "incompatible",
                TlsFailure::Io => "io",
                TlsFailure::Other => "other",
            },
            ConnectOutcome::NetworkError(stage) => match stage {
                NetworkStage::Resolve => "resolve",
                NetworkStage::Connect => "connect",
                NetworkStage::ProxyResolve => "proxy_resolve",
                NetworkStage::ProxyConnect => "proxy_connect",
            },
            ConnectOutcome::Timeout(stage) => match stage {
                TimeoutStage::TlsHandshake => "tls_handshake",
                TimeoutStage::Upgrade => "upgrade",
                TimeoutStage::Registration => "registration",
                TimeoutStage::Other => "other",
            },
            ConnectOutcome::UpgradeRefused(status) => match status / 100 {
                1 => "1xx",
                2 => "2xx",
                3 => "3xx",
                4 => "4xx",
                5 => "5xx",
                _ => "other",
            },
            ConnectOutcome::Registered
            | ConnectOutcome::ProxyRefused
            | ConnectOutcome::PastReconnect
            | ConnectOutcome::ProtocolError => return None,
        })
    }

    /// Every label pair the counter can take, so each series exists (at 0) from the first
    /// scrape: `increase()` and alerts then see the first failure of a kind, which a
    /// series born at 1 would hide.
    pub(super) fn all() -> Vec<ConnectOutcome> {
        let mut all = vec![ConnectOutcome::Registered];
        all.extend(REJECTION_KINDS.iter().map(|kind| ConnectOutcome::Rejected(*kind)));
        all.extend(
            [
                TlsFailure::KeyNotProven,
                TlsFailure::Alert,
                TlsFailure::NotTls,
                TlsFailure::Incompatible,
                TlsFailure::Io,
                TlsFailure::Other,
            ]
            .map(ConnectOutcome::TlsError),
        );
        all.extend(
            [NetworkStage::Resolve, NetworkStage::Connect, NetworkStage::ProxyResolve, NetworkStage::ProxyConnect]
                .map(ConnectOutcome::NetworkError),
        );
        all.push(ConnectOutcome::ProxyRefused);
        all.extend(
            [TimeoutStage::TlsHandshake, TimeoutStage::Upgrade, TimeoutStage::Registration, TimeoutStage::Other]
                .map(ConnectOutcome::Timeout),
        );
        // One status per class: the label is the class.
        all.extend([100, 200, 300, 400, 500, 0].map(ConnectOutcome::UpgradeRefused));
        all.extend([ConnectOutcome::PastReconnect, ConnectOutcome::ProtocolError]);
        all
    }
}

/// `outcome` and `reason` as they appear in the exposition.
impl fmt::Display for ConnectOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(reason) => write!(f, "{}/{reason}", self.outcome()),
            None => f.write_str(self.outcome()),
        }
    }
}

/// The verifier's kinds, in the order of [`RejectionKind`].
const REJECTION_KINDS: [RejectionKind; 11] = [
    RejectionKind::UnknownIssuer,
    RejectionKind::NotValidForName,
    RejectionKind::Expired,
    RejectionKind::NotYetValid,
    RejectionKind::NotForServerAuth,
    RejectionKind::CaUsedAsEndEntity,
    RejectionKind::InvalidChain,
    RejectionKind::BadSignature,
    RejectionKind::Malformed,
    RejectionKind::KeyPinMismatch,
    RejectionKind::Other,
];

/// The kind's snake_case name, as it serializes in `det-agent check --json`. Written out
/// (rather than read back from serde) so the label cannot fail; a unit test holds the two
/// equal.
fn rejection_label(kind: RejectionKind) -> &'static str {
    match kind {
        RejectionKind::UnknownIssuer => "unknown_issuer",
        RejectionKind::NotValidForName => "not_valid_for_name",
        RejectionKind::Expired => "expired",
        RejectionKind::NotYetValid => "not_yet_valid",
        RejectionKind::NotForServerAuth => "not_for_server_auth",
        RejectionKind::CaUsedAsEndEntity => "ca_used_as_end_entity",
        RejectionKind::InvalidChain => "invalid_chain",
        RejectionKind::BadSignature => "bad_signature",
        RejectionKind::Malformed => "malformed",
        RejectionKind::KeyPinMismatch => "key_pin_mismatch",
        RejectionKind::Other => "other",
    }
}

/// How a registered link ended: `reason` of `det_agent_link_drops_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkDrop {
    /// The agent closed it (shutdown, or a reload with `--reconnect-on-reload`).
    Agent,
    /// The master closed the websocket.
    MasterClosed,
    /// The master sent `AgentShutdown`.
    MasterShutdown,
    /// No frame arrived within the read deadline: the master or the path is gone.
    Silent,
    /// The connection or the protocol broke.
    Failed,
}

impl LinkDrop {
    /// Classifies how a link ended.
    pub fn of<S>(ended: &Ended<S>) -> LinkDrop {
        match ended {
            Ended::Stopped(_) => LinkDrop::Agent,
            Ended::MasterClosed { .. } => LinkDrop::MasterClosed,
            Ended::MasterShutdown { .. } => LinkDrop::MasterShutdown,
            Ended::Silent { .. } => LinkDrop::Silent,
            // The application falling behind counts as a failure until this table has a
            // label of its own for it.
            Ended::Failed(_) | Ended::Overflow { .. } => LinkDrop::Failed,
        }
    }

    /// The `reason` label.
    pub fn label(&self) -> &'static str {
        match self {
            LinkDrop::Agent => "agent",
            LinkDrop::MasterClosed => "master_closed",
            LinkDrop::MasterShutdown => "master_shutdown",
            LinkDrop::Silent => "silent",
            LinkDrop::Failed => "failed",
        }
    }

    pub(super) const ALL: [LinkDrop; 5] =
        [LinkDrop::Agent, LinkDrop::MasterClosed, LinkDrop::MasterShutdown, LinkDrop::Silent, LinkDrop::Failed];
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::*;

    #[test]
    fn rejection_labels_are_the_kinds_serde_names() {
        for kind in REJECTION_KINDS {
            let serde_name = serde_json::to_value(kind).unwrap();
            assert_eq!(serde_name, rejection_label(kind), "{kind:?}");
        }
    }

    #[test]
    fn every_outcome_has_a_distinct_label_pair() {
        let all = ConnectOutcome::all();
        let pairs: HashSet<_> = all.iter().map(|o| (o.outcome(), o.reason())).collect();
        assert_eq!(pairs.len(), all.len());
        assert_eq!(all.len(), 1 + 11 + 6 + 4 + 1 + 4 + 6 + 2);
        for o in &all {
            let labels = o.outcome().chars().chain(o.reason().unwrap_or("").chars());
            assert!(labels.into_iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{o}");
        }
    }

    fn other(status: u16) -> crate::link::Refusal {
        crate::link::Refusal::Other { status, said: String::new() }
    }

    fn dial(error: DialError) -> LinkError {
        LinkError::Dial(Box::new(crate::dial::DialFailure { attempts: Vec::new(), error }))
    }

    #[test]
    fn link_errors_are_classified_by_stage() {
        let address: SocketAddr = "10.0.0.5:8443".parse().unwrap();
        let after = Duration::from_secs(10);
        let cases = [
            (
                dial(DialError::Resolve {
                    host: "m".into(),
                    via_proxy: false,
                    cause: crate::dial::ResolveError::Failed(std::io::Error::other("x")),
                }),
                "network_error/resolve",
            ),
            (dial(DialError::Unreachable { target: "m".into(), via_proxy: true }), "network_error/proxy_connect"),
            (
                dial(DialError::Proxy { proxy: "p".into(), error: crate::dial::ProxyError::Timeout { after } }),
                "proxy_refused",
            ),
            (dial(DialError::TlsTimeout { address, after }), "timeout/tls_handshake"),
            (dial(DialError::Tls { address, error: HandshakeError::NotTls }), "tls_error/not_tls"),
            (LinkError::Timeout { stage: Stage::Upgrade, address, after }, "timeout/upgrade"),
            (LinkError::Timeout { stage: Stage::Register, address, after }, "timeout/registration"),
            (LinkError::Timeout { stage: Stage::Options, address, after }, "timeout/registration"),
            (LinkError::Upgrade { address, status: 403, refusal: other(403) }, "upgrade_refused/4xx"),
            (LinkError::Upgrade { address, status: 502, refusal: other(502) }, "upgrade_refused/5xx"),
            (LinkError::Upgrade { address, status: 999, refusal: other(999) }, "upgrade_refused/other"),
            (LinkError::PastReconnect { said_in: crate::link::SaidIn::UpgradeAnswer }, "past_reconnect"),
            (LinkError::Protocol { address, violation: crate::link::Violation::ClosedBeforeOptions }, "protocol_error"),
            (LinkError::Tls { address, error: HandshakeError::NotTls }, "tls_error/not_tls"),
            (LinkError::Tls { address, error: HandshakeError::KeyNotProven }, "tls_error/key_not_proven"),
        ];
        for (error, expected) in cases {
            assert_eq!(ConnectOutcome::of(&error).to_string(), expected, "{error}");
        }
    }

    #[test]
    fn link_ends_are_classified() {
        assert_eq!(LinkDrop::of(&Ended::<()>::Silent { after: Duration::from_secs(60) }), LinkDrop::Silent);
        assert_eq!(LinkDrop::of(&Ended::Stopped(())), LinkDrop::Agent);
        assert_eq!(
            LinkDrop::of(&Ended::<()>::MasterClosed { code: None, reason: String::new() }).label(),
            "master_closed"
        );
    }
}
