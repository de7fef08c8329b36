//! What detection is asked to do: the agent options Determined's `Detect` takes
//! (`agent/internal/detect/detect.go`: slot type, agent ID, visible GPUs, artificial slots)
//! and how long a vendor tool may take.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long one run of `nvidia-smi` or `rocm-smi` may take before it is stopped and
/// reported as hung. Determined's agent waits forever. Generous on purpose: without the
/// persistence daemon every `nvidia-smi` run initialises the driver for each GPU, which
/// takes seconds on a large node, and a false timeout would turn a GPU node into a failed
/// start (`cuda`) or a CPU node (`auto`). A hung driver is caught either way.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's `slot_type` option: which devices become the agent's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SlotType {
    /// NVIDIA GPUs if `nvidia-smi` lists any, else AMD GPUs if `rocm-smi` lists any, else
    /// the CPU. Determined's default.
    Auto,
    /// NVIDIA GPUs (or their MIG instances) only. `gpu` is accepted as its old name.
    Cuda,
    /// AMD GPUs only.
    Rocm,
    /// The CPUs, as one device.
    Cpu,
    /// No slots: the agent runs zero-slot tasks only.
    None,
}

impl SlotType {
    /// The canonical name (`gpu` reads as `cuda`).
    pub fn as_str(self) -> &'static str {
        match self {
            SlotType::Auto => "auto",
            SlotType::Cuda => "cuda",
            SlotType::Rocm => "rocm",
            SlotType::Cpu => "cpu",
            SlotType::None => "none",
        }
    }
}

impl fmt::Display for SlotType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `slot_type` value Determined does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "slot_type \"{}\" is not one of auto, cuda, gpu (the old name of cuda), rocm, cpu, none",
    crate::text::escape(value)
)]
pub struct SlotTypeError {
    /// The value as given.
    pub value: String,
}

/// Exactly the values of Determined's `check.In(o.SlotType, …)` in
/// `agent/internal/options/options.go`, case-sensitive as there.
impl FromStr for SlotType {
    type Err = SlotTypeError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "auto" => Ok(SlotType::Auto),
            "cuda" | "gpu" => Ok(SlotType::Cuda),
            "rocm" => Ok(SlotType::Rocm),
            "cpu" => Ok(SlotType::Cpu),
            "none" => Ok(SlotType::None),
            _ => Err(SlotTypeError { value: value.to_owned() }),
        }
    }
}

/// The options device detection needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectOptions {
    /// `slot_type`.
    pub slot_type: SlotType,
    /// `visible_gpus`, verbatim: passed to `nvidia-smi --id=…` and split on `,` for
    /// `rocm-smi -d …`. Empty: every GPU. Its default comes from the environment, see
    /// [`visible_gpus_from_environment`].
    pub visible_gpus: String,
    /// `artificial_slots`: when above 0, that many fake CPU slots and nothing else.
    pub artificial_slots: u32,
    /// The agent ID; artificial slots' UUIDs are derived from it.
    pub agent_id: String,
    /// How long one vendor tool run may take ([`DEFAULT_TOOL_TIMEOUT`]).
    pub tool_timeout: Duration,
}

impl DetectOptions {
    /// Options for `slot_type` with Determined's defaults for the rest: no visible-GPU
    /// list, no artificial slots, the default tool timeout.
    pub fn new(slot_type: SlotType, agent_id: impl Into<String>) -> Self {
        DetectOptions {
            slot_type,
            visible_gpus: String::new(),
            artificial_slots: 0,
            agent_id: agent_id.into(),
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
        }
    }
}

/// The default of `visible_gpus`, as Determined's `VisibleGPUsFromEnvironment`
/// (`agent/internal/options/options.go`) computes it: `ROCR_VISIBLE_DEVICES` when it is
/// defined, even if empty; otherwise `CUDA_VISIBLE_DEVICES`; otherwise empty.
pub fn visible_gpus_from_environment(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("ROCR_VISIBLE_DEVICES").or_else(|| env("CUDA_VISIBLE_DEVICES")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_determineds_slot_types() {
        for (text, slot) in [
            ("auto", SlotType::Auto),
            ("cuda", SlotType::Cuda),
            ("gpu", SlotType::Cuda),
            ("rocm", SlotType::Rocm),
            ("cpu", SlotType::Cpu),
            ("none", SlotType::None),
        ] {
            assert_eq!(text.parse::<SlotType>(), Ok(slot));
        }
        let err = "CUDA".parse::<SlotType>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "slot_type \"CUDA\" is not one of auto, cuda, gpu (the old name of cuda), rocm, cpu, none"
        );
        assert!("".parse::<SlotType>().is_err());
    }

    #[test]
    fn visible_gpus_default_prefers_rocr_even_when_empty() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |key: &str| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
        };
        assert_eq!(visible_gpus_from_environment(&env(&[])), "");
        assert_eq!(visible_gpus_from_environment(&env(&[("CUDA_VISIBLE_DEVICES", "A,B")])), "A,B");
        assert_eq!(visible_gpus_from_environment(&env(&[("ROCR_VISIBLE_DEVICES", "1,2")])), "1,2");
        let both_rocr_empty = env(&[("ROCR_VISIBLE_DEVICES", ""), ("CUDA_VISIBLE_DEVICES", "0")]);
        assert_eq!(visible_gpus_from_environment(&both_rocr_empty), "");
    }
}
