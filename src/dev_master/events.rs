//! What happened at the dev master: one [`Event`] per step, which `det-agent dev-master`
//! prints as a JSON line and tests wait on.

use serde::Serialize;

use crate::x509::Fingerprint;

/// What happened at the dev master.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A TLS handshake completed.
    Handshake {
        /// The SNI the client sent, if any.
        sni: Option<String>,
        /// Fingerprint of the client certificate, if one was presented.
        client_cert: Option<Fingerprint>,
        /// Negotiated protocol version, e.g. `TLSv1_3`.
        version: String,
    },
    /// A TLS handshake failed on the server side (often: the client sent an alert).
    HandshakeFailed {
        /// The server's view of why.
        error: String,
    },
    /// The master refused an `/agents` request, as the real master would.
    Refused {
        /// `id` from the query.
        id: String,
        /// The HTTP status answered.
        status: u16,
        /// The `message` of the JSON body answered.
        message: String,
    },
    /// An agent upgraded `/agents` to a websocket.
    AgentConnected {
        /// `id` from the query.
        id: String,
        /// `reconnect` from the query.
        reconnect: bool,
        /// `hostname` from the query.
        hostname: String,
        /// `version` from the query.
        version: String,
        /// `resource_pool` from the query.
        resource_pool: String,
        /// Whether the master held this agent (waiting for it, or restored from the state
        /// file) and so reattaches it.
        held: bool,
    },
    /// The agent answered `MasterSetAgentOptions` with `AgentStarted`.
    AgentStarted {
        /// The agent.
        id: String,
        /// How many devices it reported.
        devices: usize,
        /// Its `ResourcePoolName`.
        resource_pool: String,
        /// How many containers it acknowledged in `ContainersReattached`.
        reattached: usize,
    },
    /// The master told a reconnecting agent to shut down: its devices or pool changed.
    AgentShutdownSent {
        /// The agent.
        id: String,
        /// What changed, in the master's words (e.g. `resource pool has changed: a -> b`).
        reason: String,
    },
    /// The agent answered a ping.
    Pong {
        /// The agent.
        id: String,
    },
    /// The master sent a message to the agent (`StartContainer`, `SignalContainer`).
    Sent {
        /// The agent.
        id: String,
        /// The message's name.
        kind: String,
        /// The container it is about.
        container_id: String,
    },
    /// The agent reported a container's new state.
    ContainerStateChanged {
        /// The agent.
        id: String,
        /// The container.
        container_id: String,
        /// Its new state, e.g. `TERMINATED`.
        state: String,
        /// Whether the master had assigned this container to this agent.
        known: bool,
        /// The failure type, when it stopped with one.
        failure_type: Option<String>,
        /// The failure's message.
        err_msg: Option<String>,
    },
    /// The agent sent another message.
    AgentMessage {
        /// The agent.
        id: String,
        /// The message's name.
        kind: String,
    },
    /// The agent sent what the real master cannot take: a message name it does not
    /// decode (the real master panics and dies), a message before `AgentStarted`, or a
    /// shape it would fail on. The dev master drops the connection.
    ProtocolViolation {
        /// The agent.
        id: String,
        /// What was wrong.
        what: String,
    },
    /// The agent's websocket ended.
    AgentGone {
        /// The agent.
        id: String,
        /// How it ended, e.g. `closed by the agent (code 1000)`.
        reason: String,
    },
    /// The master forgot an agent: its reconnect wait passed, or it was stopped.
    AgentForgotten {
        /// The agent.
        id: String,
        /// Why, in the master's words (e.g. `agent failed to reconnect by deadline`).
        reason: String,
    },
    /// `POST /task-logs` delivered a batch.
    TaskLogs {
        /// `X-Fluent-Tag`, if sent.
        tag: Option<String>,
        /// Records in the batch (a JSON array, or one object).
        records: usize,
    },
    /// Any other request, and its answer.
    Request {
        /// Method.
        method: String,
        /// Path.
        path: String,
        /// Status answered.
        status: u16,
    },
}
