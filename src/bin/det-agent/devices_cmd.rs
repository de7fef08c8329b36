//! What `check` shows of the devices this node would report, and the configuration's
//! warnings (ignored options, files deciding trust that others can change).

use det_agent::devices;
use det_agent::text::escape;

/// The devices this node would report to the master, for `check`.
pub(crate) struct DeviceCheck(Result<devices::Detection, String>);

/// Detects the devices as `run` will, on a blocking thread: the vendor tools run under
/// their timeout.
pub(crate) async fn detect_devices(config: &det_agent::Config) -> DeviceCheck {
    let options = config.devices.clone();
    let found = tokio::task::spawn_blocking(move || devices::detect_this_node(&options)).await;
    DeviceCheck(match found {
        Ok(found) => found.map_err(|e| e.to_string()),
        Err(e) => Err(format!("device detection stopped: {e}")),
    })
}

impl DeviceCheck {
    pub(crate) fn is_ok(&self) -> bool {
        self.0.is_ok()
    }

    /// The devices after the report, in its layout.
    pub(crate) fn to_text(&self, config: &det_agent::Config) -> String {
        let options = &config.devices;
        let mut text = match &self.0 {
            Err(error) => {
                return format!("devices        FAILED (slot_type {}): {error}\n", options.slot_type);
            }
            Ok(found) => format!(
                "devices        {} as the master will see them (slot_type {})\n",
                found.devices.len(),
                options.slot_type
            ),
        };
        if let Ok(found) = &self.0 {
            for device in &found.devices {
                text.push_str(&format!("  device       {device}, uuid {}\n", escape(&device.uuid)));
            }
            for notice in &found.notices {
                let label = if notice.level() == devices::Level::Warning { "warning" } else { "note" };
                text.push_str(&format!("  {label:<12} {notice}\n"));
            }
        }
        text
    }

    /// The devices as a JSON object: the slot type, the devices as the master receives
    /// them, the notices, or the error.
    pub(crate) fn to_json(&self, config: &det_agent::Config) -> serde_json::Value {
        let slot_type = config.devices.slot_type.as_str();
        match &self.0 {
            Ok(found) => {
                let notices: Vec<serde_json::Value> = found
                    .notices
                    .iter()
                    .map(|n| {
                        let level = if n.level() == devices::Level::Warning { "warning" } else { "info" };
                        serde_json::json!({"level": level, "message": n.to_string()})
                    })
                    .collect();
                serde_json::json!({"slot_type": slot_type, "ok": true, "devices": found.devices, "notices": notices})
            }
            Err(error) => serde_json::json!({"slot_type": slot_type, "ok": false, "error": error}),
        }
    }
}

/// The configuration's warnings, for `check` and `fluent-bit`: the one about ignored
/// options of Determined's agent, then one for each file deciding trust that another
/// local user can change or read (already escaped where it shows a path).
pub(crate) fn warn_config(config: &det_agent::Config) {
    warn_ignored(config);
    for warning in &config.trust_file_warnings {
        eprintln!("det-agent: warning: {warning}");
    }
}

/// Only the warning about ignored options, for `task-env`: it runs for every task, whose
/// output is no place for the node's trust-file warnings (`check` and `run` say them).
pub(crate) fn warn_ignored(config: &det_agent::Config) {
    if let Some(warning) = config.ignored_warning() {
        eprintln!("det-agent: warning: {}", escape(&warning));
    }
}
