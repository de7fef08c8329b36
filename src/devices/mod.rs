//! The node's devices, as the master receives them in `AgentStarted.Devices`: found exactly
//! as Determined's Go agent finds them (`agent/internal/detect/`), with the vendor tools run
//! under a timeout and every failure explained.
//!
//! [`detect`] takes the options ([`DetectOptions`]), the environment (read through a lookup
//! function: `CUDA_VISIBLE_DEVICES`, `ROCR_VISIBLE_DEVICES`, `HOST_PROC`) and a [`Runner`]
//! for the vendor tools ([`SystemRunner`] for real processes), and returns a [`Detection`]:
//! the devices and the [`Notice`]s to log. [`detect_this_node`] wires in the process
//! environment and real processes.
//!
//! What is chosen, as Determined's `Detect` (`detect.go`) does:
//! - `artificial_slots` > 0: that many artificial CPU slots, whatever `slot_type` says
//!   (their UUIDs differ from the Go agent's: see `artificial.rs`).
//! - `none`: no device. `cpu`: the CPU device (rules in `cpu.rs`).
//! - `cuda` (or `gpu`): NVIDIA GPUs or MIG instances (rules in `nvidia.rs`).
//! - `rocm`: AMD GPUs (rules in `rocm.rs`).
//! - `auto`: NVIDIA GPUs; if none, AMD GPUs; if none, the CPU device.
//!
//! When something fails, Determined's agent mostly logs a warning and carries on, which can
//! register a GPU node with no slots. Here:
//!
//! | slot_type | tool not installed | tool fails, hangs or cannot start | output unreadable | no usable GPU |
//! |---|---|---|---|---|
//! | `cuda`, `rocm` | error | error | error | error |
//! | `auto`, NVIDIA | info, next vendor | warning, next vendor | error | info¹, next vendor |
//! | `auto`, AMD | info, CPU | warning, CPU | warning, CPU | info¹, CPU |
//!
//! ¹ A warning when `CUDA_VISIBLE_DEVICES` / `ROCR_VISIBLE_DEVICES` hid every GPU listed.
//!
//! With `cuda` or `rocm` Go reports zero devices in the first, second and fourth columns
//! (and for `rocm` in the third); an agent asked for GPUs that has none is a
//! misconfiguration, so it is an error that names the command and what it printed. With
//! `auto` the rows are Go's own behaviour (it also stops on unreadable `nvidia-smi` output
//! and not on unreadable `rocm-smi` output), except that a hung tool is stopped after the
//! timeout instead of blocking start-up for ever. A CPU description that cannot be read is
//! an error wherever the CPU is used (`cpu`, `auto` without GPUs), as in Go.
//!
//! The driver-version queries, which Determined's agent runs first for every slot type
//! (artificial slots and `none` included) and whose odd output can stop it, run here only
//! when that vendor's GPUs are looked for. Their answer is only logged; a failing
//! `nvidia-smi` version query ends NVIDIA detection with that failure, since the next
//! queries would fail alike.

mod artificial;
mod command;
mod cpu;
mod csv;
mod device;
mod nvidia;
mod options;
mod report;
mod rocm;
#[cfg(test)]
mod tests;

pub use artificial::BRAND as ARTIFICIAL_BRAND;
pub use command::{Exit, RunError, Runner, SystemRunner, ToolError, ToolOutput, OUTPUT_LIMIT};
pub use device::{Device, DeviceType};
pub use options::{visible_gpus_from_environment, DetectOptions, SlotType, SlotTypeError, DEFAULT_TOOL_TIMEOUT};
pub use report::{CpuError, DetectError, Level, NoGpus, Notice};

use report::Outcome;

/// The devices found, and what is worth logging about how.
#[derive(Debug)]
pub struct Detection {
    /// The devices to report to the master, in Determined's order.
    pub devices: Vec<Device>,
    /// Things to log, each at its [`Notice::level`].
    pub notices: Vec<Notice>,
}

