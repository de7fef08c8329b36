//! A device as `AgentStarted` and `cproto.Container` carry it (Determined's
//! `master/pkg/device/device.go`, json tags `id`, `brand`, `uuid`, `type`), and the
//! detection `det-agent run` uses until `crate::devices` is wired in.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

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

/// This node's devices, detected once per process, as the Go agent does: running
/// `nvidia-smi` on every reconnect would cost more than the TLS handshake.
pub fn this_node() -> Vec<Device> {
    static DEVICES: OnceLock<Vec<Device>> = OnceLock::new();
    DEVICES.get_or_init(detect_devices).clone()
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(this_node(), this_node());
    }
}
