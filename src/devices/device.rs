//! The device record the master receives in `AgentStarted.Devices`, in the JSON shape of
//! Determined's `master/pkg/device/device.go`: `{"id": 0, "brand": "…", "uuid": "…",
//! "type": "cuda"}`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::text::escape;

/// What kind of slot a device is. Determined also knows an empty type (`ZeroSlot`), which
/// the master uses for itself and an agent never reports, and, before CUDA and ROCm were
/// told apart, `gpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceType {
    /// An NVIDIA GPU or MIG instance (`"cuda"`).
    Cuda,
    /// An AMD GPU (`"rocm"`).
    Rocm,
    /// The node's CPUs, all of them as one device, or an artificial slot (`"cpu"`).
    Cpu,
}

impl DeviceType {
    /// The name on the wire and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Cuda => "cuda",
            DeviceType::Rocm => "rocm",
            DeviceType::Cpu => "cpu",
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One computational device of this agent, as the master schedules it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Device {
    /// The vendor tool's index (nvidia-smi's GPU index, rocm-smi's card number), the MIG
    /// instance's position in `nvidia-smi -L`, or 0 for the CPU. Go's `int`.
    pub id: i64,
    /// The model as the vendor tool or `/proc/cpuinfo` names it.
    pub brand: String,
    /// The vendor's unique ID: `GPU-…` or `MIG-…` for NVIDIA, rocm-smi's "Unique ID", the
    /// CPU vendor ID (`GenuineIntel`), or a generated UUID for an artificial slot.
    pub uuid: String,
    /// The slot type.
    #[serde(rename = "type")]
    pub kind: DeviceType,
}

/// As Determined's agent logs a device: `cuda0 (NVIDIA A100-SXM4-40GB)`. The brand comes
/// from a vendor tool's output, so it is shown escaped.
impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{} ({})", self.kind, self.id, escape(&self.brand))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_determined_field_order_and_names() {
        let device = Device { id: 3, brand: "NVIDIA A100".into(), uuid: "GPU-1".into(), kind: DeviceType::Cuda };
        let json = serde_json::to_string(&device).unwrap();
        assert_eq!(json, r#"{"id":3,"brand":"NVIDIA A100","uuid":"GPU-1","type":"cuda"}"#);
        assert_eq!(serde_json::from_str::<Device>(&json).unwrap(), device);
        let types: Vec<_> = [DeviceType::Cuda, DeviceType::Rocm, DeviceType::Cpu]
            .iter()
            .map(|t| serde_json::to_string(t).unwrap())
            .collect();
        assert_eq!(types, [r#""cuda""#, r#""rocm""#, r#""cpu""#]);
    }

    #[test]
    fn displays_like_the_go_agent_with_the_brand_escaped() {
        let device = Device { id: 0, brand: "Evil\x1b[2J".into(), uuid: String::new(), kind: DeviceType::Rocm };
        assert_eq!(device.to_string(), "rocm0 (Evil\\x1b[2J)");
    }
}
