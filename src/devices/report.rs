//! What detection tells its caller besides the devices: [`Notice`]s to log (at info or
//! warning level), and the [`DetectError`] that stops start-up.
//!
//! Determined's agent logs most tool failures as warnings and carries on, sometimes with
//! no slots at all; the notices say the same things and also why, and with an explicit
//! `slot_type` a failure is an error instead (see the module documentation of `devices`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::command::ToolError;
use super::csv;
use super::device::Device;
use super::options::SlotType;
use crate::text::escape;

/// How loudly a [`Notice`] should be logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Expected on some nodes (no NVIDIA tools on a CPU node): log at info.
    Info,
    /// Something is wrong or surprising and the result may not be what the operator
    /// wants: log at warning.
    Warning,
}

/// Why a GPU vendor tool produced no usable GPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoGpus {
    /// The tool said "No devices were found".
    NoDevicesFound {
        /// `nvidia-smi` or `rocm-smi`.
        tool: &'static str,
    },
    /// The tool succeeded and listed nothing.
    NoneListed {
        /// `nvidia-smi` or `rocm-smi`.
        tool: &'static str,
    },
    /// The tool listed GPUs, and the environment variable hid every one of them.
    FilteredOut {
        /// `nvidia-smi` or `rocm-smi`.
        tool: &'static str,
        /// `CUDA_VISIBLE_DEVICES` or `ROCR_VISIBLE_DEVICES`.
        variable: &'static str,
        /// Its value.
        value: String,
        /// How many GPUs the tool listed.
        listed: usize,
        /// What an entry is matched against ("index or UUID", "index").
        matched_by: &'static str,
    },
}

impl fmt::Display for NoGpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoGpus::NoDevicesFound { tool } => write!(f, "{tool} found no GPU (\"No devices were found\")"),
            NoGpus::NoneListed { tool } => write!(f, "{tool} lists no GPU"),
            NoGpus::FilteredOut { tool, variable, value, listed, matched_by } => {
                write!(
                    f,
                    "{variable}=\"{}\" matches none of the {listed} GPU(s) {tool} lists (by {matched_by}), so none is \
                     used",
                    escape(value)
                )?;
                if value.is_empty() {
                    write!(f, "; {variable} is set but empty, which hides every GPU")?;
                }
                Ok(())
            }
        }
    }
}

/// Something detection found worth logging. [`Notice::level`] says how loudly.
#[derive(Debug)]
pub enum Notice {
    /// The GPU driver's version (info), as Determined's agent logs it.
    DriverVersion {
        /// `NVIDIA` or `ROCm`.
        vendor: &'static str,
        /// The version as the tool printed it.
        version: String,
    },
    /// A vendor tool is not installed, so that vendor's GPUs are not used (info).
    NotInstalled {
        /// `nvidia-smi` or `rocm-smi`.
        tool: &'static str,
    },
    /// A vendor tool ran and no GPU of its vendor is usable (info, or warning when an
    /// environment variable hid every GPU).
    NoGpus(NoGpus),
    /// A tool failed; `then` says what detection did instead (warning).
    ToolFailed {
        /// What failed.
        error: ToolError,
        /// What detection did instead.
        then: &'static str,
    },
    /// The GPUs are not all in the same MIG mode; only the first GPU's counts (warning).
    MixedMigModes {
        /// The modes as nvidia-smi printed them, one per GPU.
        modes: Vec<String>,
    },
    /// MIG mode is on and `nvidia-smi -L` lists no MIG instance (warning).
    MigWithoutInstances,
    /// MIG instances are in use and the GPU selection settings were not applied (warning).
    MigIgnoresSelection {
        /// The settings that were set, e.g. `visible_gpus="0"`.
        settings: Vec<String>,
    },
    /// `rocm-smi --showproductname` failed and the same query without it worked (warning,
    /// Determined's own).
    RocmWithoutProductName {
        /// The first attempt's failure.
        error: ToolError,
    },
    /// `/proc/cpuinfo` lacks a field the CPU device is made from (info).
    CpuInfoIncomplete {
        /// The file read.
        path: PathBuf,
        /// The field that is missing.
        field: &'static str,
        /// What the device carries instead.
        effect: String,
    },
}

