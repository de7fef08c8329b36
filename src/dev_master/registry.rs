//! The agents the dev master holds, with the real master's lifecycle
//! (`master/internal/rm/agentrm/agents.go` and `agent.go`):
//!
//! - an agent is held from its upgrade; one that disconnects before `AgentStarted` is
//!   dropped at once, one that had started is kept for `agent_reconnect_wait` (25 s by
//!   default, `socketDisconnected`) and then forgotten (`HandleReconnectTimeout`:
//!   `agent failed to reconnect by deadline`);
//! - a held ID is reused whatever `reconnect` says, and refused while it is connected;
//! - with a state file, started agents survive a restart, as the real master restores them
//!   from its database, and their wait starts at the master's start (`newAgentService`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Event, Shared};
use crate::link::protocol::{Container, ContainerReattach, Device, FromMaster};

/// What a session is told to do from outside.
#[derive(Debug)]
pub(super) enum Command {
    /// Send this message.
    Send(FromMaster),
}

/// One agent the master holds.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// The pool it joined.
    pub pool: String,
    /// Its devices, once it sent `AgentStarted`.
    pub devices: Option<Vec<Device>>,
    /// The connected session, if any: its number and how to reach it.
    pub session: Option<(u64, mpsc::UnboundedSender<Command>)>,
    /// The reconnect wait armed (its number), if the agent is away.
    pub waiting: Option<u64>,
    /// Containers the master assigned to it and has not seen terminate.
    pub containers: BTreeMap<String, Container>,
}

/// Every agent held, by ID.
#[derive(Debug, Default)]
pub(super) struct Registry {
    pub agents: HashMap<String, Held>,
    numbers: u64,
}

impl Registry {
    /// A number no session or wait had before.
    pub fn next(&mut self) -> u64 {
        self.numbers += 1;
        self.numbers
    }
}

/// How an upgrade was admitted.
pub(super) struct Admitted {
    /// The session's number.
    pub session: u64,
    /// Its commands.
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// `ContainersToReattach`: the held containers for an agent the master waited for,
    /// `None` (JSON `null`, the master's template) for a new one.
    pub reattach: Option<Vec<ContainerReattach>>,
}

/// The file the dev master keeps agents in: the real master's `agent_snapshot` table, in
/// short.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    agents: Vec<Saved>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Saved {
    id: String,
    resource_pool: String,
    devices: Vec<Device>,
    #[serde(default)]
    containers: Vec<Container>,
}

/// Reads the agents of `path` (none when it does not exist yet).
///
/// # Errors
/// The file exists but cannot be read or is not a state file.
pub(super) fn load(path: &Path) -> std::io::Result<Registry> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Registry::default()),
        Err(e) => return Err(e),
    };
    let state: StateFile = serde_json::from_slice(&text)
        .map_err(|e| std::io::Error::other(format!("{}: not a dev master state file: {e}", path.display())))?;
    let mut registry = Registry::default();
    for saved in state.agents {
        let containers = saved.containers.into_iter().map(|c| (c.id.clone(), c)).collect();
        let held = Held { pool: saved.resource_pool, devices: Some(saved.devices), containers, ..Held::default() };
        registry.agents.insert(saved.id, held);
    }
    Ok(registry)
}

/// Writes the started agents to the state file, if there is one.
pub(super) fn save(shared: &Shared, registry: &Registry) {
    let Some(path) = &shared.options.state_file else { return };
    if shared.stopped() {
        return; // a stopped master's state stays as it was when it stopped
    }
    let mut agents: Vec<Saved> = registry
        .agents
        .iter()
        .filter_map(|(id, held)| {
            Some(Saved {
                id: id.clone(),
                resource_pool: held.pool.clone(),
                devices: held.devices.clone()?,
                containers: held.containers.values().cloned().collect(),
            })
        })
        .collect();
    agents.sort_by(|a, b| a.id.cmp(&b.id));
    let bytes = serde_json::to_vec_pretty(&StateFile { agents }).unwrap_or_default();
    if let Err(err) = crate::fsutil::write_atomic(path, &bytes, 0o600) {
        tracing::warn!(%err, path = %path.display(), "dev master: cannot write the state file");
    }
}

/// Starts the reconnect wait of every agent held at start (restored from the state file).
pub(super) fn arm_restored(shared: &Arc<Shared>) {
    let mut registry = shared.lock_agents();
    let ids: Vec<String> = registry.agents.keys().cloned().collect();
    for id in ids {
        let number = registry.next();
        if let Some(held) = registry.agents.get_mut(&id) {
            held.waiting = Some(number);
        }
        arm(shared, id, number);
    }
}

/// After `agent_reconnect_wait`, forgets `id` unless it came back (or was stopped) since.
fn arm(shared: &Arc<Shared>, id: String, number: u64) {
    let wait: Duration = shared.options.agent_reconnect_wait;
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        if shared.stopped() {
            return;
        }
        let mut registry = shared.lock_agents();
        if registry.agents.get(&id).is_some_and(|h| h.waiting == Some(number)) {
            registry.agents.remove(&id);
            save(&shared, &registry);
            drop(registry);
            shared.emit(Event::AgentForgotten { id, reason: "agent failed to reconnect by deadline".to_owned() });
        }
    });
}

/// A session ended: an agent that had started waits for its reconnect, any other is
/// dropped (`HandleWebsocketDisconnect`).
pub(super) fn disconnected(shared: &Arc<Shared>, id: &str, session: u64) {
    let mut registry = shared.lock_agents();
    let Some(held) = registry.agents.get(id) else { return };
    if held.session.as_ref().map(|(n, _)| *n) != Some(session) {
        return; // stopped, or replaced
    }
    if held.devices.is_none() {
        registry.agents.remove(id);
        drop(registry);
        shared
            .emit(Event::AgentForgotten { id: id.to_owned(), reason: "agent disconnected but wasn't started".into() });
        return;
    }
    let number = registry.next();
    if let Some(held) = registry.agents.get_mut(id) {
        held.session = None;
        held.waiting = Some(number);
    }
    drop(registry);
    arm(shared, id.to_owned(), number);
}

/// Stops `id` (`agent.stop`): its containers fail, and the master forgets it.
pub(super) fn stop(shared: &Shared, id: &str, session: u64, reason: &str) {
    let mut registry = shared.lock_agents();
    if registry.agents.get(id).and_then(|h| h.session.as_ref()).is_some_and(|(n, _)| *n == session) {
        registry.agents.remove(id);
        save(shared, &registry);
        drop(registry);
        shared.emit(Event::AgentForgotten { id: id.to_owned(), reason: reason.to_owned() });
    }
}
