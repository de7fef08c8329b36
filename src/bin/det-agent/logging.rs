//! Logging: the global flags layered over the configuration's `log` keys.

use det_agent::config::{ConfigArgs, LogConfig};

use crate::{env, CliError, LogFormat};

/// The global logging flags, applied once the configuration (which may set the level and
/// color too) is loaded, so that its errors are printed plainly, before any logging.
pub(crate) struct Logging {
    pub(crate) level: Option<String>,
    pub(crate) color: Option<String>,
    pub(crate) format: LogFormat,
}

impl Logging {
    /// Loads the configuration, the global flags layered over it, then starts logging.
    pub(crate) fn load(&self, mut args: ConfigArgs) -> Result<(ConfigArgs, det_agent::Config), CliError> {
        args.log_level.clone_from(&self.level);
        args.log_color.clone_from(&self.color);
        let config = args.load(&env)?;
        self.init(&config.log);
        Ok((args, config))
    }

    /// Starts logging from the flags and the environment, for a command without a
    /// configuration.
    pub(crate) fn init_without_config(&self) -> Result<(), CliError> {
        let log = LogConfig::from_flags(self.level.as_deref(), self.color.as_deref(), &env)?;
        self.init(&log);
        Ok(())
    }

    fn init(&self, log: &LogConfig) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(log.level.as_str()));
        let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
        match self.format {
            LogFormat::Json => builder.json().init(),
            LogFormat::Text => {
                builder.with_ansi(log.color && std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
            }
        }
    }
}
