//! What `/healthz` answers: registered or not, and why, in one line.

use std::fmt;
use std::time::Duration;

use crate::text::escape;

/// Whether the agent is registered with the master, as the daemon last said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Registered: `/healthz` answers 200 `registered with MASTER as AGENT_ID`.
    Registered {
        /// The master's `host:port` as dialed.
        master: String,
        /// This agent's ID.
        agent_id: String,
    },
    /// Not registered: `/healthz` answers 503 `not registered: REASON`.
    NotRegistered {
        /// Why, as the daemon would log it. Only its first line is shown, escaped.
        reason: String,
    },
}

impl Health {
    /// The state before the first attempt has ended.
    pub fn starting() -> Health {
        Health::NotRegistered { reason: "no connection attempt has finished yet".to_owned() }
    }

    /// Waiting `delay` before the next attempt, after `cause` (a failed attempt or a drop).
    pub fn waiting(delay: Duration, cause: &dyn fmt::Display) -> Health {
        Health::NotRegistered { reason: format!("waiting {} before reconnecting: {cause}", seconds(delay)) }
    }

    /// Whether `/healthz` answers 200.
    pub fn is_registered(&self) -> bool {
        matches!(self, Health::Registered { .. })
    }
}

/// The `/healthz` line: one line, every character from the network or a certificate escaped.
impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Registered { master, agent_id } => {
                write!(f, "registered with {} as {}", escape(master), escape(agent_id))
            }
            Health::NotRegistered { reason } => {
                // Multi-line explanations (a certificate refusal) lead with their summary.
                let first = reason.lines().next().unwrap_or("");
                write!(f, "not registered: {}", escape(first.trim_end()))
            }
        }
    }
}

/// `12 s`, `0.4 s`: whole seconds from 1 s up, tenths below.
fn seconds(delay: Duration) -> String {
    let s = delay.as_secs_f64();
    if s < 1.0 {
        format!("{s:.1} s")
    } else {
        format!("{} s", s.round())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_escaped_line() {
        let registered = Health::Registered { master: "master.example.com:8443".into(), agent_id: "gpu-node-7".into() };
        assert_eq!(registered.to_string(), "registered with master.example.com:8443 as gpu-node-7");
        let cause = "TLS handshake with 10.0.0.5:8443 failed: master certificate rejected\n  verified name: x";
        let waiting = Health::waiting(Duration::from_millis(12_400), &cause);
        assert_eq!(
            waiting.to_string(),
            "not registered: waiting 12 s before reconnecting: TLS handshake with 10.0.0.5:8443 failed: master certificate rejected"
        );
        assert!(!waiting.is_registered());
        let hostile = Health::NotRegistered { reason: "closed: \u{1b}[2Jok\r\u{202e}".into() };
        assert_eq!(hostile.to_string(), "not registered: closed: \\x1b[2Jok\\x0d\\u202e");
        assert_eq!(
            Health::waiting(Duration::from_millis(400), &"x").to_string(),
            "not registered: waiting 0.4 s before reconnecting: x"
        );
        assert_eq!(Health::starting().to_string(), "not registered: no connection attempt has finished yet");
    }
}
