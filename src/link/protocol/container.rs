//! Containers, and the messages about them, with Determined's field names and shapes:
//! `cproto.Container` and `cproto.State` (`master/pkg/cproto/container.go`, `state.go`),
//! `aproto.ContainerStateChanged`, `StartContainer`, `SignalContainer`
//! (`master/pkg/aproto/master_message.go`, `agent_message.go`) and `ContainerFailure`
//! (`aproto/exit.go`).
//!
//! The master dereferences what it expects without checking: a `RUNNING` change without
//! `ContainerStarted`, a `TERMINATED` one without `ContainerStopped`, a started container
//! without `HostConfig`, or stats without `Stats` would crash it
//! (`master/internal/rm/agentrm/agent.go`, `containerStateChanged`). These types cannot
//! express those messages: their constructors and decoders refuse them (and
//! [`super::ContainerStatsRecord`] always carries its stats).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::device::Device;

/// A container's state (`cproto.State`); a container moves only forwards:
/// `ASSIGNED → PULLING → STARTING → RUNNING`, and from any of them to `TERMINATED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum State {
    /// No state (`""`): only in messages that do not name one.
    #[default]
    Unknown,
    /// The master assigned the container to this agent.
    Assigned,
    /// Its image is being pulled.
    Pulling,
    /// It is being created and started.
    Starting,
    /// It runs.
    Running,
    /// It ended (or never started).
    Terminated,
}

impl State {
    /// The name on the wire, e.g. `TERMINATED`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "",
            State::Assigned => "ASSIGNED",
            State::Pulling => "PULLING",
            State::Starting => "STARTING",
            State::Running => "RUNNING",
            State::Terminated => "TERMINATED",
        }
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<State, D::Error> {
        let text = String::deserialize(d)?;
        [State::Unknown, State::Assigned, State::Pulling, State::Starting, State::Running, State::Terminated]
            .into_iter()
            .find(|s| s.as_str() == text)
            // Go's cproto.State.UnmarshalText refuses anything else in these words.
            .ok_or_else(|| serde::de::Error::custom(format!("invalid container state: {}", crate::text::escape(&text))))
    }
}

/// A container (`cproto.Container`, json tags `id`, `state`, `devices`, `description`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// Its ID (a UUID the master made).
    #[serde(default)]
    pub id: String,
    /// Its state.
    #[serde(default)]
    pub state: State,
    /// The devices assigned to it (at most [`MAX_LISTED`](super::MAX_LISTED)).
    #[serde(default, deserialize_with = "super::bounded_list")]
    pub devices: Vec<Device>,
    /// What the master says it is for (mapped to Docker labels by the Go agent).
    #[serde(default)]
    pub description: String,
}

impl Container {
    /// The container with this ID and state, no devices, no description.
    pub fn new(id: impl Into<String>, state: State) -> Container {
        Container { id: id.into(), state, devices: Vec::new(), description: String::new() }
    }
}

/// Why a container did not complete successfully (`aproto.FailureType`); the master
/// handles each of these, and no other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // Each variant's text is its documentation.
pub enum FailureType {
    /// `container failed with non-zero exit code`
    ContainerFailed,
    /// `container was aborted before it started`
    ContainerAborted,
    /// `request for action on unknown container`
    ContainerMissing,
    /// `task was aborted before the task was started`
    TaskAborted,
    /// `task failed without an associated exit code`
    TaskError,
    /// `agent failed while the container was running`
    AgentFailed,
    /// `container failed to restore after agent failure`
    RestoreError,
    /// `agent failed to launch the container`
    AgentError,
}

impl FailureType {
    const ALL: [FailureType; 8] = [
        FailureType::ContainerFailed,
        FailureType::ContainerAborted,
        FailureType::ContainerMissing,
        FailureType::TaskAborted,
        FailureType::TaskError,
        FailureType::AgentFailed,
        FailureType::RestoreError,
        FailureType::AgentError,
    ];

