//! `hooks.on_connection_lost`: the command Determined's agent runs when it gives up on
//! the master (`agent/internal/core.go`, `onConnectionLost`): the program and its
//! arguments as configured (no shell), with the agent's environment, run to completion;
//! its output is logged when it fails. det-agent runs it when `agent_reconnect_attempts`
//! is exhausted, before it exits 1 (it never gives up otherwise).

use std::process::Stdio;

use tracing::{error, info, warn};

use crate::config::Hooks;
use crate::text::escape;

/// Runs `hooks.on_connection_lost`, if one is set, and waits for it.
pub async fn on_connection_lost(hooks: &Hooks) {
    let Some((program, args)) = hooks.on_connection_lost.split_first() else { return };
    let shown = hooks.on_connection_lost.iter().map(|a| escape(a).into_owned()).collect::<Vec<_>>().join(" ");
    info!(command = %shown, "running hooks.on_connection_lost");
    let run = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await;
    match run {
        Ok(out) if out.status.success() => info!(command = %shown, "hooks.on_connection_lost finished"),
        Ok(out) => {
            let output = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
            let status = out.status.code().map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
            warn!(command = %shown, output = %escape(output.trim()), "hooks.on_connection_lost failed with {status}");
        }
        Err(err) => error!(command = %shown, %err, "cannot run hooks.on_connection_lost"),
    }
}
