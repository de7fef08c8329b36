//! The agent websocket's messages, as the Go master encodes them: JSON text frames, one
//! object whose single non-null key names the message (`{"MasterSetAgentOptions": {…}}`),
//! with Go's field names.
//!
//! The link interprets only what it needs to register. Everything else reaches the
//! embedding application as [`FromMaster::Other`] with its name and body intact.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::text::Untrusted;

/// A message from the master.
#[derive(Debug, Clone, PartialEq)]
pub enum FromMaster {
    /// The master's first message after the upgrade.
    SetAgentOptions(MasterSetAgentOptions),
    /// The master tells the agent to stop.
    Shutdown {
        /// Why, as the master put it.
        err_msg: String,
    },
    /// Any other message (`StartContainer`, `SignalContainer`, …), for the application.
    Other {
        /// The message's name, e.g. `StartContainer`.
        kind: String,
        /// Its body, as sent.
        body: Value,
    },
}

/// `MasterSetAgentOptions`, kept as the master sent it: the link does not interpret the
/// master's settings, the application may.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MasterSetAgentOptions {
    /// `MasterInfo` (cluster ID, version, …).
    #[serde(default)]
    pub master_info: Value,
    /// `LoggingOptions`.
    #[serde(default)]
    pub logging_options: Value,
    /// Containers the master expects this agent to reattach.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub containers_to_reattach: Vec<Value>,
}

/// What a master says about itself: `GET /info`'s answer, and `MasterInfo` in
/// `MasterSetAgentOptions` (Determined's `aproto.MasterInfo`, master/pkg/aproto/master_message.go,
/// with its snake_case JSON names). Every string came from the network.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
pub struct MasterInfo {
    /// The master's version, e.g. `0.38.0`.
    #[serde(default, deserialize_with = "untrusted")]
    pub version: Untrusted,
    /// The cluster's ID (kept in the master's database; tasks see it as `DET_CLUSTER_ID`).
    #[serde(default, deserialize_with = "untrusted")]
    pub cluster_id: Untrusted,
    /// The master's ID (new at each master start; `DET_MASTER_ID`).
    #[serde(default, deserialize_with = "untrusted")]
    pub master_id: Untrusted,
    /// The cluster's name.
    #[serde(default, deserialize_with = "untrusted")]
    pub cluster_name: Untrusted,
}

impl MasterInfo {
    /// Reads a `MasterInfo` object; `None` unless it is a JSON object carrying a
    /// non-empty `version` and `cluster_id`, as every Determined master sends.
    pub fn from_json(bytes: &[u8]) -> Option<MasterInfo> {
        let info: MasterInfo = serde_json::from_slice(bytes).ok()?;
        (!info.version.is_empty() && !info.cluster_id.is_empty()).then_some(info)
    }
}

fn untrusted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Untrusted, D::Error> {
    Ok(Untrusted::new(Option::<String>::deserialize(d)?.unwrap_or_default()))
}

/// A message to the master.
#[derive(Debug, Clone, PartialEq)]
pub enum ToMaster {
    /// The agent's answer to `MasterSetAgentOptions`.
    AgentStarted(AgentStarted),
    /// Any other message (`ContainerStateChanged`, `ContainerLog`, …), from the application.
    Other {
        /// The message's name.
        kind: String,
        /// Its body.
        body: Value,
    },
}

/// `AgentStarted`: what this agent runs and can offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AgentStarted {
    /// det-agent's version.
    pub version: String,
    /// GPUs, or the CPU when there are none.
    pub devices: Vec<Device>,
    /// Containers reattached after a reconnect (none: this crate runs no containers).
    pub containers_reattached: Vec<Value>,
    /// The resource pool joined.
    pub resource_pool_name: String,
}

/// One device, as Determined reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Index on this node.
    pub id: u32,
    /// Model name.
    pub brand: String,
    /// Stable identifier (a GPU's UUID; the CPU's physical ID).
    pub uuid: String,
    /// `cuda`, `rocm` or `cpu`.
    #[serde(rename = "type")]
    pub kind: String,
}

impl FromMaster {
    /// Decodes a text frame.
    ///
    /// # Errors
    /// The frame is not a JSON object with a non-null message, or a message the link
    /// interprets has the wrong shape.
    pub fn decode(text: &str) -> Result<FromMaster, String> {
        let object: Map<String, Value> = serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
        // Go encodes every field of its message struct, the unused ones as null.
        let (kind, body) = object
            .into_iter()
            .find(|(_, v)| !v.is_null())
            .ok_or_else(|| "a message object with no non-null field".to_owned())?;
        match kind.as_str() {
            "MasterSetAgentOptions" => serde_json::from_value(body)
                .map(FromMaster::SetAgentOptions)
                .map_err(|e| format!("MasterSetAgentOptions has an unexpected shape: {e}")),
            "AgentShutdown" => Ok(FromMaster::Shutdown {
                err_msg: body.get("ErrMsg").and_then(Value::as_str).unwrap_or_default().to_owned(),
            }),
            _ => Ok(FromMaster::Other { kind, body }),
        }
    }

    /// The message's name.
    pub fn kind(&self) -> &str {
        match self {
            FromMaster::SetAgentOptions(_) => "MasterSetAgentOptions",
            FromMaster::Shutdown { .. } => "AgentShutdown",
            FromMaster::Other { kind, .. } => kind,
        }
    }
}