/// Finds the devices `options` ask for. `env` looks up environment variables
/// (`CUDA_VISIBLE_DEVICES`, `ROCR_VISIBLE_DEVICES`, `HOST_PROC`); `runner` runs the vendor
/// tools.
///
/// # Errors
///
/// A [`DetectError`] when the slot type asks for devices that cannot be found or
/// described; see the module documentation for which failures are errors.
pub fn detect(
    options: &DetectOptions,
    env: &dyn Fn(&str) -> Option<String>,
    runner: &dyn Runner,
) -> Result<Detection, DetectError> {
    let mut notices = Vec::new();
    if options.artificial_slots > 0 {
        let devices = artificial::devices(&options.agent_id, options.artificial_slots);
        return Ok(Detection { devices, notices });
    }
    let slot_type = options.slot_type;
    let cuda_visible = env("CUDA_VISIBLE_DEVICES");
    let rocr_visible = env("ROCR_VISIBLE_DEVICES");
    let nvidia =
        |notices: &mut Vec<Notice>| nvidia::detect(runner, &options.visible_gpus, cuda_visible.as_deref(), notices);
    let rocm =
        |notices: &mut Vec<Notice>| rocm::detect(runner, &options.visible_gpus, rocr_visible.as_deref(), notices);
    let cpu = |notices: &mut Vec<Notice>| {
        cpu::detect(&cpu::cpuinfo_path(env), notices).map(|device| vec![device]).map_err(DetectError::Cpu)
    };

    let devices = match slot_type {
        SlotType::None => Vec::new(),
        SlotType::Cpu => cpu(&mut notices)?,
        SlotType::Cuda => required(slot_type, nvidia(&mut notices))?,
        SlotType::Rocm => required(slot_type, rocm(&mut notices))?,
        SlotType::Auto => {
            let found = match nvidia(&mut notices) {
                Outcome::Failed(error @ command::ToolError::Unparsable { .. }) => {
                    return Err(DetectError::Tool { slot_type, error });
                }
                outcome => {
                    optional(outcome, nvidia::TOOL, "AMD GPUs and then the CPU are looked for instead", &mut notices)
                }
            };
            let found = match found {
                Some(devices) => Some(devices),
                None => optional(rocm(&mut notices), rocm::TOOL, "the CPU is used instead", &mut notices),
            };
            match found {
                Some(devices) => devices,
                None => cpu(&mut notices)?,
            }
        }
    };
    Ok(Detection { devices, notices })
}

/// [`detect`] with the process environment and real processes, each tool run allowed
/// `options.tool_timeout`.
///
/// # Errors
///
/// As [`detect`].
pub fn detect_this_node(options: &DetectOptions) -> Result<Detection, DetectError> {
    let env = |name: &str| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned());
    detect(options, &env, &SystemRunner::new(options.tool_timeout))
}

/// A vendor the slot type asks for: anything but devices is an error.
fn required(slot_type: SlotType, outcome: Outcome) -> Result<Vec<Device>, DetectError> {
    match outcome {
        Outcome::Devices(devices) => Ok(devices),
        Outcome::NoGpus(reason) => Err(DetectError::NoGpus { slot_type, reason }),
        Outcome::NotInstalled(error) | Outcome::Failed(error) => Err(DetectError::Tool { slot_type, error }),
    }
}

/// A vendor `auto` tries: its devices, or `None` with a notice saying why not.
fn optional(
    outcome: Outcome,
    tool: &'static str,
    then: &'static str,
    notices: &mut Vec<Notice>,
) -> Option<Vec<Device>> {
    match outcome {
        Outcome::Devices(devices) => return Some(devices),
        Outcome::NoGpus(reason) => notices.push(Notice::NoGpus(reason)),
        Outcome::NotInstalled(_) => notices.push(Notice::NotInstalled { tool }),
        Outcome::Failed(error) => notices.push(Notice::ToolFailed { error, then }),
    }
    None
}