impl Notice {
    /// How loudly to log it.
    pub fn level(&self) -> Level {
        match self {
            Notice::DriverVersion { .. } | Notice::NotInstalled { .. } | Notice::CpuInfoIncomplete { .. } => {
                Level::Info
            }
            Notice::NoGpus(NoGpus::FilteredOut { .. }) => Level::Warning,
            Notice::NoGpus(_) => Level::Info,
            Notice::ToolFailed { .. }
            | Notice::MixedMigModes { .. }
            | Notice::MigWithoutInstances
            | Notice::MigIgnoresSelection { .. }
            | Notice::RocmWithoutProductName { .. } => Level::Warning,
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::DriverVersion { vendor, version } => write!(f, "{vendor} driver version: {}", escape(version)),
            Notice::NotInstalled { tool } => {
                write!(f, "{tool} is not installed (not found on PATH), so no GPU of its vendor is used")
            }
            Notice::NoGpus(why) => write!(f, "{why}"),
            Notice::ToolFailed { error, then } => write!(f, "{error}; {then}"),
            Notice::MixedMigModes { modes } => write!(
                f,
                "nvidia-smi reports MIG modes \"{}\" for the GPUs; as in Determined's agent, the first GPU's mode \
                 alone decides between MIG instances and whole GPUs",
                escape(&modes.join(", "))
            ),
            Notice::MigWithoutInstances => f.write_str(
                "MIG mode is enabled but `nvidia-smi -L` lists no MIG instance, so whole GPUs are used as Determined's \
                 agent does; create GPU and compute instances (`nvidia-smi mig -cgi … -C`) to use MIG",
            ),
            Notice::MigIgnoresSelection { settings } => write!(
                f,
                "MIG instances are used, and {} applies to whole GPUs only: Determined's agent reports every MIG \
                 instance on the node",
                escape(&settings.join(" and ")),
            ),
            Notice::RocmWithoutProductName { error } => write!(
                f,
                "rocm-smi detected a card without a product name, firmware issue possible ({error}; the query without \
                 --showproductname worked)"
            ),
            Notice::CpuInfoIncomplete { path, field, effect } => {
                let path = path.display().to_string();
                let (path, effect) = (escape(&path), escape(effect));
                write!(f, "{path} has no \"{field}\" line, so {effect}, as Determined's agent reports it")
            }
        }
    }
}

/// Why the CPU device could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The cpuinfo file could not be read.
    #[error("cannot read {}: {error}; the CPU slot is described from this file (HOST_PROC, when set, replaces /proc)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The file lists no processor.
    #[error("{} lists no processor (no \"processor : N\" line), so there is no CPU to report", path.display())]
    NoProcessors {
        /// The file.
        path: PathBuf,
    },
}

/// Device detection failed, and the agent should not start: its `slot_type` asks for
/// devices that cannot be found or described.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// A vendor tool failed where the slot type depends on it.
    #[error("slot_type {slot_type}: {error}; {}", fix(*slot_type, error))]
    Tool {
        /// The slot type in force.
        slot_type: SlotType,
        /// What failed.
        error: ToolError,
    },
    /// `slot_type` names a GPU vendor and none of its GPUs is usable.
    #[error("slot_type {slot_type}: {reason}; {}", no_gpus_fix(*slot_type))]
    NoGpus {
        /// The slot type in force.
        slot_type: SlotType,
        /// Why there is none.
        reason: NoGpus,
    },
    /// The CPU device could not be made.
    #[error("{0}")]
    Cpu(CpuError),
}

fn fix(slot_type: SlotType, error: &ToolError) -> String {
    let other = match slot_type {
        SlotType::Auto => "set slot_type to cpu or none to start without GPUs",
        _ => "set slot_type to auto (GPUs when present, else the CPU), cpu or none",
    };
    match error {
        ToolError::NotFound { command } => {
            let tool = command.split(' ').next().unwrap_or_default();
            format!("install the GPU driver's {tool} where det-agent's PATH finds it, or {other}")
        }
        ToolError::Run { .. } | ToolError::Failed { .. } => {
            format!("run the command by hand to see why it fails and repair the driver, or {other}")
        }
        ToolError::Unparsable { .. } => format!(
            "run the command by hand; if its output looks as above, the driver prints a format Determined's agent \
             cannot read either; {other}"
        ),
    }
}

fn no_gpus_fix(slot_type: SlotType) -> &'static str {
    match slot_type {
        SlotType::Cuda | SlotType::Rocm => {
            "check visible_gpus and the *_VISIBLE_DEVICES variables, or set slot_type to auto, cpu or none \
             (an agent without slots)"
        }
        _ => "check visible_gpus and the *_VISIBLE_DEVICES variables",
    }
}

/// What looking for one vendor's GPUs came to.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// At least one GPU or MIG instance.
    Devices(Vec<Device>),
    /// The tool works and no GPU is usable.
    NoGpus(NoGpus),
    /// The vendor tool is not installed.
    NotInstalled(ToolError),
    /// The vendor tool failed, or printed what cannot be read.
    Failed(ToolError),
}

/// A line of tool output that cannot be read, before the command line is attached.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct BadOutput {
    pub line_number: Option<usize>,
    pub line: String,
    pub reason: String,
}

impl BadOutput {
    pub(crate) fn into_error(self, command: String) -> ToolError {
        ToolError::Unparsable { command, line_number: self.line_number, line: self.line, reason: self.reason }
    }

    pub(crate) fn empty() -> Self {
        BadOutput { line_number: None, line: String::new(), reason: "it is empty".to_owned() }
    }
}

impl From<csv::BadLine<'_>> for BadOutput {
    fn from(bad: csv::BadLine<'_>) -> Self {
        BadOutput { line_number: Some(bad.line_number), line: bad.line.to_owned(), reason: bad.reason.to_owned() }
    }
}