    /// The text on the wire (`aproto/exit.go`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureType::ContainerFailed => "container failed with non-zero exit code",
            FailureType::ContainerAborted => "container was aborted before it started",
            FailureType::ContainerMissing => "request for action on unknown container",
            FailureType::TaskAborted => "task was aborted before the task was started",
            FailureType::TaskError => "task failed without an associated exit code",
            FailureType::AgentFailed => "agent failed while the container was running",
            FailureType::RestoreError => "container failed to restore after agent failure",
            FailureType::AgentError => "agent failed to launch the container",
        }
    }
}

impl Serialize for FailureType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FailureType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FailureType, D::Error> {
        let text = String::deserialize(d)?;
        FailureType::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown failure type {}", crate::text::quoted(&text))))
    }
}

/// `aproto.ContainerFailure`: why a container stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerFailure {
    /// The kind of failure.
    pub failure_type: FailureType,
    /// What happened, in words.
    pub err_msg: String,
    /// The process's exit code, when it exited.
    pub exit_code: Option<i32>,
}

impl ContainerFailure {
    /// A failure without an exit code.
    pub fn new(failure_type: FailureType, err_msg: impl Into<String>) -> ContainerFailure {
        ContainerFailure { failure_type, err_msg: err_msg.into(), exit_code: None }
    }
}

/// `aproto.ContainerStopped`: `failure` is `None` for a zero exit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerStopped {
    /// Why it stopped, unless it exited 0.
    pub failure: Option<ContainerFailure>,
}

/// `docker inspect` of a started container, as `ContainerStarted.ContainerInfo`. The
/// master reads `HostConfig.NetworkMode` and, in `host` mode, `Config.ExposedPorts`
/// without checking they exist, so both are required.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ContainerInfo(Map<String, Value>);

impl ContainerInfo {
    /// Checks `inspect` (Docker's `ContainerJSON`) has what the master reads.
    ///
    /// # Errors
    /// It is not an object, has no `HostConfig.NetworkMode` string, or is in `host` mode
    /// without a `Config` object.
    pub fn from_inspect(inspect: Value) -> Result<ContainerInfo, ShapeError> {
        let Value::Object(map) = inspect else { return Err(ShapeError::InfoNotObject) };
        let mode = map.get("HostConfig").and_then(|h| h.get("NetworkMode")).and_then(Value::as_str);
        match mode {
            None => Err(ShapeError::NoNetworkMode),
            Some("host") if !map.get("Config").is_some_and(Value::is_object) => Err(ShapeError::HostModeWithoutConfig),
            Some(_) => Ok(ContainerInfo(map)),
        }
    }

    /// The inspect data.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }
}

impl<'de> Deserialize<'de> for ContainerInfo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ContainerInfo, D::Error> {
        ContainerInfo::from_inspect(Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// `aproto.ContainerStarted`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerStarted {
    /// Where the master proxies to; empty: the agent's address.
    pub proxy_address: String,
    /// `docker inspect` of the container.
    pub container_info: ContainerInfo,
}

/// Where a container went, with what the master needs to know about that step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// `ASSIGNED`.
    Assigned,
    /// `PULLING`.
    Pulling,
    /// `STARTING`.
    Starting,
    /// `RUNNING`, with how it runs.
    Running(ContainerStarted),
    /// `TERMINATED`, with why.
    Terminated(ContainerStopped),
}

impl Change {
    /// The state this change moves to.
    pub fn state(&self) -> State {
        match self {
            Change::Assigned => State::Assigned,
            Change::Pulling => State::Pulling,
            Change::Starting => State::Starting,
            Change::Running(_) => State::Running,
            Change::Terminated(_) => State::Terminated,
        }
    }
}

/// `aproto.ContainerStateChanged`: the container's new state, with `ContainerStarted`
/// exactly when it is `RUNNING` and `ContainerStopped` exactly when it is `TERMINATED`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StateChangedWire", into = "StateChangedWire")]
pub struct ContainerStateChanged {
    container: Container,
    change: Change,
}

impl ContainerStateChanged {
    /// `container` moved as `change` says; its `state` is taken from `change`.
    pub fn new(mut container: Container, change: Change) -> ContainerStateChanged {
        container.state = change.state();
        ContainerStateChanged { container, change }
    }