impl ToMaster {
    /// Encodes as a text frame: `{"Name": body}`, the body's fields in declaration order.
    pub fn encode(&self) -> String {
        let (kind, body) = match self {
            ToMaster::AgentStarted(started) => ("AgentStarted", serde_json::to_string(started)),
            ToMaster::Other { kind, body } => (kind.as_str(), serde_json::to_string(body)),
        };
        // Serializing these types cannot fail (string keys, no non-finite floats).
        let body = body.unwrap_or_else(|_| "null".to_owned());
        format!("{{{}:{body}}}", Value::String(kind.to_owned()))
    }
}

impl AgentStarted {
    /// This node's answer: det-agent's version, its devices and resource pool. Devices
    /// are detected once per process, as the Go agent does: running `nvidia-smi` on every
    /// reconnect would cost more than the TLS handshake.
    pub fn for_this_node(resource_pool: &str) -> AgentStarted {
        static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
        AgentStarted {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            devices: DEVICES.get_or_init(detect_devices).clone(),
            containers_reattached: Vec::new(),
            resource_pool_name: resource_pool.to_owned(),
        }
    }
}

/// The node's GPUs when `nvidia-smi` lists any, otherwise the CPU as Determined reports
/// it: one device, id 0, brand = the model name, uuid = the physical package ID.
pub fn detect_devices() -> Vec<Device> {
    let gpus = Command::new("nvidia-smi")
        .args(["--query-gpu=index,name,uuid", "--format=csv,noheader,nounits"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)))
        .unwrap_or_default();
    if !gpus.is_empty() {
        return gpus;
    }
    let cpuinfo = std::fs::read_to_string(Path::new("/proc/cpuinfo")).unwrap_or_default();
    vec![cpu_device(&cpuinfo)]
}

fn parse_nvidia_smi(csv: &str) -> Vec<Device> {
    csv.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(str::trim);
            let id = fields.next()?.parse().ok()?;
            let brand = fields.next()?.to_owned();
            let uuid = fields.next()?.to_owned();
            Some(Device { id, brand, uuid, kind: "cuda".to_owned() })
        })
        .collect()
}

fn cpu_device(cpuinfo: &str) -> Device {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    Device {
        id: 0,
        brand: field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_owned()),
        uuid: field("physical id").unwrap_or_else(|| "0".to_owned()),
        kind: "cpu".to_owned(),
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    Ok(Option::<Vec<Value>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_go_encoding_with_null_siblings() {
        let text = r#"{"MasterSetAgentOptions":{"MasterInfo":{"version":"0.38.0"},"LoggingOptions":{},"ContainersToReattach":null},"StartContainer":null}"#;
        let FromMaster::SetAgentOptions(opts) = FromMaster::decode(text).unwrap() else { panic!() };
        assert_eq!(opts.master_info["version"], "0.38.0");
        assert!(opts.containers_to_reattach.is_empty());
        let other = FromMaster::decode(r#"{"MasterSetAgentOptions":null,"StartContainer":{"Container":{}}}"#).unwrap();
        assert_eq!(other.kind(), "StartContainer");
        let shutdown = FromMaster::decode(r#"{"AgentShutdown":{"ErrMsg":"bye"}}"#).unwrap();
        assert_eq!(shutdown, FromMaster::Shutdown { err_msg: "bye".to_owned() });
    }

    #[test]
    fn rejects_what_is_not_a_message() {
        assert!(FromMaster::decode("[1]").unwrap_err().contains("not a JSON object"));
        assert!(FromMaster::decode(r#"{"A":null}"#).unwrap_err().contains("no non-null"));
        assert!(FromMaster::decode(r#"{"MasterSetAgentOptions":{"ContainersToReattach":7}}"#)
            .unwrap_err()
            .contains("unexpected shape"));
    }

    #[test]
    fn agent_started_uses_go_field_names() {
        let started = AgentStarted {
            version: "1".into(),
            devices: vec![Device { id: 0, brand: "X".into(), uuid: "u".into(), kind: "cpu".into() }],
            containers_reattached: vec![],
            resource_pool_name: "gpu".into(),
        };
        assert_eq!(
            ToMaster::AgentStarted(started).encode(),
            r#"{"AgentStarted":{"Version":"1","Devices":[{"id":0,"brand":"X","uuid":"u","type":"cpu"}],"ContainersReattached":[],"ResourcePoolName":"gpu"}}"#
        );
    }

    #[test]
    fn reads_gpus_and_cpus() {
        let gpus = parse_nvidia_smi("0, NVIDIA A100-SXM4-40GB, GPU-1234\n1, NVIDIA A100-SXM4-40GB, GPU-5678\n");
        assert_eq!(gpus.len(), 2);
        assert_eq!(
            gpus[1],
            Device { id: 1, brand: "NVIDIA A100-SXM4-40GB".into(), uuid: "GPU-5678".into(), kind: "cuda".into() }
        );
        let cpu = cpu_device("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nphysical id\t: 0\n");
        assert_eq!(cpu, Device { id: 0, brand: "AMD EPYC 7B13".into(), uuid: "0".into(), kind: "cpu".into() });
        assert_eq!(detect_devices().len().min(1), 1);
    }
}
