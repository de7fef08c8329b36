//! The environment a task launched on this node needs to reach the master with no
//! further configuration, with the names Determined's tasks and CLI read: what
//! Determined's agent adds to every task container (`agent/internal/containers/spec.go`:
//! the master's address, `DET_AGENT_ID`, `DET_CLUSTER_ID`, `DET_MASTER_ID`, the proxy
//! settings) and what its master adds for TLS (`master/pkg/tasks/task.go`).
//!
//! Where a value differs from what Determined sets, on purpose:
//! - `DET_MASTER_CERT_FILE`: Determined's master copies its own certificate into the
//!   container and names that copy (`/run/determined/etc/ssl/master.crt`). Here it is the
//!   file the agent pins (`master_cert`), or the path given as the task sees it; `noverify`
//!   under skip_verify (the CLI's word for "do not verify"); unset in CA mode.
//! - `DET_USE_TLS`: Determined's master sets it when the master itself has a certificate;
//!   here it says whether this agent reaches the master over TLS.
//! - `DET_MASTER`: an IPv6 host is bracketed (`https://[fd00::5]:8443`); Determined's
//!   agent writes it bare, which no URL parser reads.
//! - `DET_MASTER_PORT`: det-agent's default port follows the master's (8443 with TLS,
//!   8080 without), where Determined's agent defaults to 443 and 80.
//! - What belongs to one container (`DET_CONTAINER_ID`, `DET_SLOT_IDS`, the task's IDs
//!   and tokens) is not known outside a task, and not given.

use std::path::{Path, PathBuf};

use crate::config::{Config, Trust};
use crate::state_file::{self, MasterRecord, StateFileError};
use crate::text::escape;

/// `(name, value)` pairs, in a fixed order.
pub type TaskEnv = Vec<(&'static str, String)>;

/// Why no task environment can be given.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskEnvError {
    /// The master's chain is trusted only in the trust store, which a task cannot read,
    /// and no certificate file was named.
    #[error("the master's chain was trusted on first use and lives in the trust store ({url} in {}), not in a file a task can read; write it to a file the task can see and pass that path with --cert-file", store.display())]
    ChainOnlyInStore {
        /// The store entry's URL.
        url: String,
        /// The store file.
        store: PathBuf,
    },
}

/// The task environment for `config`, in this order: `DET_MASTER`, `DET_MASTER_HOST`,
/// `DET_MASTER_PORT`, `DET_MASTER_ADDR`, `DET_USE_TLS`, then when they apply
/// `DET_MASTER_CERT_FILE` and `DET_MASTER_CERT_NAME`, then `DET_AGENT_ID`, then
/// `DET_CLUSTER_ID` and `DET_MASTER_ID` from `master` when given, then `HTTP_PROXY`,
/// `HTTPS_PROXY`, `FTP_PROXY`, `NO_PROXY` for the proxy settings that are set.
///
/// The master is addressed as tasks see it (`container_master_host`/`container_master_port`
/// when set). `cert_file` is the path of the master's certificate as the task will see
/// it; by default the pinned `master_cert` path. `master` is the record [`master_record`]
/// finds.
///
/// # Errors
/// The master's chain is only in the trust store and no `cert_file` was given: a task
/// needs a file.
pub fn task_env(
    config: &Config,
    cert_file: Option<&Path>,
    master: Option<&MasterRecord>,
) -> Result<TaskEnv, TaskEnvError> {
    let host = config.container_master_host.as_ref().unwrap_or(&config.master_host);
    let port = config.container_master_port.unwrap_or(config.master_port);
    let tls = config.tls.as_ref();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host_text = host.to_string();
    let mut env: TaskEnv = vec![
        ("DET_MASTER", format!("{scheme}://{}", crate::config::authority(host, port))),
        ("DET_MASTER_HOST", host_text.clone()),
        ("DET_MASTER_PORT", port.to_string()),
        ("DET_MASTER_ADDR", host_text),
        ("DET_USE_TLS", tls.is_some().to_string()),
    ];
    let cert_file = match tls.map(|t| &t.trust) {
        None | Some(Trust::PublicRoots) => cert_file.map(Path::to_owned),
        // The CLI and SDK read this value as "do not verify".
        Some(Trust::SkipVerify) => Some(PathBuf::from("noverify")),
        Some(Trust::Pinned(pinned)) => match (cert_file, &pinned.store_entry) {
            (Some(path), _) => Some(path.to_owned()),
            (None, None) => Some(std::path::absolute(&pinned.path).unwrap_or_else(|_| pinned.path.clone())),
            (None, Some(url)) => {
                return Err(TaskEnvError::ChainOnlyInStore { url: url.clone(), store: pinned.path.clone() })
            }
        },
    };
    if let Some(path) = cert_file {
        env.push(("DET_MASTER_CERT_FILE", path.display().to_string()));
    }
    if let Some(name) = tls.and_then(|t| t.master_cert_name.as_ref()) {
        env.push(("DET_MASTER_CERT_NAME", name.as_ref().to_owned()));
    }
    env.push(("DET_AGENT_ID", config.agent_id.clone()));
    if let Some(master) = master {
        env.push(("DET_CLUSTER_ID", master.cluster_id.clone()));
        env.push(("DET_MASTER_ID", master.master_id.clone()));
    }
    env.extend(config.task_proxy.vars());
    Ok(env)
}