    /// `container` terminated: `failure` is `None` for a zero exit.
    pub fn terminated(container: Container, failure: Option<ContainerFailure>) -> ContainerStateChanged {
        ContainerStateChanged::new(container, Change::Terminated(ContainerStopped { failure }))
    }

    /// The container, in its new state.
    pub fn container(&self) -> &Container {
        &self.container
    }

    /// The change.
    pub fn change(&self) -> &Change {
        &self.change
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StateChangedWire {
    container: Container,
    #[serde(default)]
    container_started: Option<ContainerStarted>,
    #[serde(default)]
    container_stopped: Option<ContainerStopped>,
}

impl From<ContainerStateChanged> for StateChangedWire {
    fn from(c: ContainerStateChanged) -> StateChangedWire {
        let (container_started, container_stopped) = match c.change {
            Change::Running(started) => (Some(started), None),
            Change::Terminated(stopped) => (None, Some(stopped)),
            _ => (None, None),
        };
        StateChangedWire { container: c.container, container_started, container_stopped }
    }
}

impl TryFrom<StateChangedWire> for ContainerStateChanged {
    type Error = ShapeError;

    fn try_from(w: StateChangedWire) -> Result<ContainerStateChanged, ShapeError> {
        let change = match w.container.state {
            State::Unknown => return Err(ShapeError::NoState),
            State::Assigned => Change::Assigned,
            State::Pulling => Change::Pulling,
            State::Starting => Change::Starting,
            State::Running => Change::Running(w.container_started.ok_or(ShapeError::RunningWithoutStarted)?),
            State::Terminated => Change::Terminated(w.container_stopped.ok_or(ShapeError::TerminatedWithoutStopped)?),
        };
        Ok(ContainerStateChanged { container: w.container, change })
    }
}

/// A message the master would crash on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapeError {
    /// A state change without a state.
    #[error("a ContainerStateChanged must name the container's new state")]
    NoState,
    /// `RUNNING` without `ContainerStarted`.
    #[error("a RUNNING ContainerStateChanged must carry ContainerStarted (the master reads its ProxyAddress)")]
    RunningWithoutStarted,
    /// `TERMINATED` without `ContainerStopped`.
    #[error("a TERMINATED ContainerStateChanged must carry ContainerStopped (the master reads its Failure)")]
    TerminatedWithoutStopped,
    /// `ContainerInfo` is not an object.
    #[error("ContainerInfo must be docker inspect's object")]
    InfoNotObject,
    /// No `HostConfig.NetworkMode`.
    #[error("ContainerInfo must carry HostConfig.NetworkMode (the master reads it)")]
    NoNetworkMode,
    /// `host` network mode without `Config`.
    #[error("ContainerInfo in host network mode must carry Config (the master reads Config.ExposedPorts)")]
    HostModeWithoutConfig,
}

/// `aproto.StartContainer`: the master assigns a container to this agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StartContainer {
    /// The container, `ASSIGNED`, with its devices.
    pub container: Container,
    /// How to run it (`cproto.Spec`: Docker's configuration, kept as sent).
    #[serde(default)]
    pub spec: super::RawJson,
}

/// `aproto.SignalContainer`: the master signals a container (it only ever sends 9, SIGKILL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalContainer {
    /// The container.
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    /// The signal's number (Go's `syscall.Signal`, a JSON number).
    #[serde(rename = "Signal")]
    pub signal: i32,
}

/// `aproto.ContainerReattach`: a container the master expects this agent to still run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerReattach {
    /// The container, as the master last knew it.
    pub container: Container,
}

/// `aproto.ContainerReattachAck`: whether a container the master listed was reattached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerReattachAck {
    /// The container.
    pub container: Container,
    /// Why it was not reattached; `None` when it was.
    pub failure: Option<ContainerFailure>,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if *self == State::Unknown { "(no state)" } else { self.as_str() })
    }
}

impl fmt::Display for FailureType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
