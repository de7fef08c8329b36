//! Loading everything `det-agent run` needs before it touches the network, at start and
//! on every SIGHUP: the configuration, the proxy settings, the TLS client, and (when
//! `fluent.config_dir` is set) the Fluent Bit configuration that must trust the master
//! the same way.

use crate::config::ConfigArgs;
use crate::dial::ProxyConfigError;
use crate::error::ConfigError;
use crate::fluent_bit::{self, FluentError};
use crate::link::{LinkSettings, Target};
use crate::tls::TlsSetupError;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// A proxy variable cannot be used.
    #[error("{0}")]
    Proxy(#[from] ProxyConfigError),
    /// rustls refused the TLS settings (e.g. the client certificate).
    #[error("{0}")]
    Tls(#[from] TlsSetupError),
    /// The devices `slot_type` asks for cannot be found.
    #[error("{0}")]
    Devices(#[from] crate::devices::DetectError),
    /// The Fluent Bit configuration cannot be written for these settings.
    #[error("fluent.config_dir: {0}")]
    Fluent(#[from] FluentError),
}

/// Loads the configuration from `args` and the environment (`env`), and builds the
/// target to dial. When `fluent.config_dir` is set, the Fluent Bit configuration is
/// rewritten to match; if that fails, the configuration counts as bad, so at start the
/// daemon exits 2 and on reload the running configuration (and the old Fluent Bit
/// files) stay.
///
/// # Errors
/// [`LoadError`], before any network activity.
pub fn load(args: &ConfigArgs, env: &dyn Fn(&str) -> Option<String>) -> Result<Target, LoadError> {
    let config = args.load(env)?;
    for warning in &config.trust_file_warnings {
        tracing::warn!("{warning}");
    }
    let proxy = crate::dial::ProxyEnv::from_env(env)?;
    let settings = LinkSettings::limited(&config.link);
    // The vendor tools run here, at start and on each reload, not on every reconnect:
    // the master expects the same devices back.
    let detection = crate::devices::detect_this_node(&config.devices)?;
    for notice in &detection.notices {
        match notice.level() {
            crate::devices::Level::Warning => tracing::warn!("devices: {notice}"),
            _ => tracing::info!("devices: {notice}"),
        }
    }
    let devices = detection.devices.iter().map(crate::link::Device::from).collect();
    let target = Target::new(config, proxy, settings)?.with_devices(devices);
    if let Some(dir) = &target.config.fluent.config_dir {
        let (pipeline, written) = fluent_bit::io::write_for(&target.config, dir, target.config.fluent.format, None)?;
        let ca_file = written.ca_file.as_ref().map_or_else(|| "none".to_owned(), |p| p.display().to_string());
        let removed: Vec<String> = written.removed.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(
            config = %written.config.display(),
            %ca_file,
            removed = %removed.join(", "),
            "wrote the Fluent Bit configuration"
        );
        for warning in pipeline.warnings() {
            tracing::warn!("Fluent Bit: {warning}");
        }
    }
    Ok(target)
}
