//! A device as `AgentStarted` and `cproto.Container` carry it (Determined's
//! `master/pkg/device/device.go`, json tags `id`, `brand`, `uuid`, `type`). The type is
//! kept as text: a master may assign devices of a type this version does not name (older
//! masters said `gpu`). Detection is `crate::devices`'.

use serde::{Deserialize, Serialize};

/// One device, as Determined reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Index on this node.
    pub id: u32,
    /// Model name.
    pub brand: String,
    /// Stable identifier (a GPU's UUID; the CPU's physical ID).
    pub uuid: String,
    /// `cuda`, `rocm` or `cpu` (`gpu` on masters older than ROCm support).
    #[serde(rename = "type")]
    pub kind: String,
}

impl From<&crate::devices::Device> for Device {
    /// A detected device as `AgentStarted` reports it.
    fn from(d: &crate::devices::Device) -> Device {
        // Device indexes are small: nvidia-smi's, rocm-smi's, a MIG instance's position.
        Device {
            id: u32::try_from(d.id).unwrap_or(u32::MAX),
            brand: d.brand.clone(),
            uuid: d.uuid.clone(),
            kind: d.kind.to_string(),
        }
    }
}
