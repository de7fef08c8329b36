//! What the agent reports about its containers besides their state: log lines
//! (`aproto.ContainerLog`, `RunMessage`) and timing records (`aproto.ContainerStatsRecord`,
//! `model.TaskStats` from `master/pkg/model/task.go`), with Go's field names.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An RFC 3339 instant, as Go's `time.Time` is written in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(pub time::OffsetDateTime);

impl Timestamp {
    /// Now, in UTC.
    pub fn now() -> Timestamp {
        Timestamp(time::OffsetDateTime::now_utc())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.0.format(&time::format_description::well_known::Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(d)?;
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .map(Timestamp)
            .map_err(|_| serde::de::Error::custom(format!("{} is not an RFC 3339 time", crate::text::quoted(&text))))
    }
}

/// Which stream a container's output came from (Docker's `stdcopy.StdType`, a number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Docker's names.
pub enum StdType {
    Stdin,
    Stdout,
    Stderr,
    Systemerr,
}

impl Serialize for StdType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(*self as u8)
    }
}

impl<'de> Deserialize<'de> for StdType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<StdType, D::Error> {
        match u8::deserialize(d)? {
            0 => Ok(StdType::Stdin),
            1 => Ok(StdType::Stdout),
            2 => Ok(StdType::Stderr),
            3 => Ok(StdType::Systemerr),
            n => Err(serde::de::Error::custom(format!("unknown StdType {n}"))),
        }
    }
}

/// `aproto.RunMessage`: one line a running container wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunMessage {
    /// The text.
    pub value: String,
    /// Where it was written.
    pub std_type: StdType,
}

/// `aproto.ContainerLog`: a log line from (or about) a container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerLog {
    /// The container.
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    /// When.
    #[serde(rename = "Timestamp")]
    pub timestamp: Timestamp,
    /// Log level, e.g. `INFO`.
    #[serde(rename = "Level")]
    pub level: Option<String>,
    /// Output of the image pull.
    #[serde(rename = "PullMessage")]
    pub pull_message: Option<String>,
    /// Output of the running container.
    #[serde(rename = "RunMessage")]
    pub run_message: Option<RunMessage>,
    /// The agent's own words about the container.
    #[serde(rename = "AuxMessage")]
    pub aux_message: Option<String>,
    /// Where the line comes from; the Go agent says `agent`.
    #[serde(rename = "Source")]
    pub source: Option<String>,
    /// The agent's ID.
    #[serde(rename = "AgentID")]
    pub agent_id: Option<String>,
}

/// `model.TaskType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)] // Determined's task types.
pub enum TaskType {
    Trial,
    Notebook,
    Shell,
    Command,
    Tensorboard,
    CheckpointGc,
}

/// `model.TaskStats` (no json tags: Go's field names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStats {
    /// The allocation.
    #[serde(rename = "AllocationID")]
    pub allocation_id: String,
    /// What is measured, e.g. `IMAGEPULL`.
    #[serde(rename = "EventType")]
    pub event_type: String,
    /// The container.
    #[serde(rename = "ContainerID")]
    pub container_id: Option<String>,
    /// When it started.
    #[serde(rename = "StartTime")]
    pub start_time: Option<Timestamp>,
    /// When it ended.
    #[serde(rename = "EndTime")]
    pub end_time: Option<Timestamp>,
}

/// `aproto.ContainerStatsRecord`: timing of a step, e.g. an image pull. The master stores
/// it for trials only. `Stats` is never null: the master would write it unchecked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerStatsRecord {
    /// Whether this ends the measurement (else it starts it).
    pub end_stats: bool,
    /// The measurement.
    pub stats: TaskStats,
    /// The task's type.
    pub task_type: TaskType,
}
