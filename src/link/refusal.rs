//! What the master means when it refuses the websocket upgrade. Its errors are HTTP
//! answers with a JSON body `{"message": "…"}`, written by echo's error handler
//! (`master/internal/api/error.go`, `JSONErrorHandler`): 403 `Forbidden` when it requires
//! a client certificate and none was presented, 500 with the error's text otherwise
//! (`master/internal/rm/agentrm/agents.go`, `HandleWebsocketConnection`).

use std::fmt;

use super::error::{LinkError, SaidIn};
use super::protocol::is_past_reconnect;
use crate::text::{escape, quoted};

/// Largest refusal body read (the master's are one short JSON object).
pub(super) const MAX_BODY: usize = 64 * 1024;

/// Longest part of a refusal's text shown.
const SHOWN: usize = 512;

/// Why the master refused the upgrade, read from its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// 403 over TLS without a client certificate: the master's agent resource manager has
    /// `require_authentication` set.
    ClientCertificateRequired,
    /// The master has no resource pool by the name this agent asked for.
    UnknownPool {
        /// The pool asked for.
        pool: String,
    },
    /// The master holds a live connection from an agent with this ID.
    AlreadyConnected {
        /// The ID.
        agent_id: String,
    },
    /// Anything else, with the master's words.
    Other {
        /// The status.
        status: u16,
        /// The `message` of a JSON body, else the body's text; at most 512 characters.
        said: String,
    },
}

/// What this agent sent, to explain the master's answer.
pub(super) struct Asked<'a> {
    pub agent_id: &'a str,
    pub resource_pool: &'a str,
    pub tls: bool,
    pub client_cert: bool,
}

/// Reads the master's refusal of the upgrade: its status and body (at most [`MAX_BODY`]).
pub(super) fn read(address: std::net::SocketAddr, status: u16, body: &[u8], asked: &Asked<'_>) -> LinkError {
    let text = String::from_utf8_lossy(body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_else(|| text.trim().to_owned());
    if is_past_reconnect(&message) {
        return LinkError::PastReconnect { said_in: SaidIn::UpgradeAnswer };
    }
    let refusal = if status == 403 && asked.tls && !asked.client_cert {
        Refusal::ClientCertificateRequired
    } else if message.starts_with("cannot find specified resource pool") {
        let pool = if asked.resource_pool.is_empty() { "default" } else { asked.resource_pool };
        Refusal::UnknownPool { pool: pool.to_owned() }
    } else if message.contains("websocket already connected") {
        Refusal::AlreadyConnected { agent_id: asked.agent_id.to_owned() }
    } else {
        Refusal::Other { status, said: message.chars().take(SHOWN).collect() }
    };
    LinkError::Upgrade { address, status, refusal }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ClientCertificateRequired => f.write_str(
                "Forbidden: the master requires agents to present a client certificate (require_authentication in its \
                 agent resource manager) and this agent presented none; set security.tls.client_cert and \
                 security.tls.client_key to a certificate and key issued by the CA the master trusts for agents (its \
                 client_ca)",
            ),
            Refusal::UnknownPool { pool } => write!(
                f,
                "the master has no resource pool named {} (resource_pool); set resource_pool to one of the pools in \
                 the master's resource_pools (`det resource-pool list` shows them), or leave it unset for the \
                 master's default pool",
                quoted(pool)
            ),
            Refusal::AlreadyConnected { agent_id } => write!(
                f,
                "the master already holds a live connection from an agent with the ID {}: either another node uses \
                 the same agent_id (give each node its own), or the master has not yet noticed that this agent's \
                 previous connection dropped (it does within 60 s, its pong wait; det-agent tries again)",
                quoted(agent_id)
            ),
            Refusal::Other { status, said } => {
                if said.is_empty() {
                    f.write_str("(no explanation in the answer)")?;
                } else {
                    write!(f, "{}", escape(said))?;
                }
                match status {
                    404 => f.write_str("; a web server other than the master answers there: check master_host and master_port"),
                    400 => f.write_str("; the request did not arrive as a websocket upgrade: a proxy in front of the master may drop the Upgrade header"),
                    403 => f.write_str("; something refuses this agent: a proxy's rules, or a master that requires another client certificate"),
                    _ => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked<'static> {
        Asked { agent_id: "node-1", resource_pool: "gpu", tls: true, client_cert: false }
    }

    fn read_one(status: u16, body: &str) -> LinkError {
        read(([127, 0, 0, 1], 8443).into(), status, body.as_bytes(), &asked())
    }

    #[test]
    fn reads_the_masters_refusals() {
        let past = read_one(500, "{\"message\":\"agent is past reconnect period, it must restart\"}\n");
        assert!(matches!(past, LinkError::PastReconnect { said_in: SaidIn::UpgradeAnswer }), "{past}");
        let forbidden = read_one(403, r#"{"message":"Forbidden"}"#);
        assert!(
            matches!(&forbidden, LinkError::Upgrade { status: 403, refusal: Refusal::ClientCertificateRequired, .. }),
            "{forbidden}"
        );
        assert!(forbidden.to_string().contains("set security.tls.client_cert"), "{forbidden}");
        let pool = read_one(500, r#"{"message":"cannot find specified resource pool gpu for agent node-1"}"#);
        assert!(pool.to_string().contains("no resource pool named \"gpu\""), "{pool}");
        let taken = read_one(500, r#"{"message":"agent: websocket already connected"}"#);
        assert!(matches!(&taken, LinkError::Upgrade { refusal: Refusal::AlreadyConnected { .. }, .. }), "{taken}");
        // Anything else: the master's words, escaped and bounded.
        let other = read_one(502, &format!("<html>\u{1b}[2J{}</html>", "x".repeat(5000)));
        let text = other.to_string();
        assert!(text.contains("HTTP 502: <html>\\x1b[2J"), "{text}");
        assert!(text.len() < 800, "{text}");
        // Our own words never count as the master's.
        let ours = read_one(500, r#"{"message":"the master says this agent is past its reconnect period"}"#);
        assert!(matches!(ours, LinkError::Upgrade { .. }));
    }
}