/// What the state file says about the configured master.
#[derive(Debug)]
pub enum MasterLookup {
    /// A record about this master.
    Found(MasterRecord),
    /// No state file: `det-agent run` has not been accepted by a master yet (or writes
    /// elsewhere).
    Absent {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A record about another master, so not used.
    OtherMaster {
        /// The file.
        path: PathBuf,
        /// The record.
        record: MasterRecord,
        /// The master configured now.
        configured: String,
    },
    /// The file cannot be used.
    Unreadable(StateFileError),
}

impl MasterLookup {
    /// The record, when it is about the configured master.
    pub fn record(&self) -> Option<&MasterRecord> {
        match self {
            MasterLookup::Found(record) => Some(record),
            _ => None,
        }
    }

    /// Why `DET_CLUSTER_ID` and `DET_MASTER_ID` are missing, in words; `None` when found.
    pub fn why_missing(&self) -> Option<String> {
        let what = "DET_CLUSTER_ID and DET_MASTER_ID are not set";
        match self {
            MasterLookup::Found(_) => None,
            MasterLookup::Absent { path } => Some(format!(
                "{what}: no state file at {} yet; `det-agent run` writes it when the master accepts the agent (state_file names it)",
                path.display()
            )),
            MasterLookup::OtherMaster { path, record, configured } => Some(format!(
                "{what}: the state file {} is about the master at {}, not the one configured ({configured}); `det-agent run` replaces it when this master accepts the agent",
                path.display(),
                escape(&record.master)
            )),
            MasterLookup::Unreadable(error) => Some(format!("{what}: {error}")),
        }
    }
}

/// Reads `config.state_file` and keeps its record when it is about the configured master.
pub fn master_record(config: &Config) -> MasterLookup {
    let path = &config.state_file;
    match state_file::read(path) {
        Ok(None) => MasterLookup::Absent { path: path.clone() },
        Ok(Some(record)) => {
            let configured = state_file::master_of(config);
            if record.master == configured {
                MasterLookup::Found(record)
            } else {
                MasterLookup::OtherMaster { path: path.clone(), record, configured }
            }
        }
        Err(error) => MasterLookup::Unreadable(error),
    }
}

/// `export NAME='value'` lines, each value single-quoted so a shell takes it literally.
pub fn to_shell(env: &TaskEnv) -> String {
    env.iter().map(|(name, value)| format!("export {name}={}\n", shell_quote(value))).collect()
}

/// A JSON object of the variables.
pub fn to_json(env: &TaskEnv) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        env.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone()))).collect();
    serde_json::to_string_pretty(&map).unwrap_or_default()
}

/// POSIX single quoting: everything is literal inside '…', and a `'` is written '\''.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests;
