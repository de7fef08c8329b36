//! What this node offers and gives its tasks, as Determined's agent configures it: the
//! device options (`slot_type`, `visible_gpus`, `artificial_slots`), the proxy settings
//! passed to tasks, the `hooks.on_connection_lost` command, and the state file where the
//! master's identity is recorded for tasks.

use std::path::PathBuf;

use super::defaults::{default_state_file, DEFAULT_ARTIFICIAL_SLOTS, DEFAULT_SLOT_TYPE};
use super::names::*;
use super::parse;
use super::resolve::Resolver;
use crate::devices::{visible_gpus_from_environment, DetectOptions, SlotType};
use crate::error::ConfigError;

/// The most artificial slots accepted: far more than any test needs, and few enough that
/// a typo cannot make the agent's `AgentStarted` message too large for the master.
pub const MAX_ARTIFICIAL_SLOTS: u32 = 4096;

/// The `hooks` section: commands det-agent runs when something happens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hooks {
    /// `hooks.on_connection_lost`: a command as a list, program first, then its
    /// arguments (no shell). Empty: no hook.
    ///
    /// Determined's agent (`agent/internal/core.go`, `onConnectionLost`) runs it when it
    /// gives up on the master: its first connection failed, or `agent_reconnect_attempts`
    /// reconnects in a row failed. It runs it to completion with the agent's environment,
    /// no timeout and no added arguments, logs its output if it fails, and then exits 1
    /// either way. It does not run it when the master sends the agent away (past the
    /// reconnect period, `AgentShutdown`) or when the agent fails for another reason.
    /// Determined's documentation gives `["sudo", "shutdown", "now"]` as an example.
    pub on_connection_lost: Vec<String>,
}

/// The proxy settings Determined's agent passes to task containers (`http_proxy`,
/// `https_proxy`, `ftp_proxy`, `no_proxy`; `agent/internal/containers/spec.go`,
/// `addProxyInfo`). They are for tasks only: det-agent's own connection to the master
/// follows its process environment (`HTTPS_PROXY`, `NO_PROXY`), as Determined's does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskProxy {
    /// `http_proxy`, given to tasks as `HTTP_PROXY`.
    pub http_proxy: Option<String>,
    /// `https_proxy`, given to tasks as `HTTPS_PROXY`.
    pub https_proxy: Option<String>,
    /// `ftp_proxy`, given to tasks as `FTP_PROXY`.
    pub ftp_proxy: Option<String>,
    /// `no_proxy`, given to tasks as `NO_PROXY`.
    pub no_proxy: Option<String>,
}

impl TaskProxy {
    /// The variables a task gets, for the settings that are set, in this order:
    /// `HTTP_PROXY`, `HTTPS_PROXY`, `FTP_PROXY`, `NO_PROXY`. Upper-case names only, as
    /// Determined's agent sets them. Determined's agent lets a variable of the task's own
    /// (whatever its case) win over the one from here.
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        [
            ("HTTP_PROXY", &self.http_proxy),
            ("HTTPS_PROXY", &self.https_proxy),
            ("FTP_PROXY", &self.ftp_proxy),
            ("NO_PROXY", &self.no_proxy),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
        .collect()
    }
}

/// The file values this module resolves.
pub(super) struct NodeFile {
    pub(super) slot_type: Option<String>,
    pub(super) visible_gpus: Option<String>,
    pub(super) artificial_slots: Option<i64>,
    pub(super) http_proxy: Option<String>,
    pub(super) https_proxy: Option<String>,
    pub(super) ftp_proxy: Option<String>,
    pub(super) no_proxy: Option<String>,
    pub(super) on_connection_lost: Option<Vec<String>>,
    pub(super) state_file: Option<PathBuf>,
}

/// What [`Resolver::node`] resolves.
pub(super) struct Node {
    pub(super) devices: DetectOptions,
    pub(super) task_proxy: TaskProxy,
    pub(super) hooks: Hooks,
    pub(super) state_file: PathBuf,
}

impl Resolver<'_> {
    /// Devices, proxies for tasks, the hook and the state file, layered.
    pub(super) fn node(&self, file: NodeFile, agent_id: &str) -> Result<Node, ConfigError> {
        let a = self.args;
        let slot_type = self.pick_parsed(&SLOT_TYPE, &a.slot_type, file.slot_type, slot_type)?;
        let visible_gpus = self.pick_parsed(&VISIBLE_GPUS, &a.visible_gpus, file.visible_gpus, visible_gpus)?;
        let artificial = self.pick_parsed(&ARTIFICIAL_SLOTS, &a.artificial_slots, file.artificial_slots, slots)?;
        let devices = DetectOptions {
            slot_type: slot_type.map_or(DEFAULT_SLOT_TYPE, |s| s.value),
            // Determined's default, read at start: ROCR_VISIBLE_DEVICES, else CUDA_VISIBLE_DEVICES.
            visible_gpus: visible_gpus.map_or_else(|| visible_gpus_from_environment(self.env), |s| s.value),
            artificial_slots: artificial.map_or(DEFAULT_ARTIFICIAL_SLOTS, |s| s.value),
            ..DetectOptions::new(DEFAULT_SLOT_TYPE, agent_id)
        };
        let proxy = |opt: &Opt, flag: &Option<String>, file: Option<String>| {
            self.pick_parsed(opt, flag, file, proxy_value).map(|s| s.map(|s| s.value))
        };
        let task_proxy = TaskProxy {
            http_proxy: proxy(&HTTP_PROXY, &a.http_proxy, file.http_proxy)?,
            https_proxy: proxy(&HTTPS_PROXY, &a.https_proxy, file.https_proxy)?,
            ftp_proxy: proxy(&FTP_PROXY, &a.ftp_proxy, file.ftp_proxy)?,
            no_proxy: proxy(&NO_PROXY, &a.no_proxy, file.no_proxy)?,
        };
        let hooks = Hooks { on_connection_lost: self.hook(file.on_connection_lost)? };
        let state_file = self.file_path_value(&STATE_FILE, file.state_file)?;
        let state_file = self.pick(&STATE_FILE, &a.state_file, state_file, parse::path)?;
        let state_file = state_file.map_or_else(|| default_state_file().to_owned(), |s| s.value);
        Ok(Node { devices, task_proxy, hooks, state_file })
    }

    /// `hooks.on_connection_lost`, from the file only (as in Determined's agent).
    fn hook(&self, command: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
        let command = command.unwrap_or_default();
        let invalid = |expected: &str| ConfigError::Invalid {
            option: HOOK.key,
            origin: self.file_origin(&HOOK),
            value: command.join(" "),
            expected: expected.to_owned(),
        };
        match command.first() {
            None => Ok(command),
            Some(program) if program.trim().is_empty() => Err(invalid(
                "the first entry is the program to run and is blank; write the command as a list, program first: [\"sudo\", \"shutdown\", \"now\"]",
            )),
            Some(_) if command.iter().any(|arg| arg.contains('\0')) => {
                Err(invalid("an entry holds a NUL character, which no program argument can hold"))
            }
            Some(_) => Ok(command),
        }
    }
}

/// Exactly the values Determined's agent accepts (`check.In` in its options.go), in its
/// words.
fn slot_type(s: &str) -> Result<SlotType, String> {
    s.parse::<SlotType>().map_err(|_| {
        "it is not in {gpu, cuda, rocm, cpu, auto, none} (as Determined's agent checks it, in lower case; gpu is \
         the old name of cuda)"
            .to_owned()
    })
}

/// What `nvidia-smi --id=` and `rocm-smi -d` take: GPU indices or UUIDs, comma-separated.
/// Determined's agent passes the value on unchecked; an entry starting with `-` would
/// reach `rocm-smi` as an option of its own, so it is refused.
fn visible_gpus(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        return Err("expected GPU indices or UUIDs separated by commas, without control characters".to_owned());
    }
    if s.split(',').any(|entry| entry.trim_start().starts_with('-')) {
        return Err("expected GPU indices or UUIDs separated by commas (such as 0,1 or GPU-5c0b…); an entry starting with '-' would be read by rocm-smi as an option".to_owned());
    }
    Ok(s.to_owned())
}

fn slots(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(n) if n <= MAX_ARTIFICIAL_SLOTS => Ok(n),
        _ => Err(format!("expected a whole number of slots from 0 to {MAX_ARTIFICIAL_SLOTS}")),
    }
}

/// A proxy URL or host list, passed to tasks as it is: anything but control characters,
/// which would break the task's environment.
fn proxy_value(s: &str) -> Result<String, String> {
    if s.chars().any(char::is_control) {
        Err("expected a proxy URL (or, for no_proxy, a comma-separated host list) without control characters"
            .to_owned())
    } else {
        Ok(s.to_owned())
    }
}
