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

    /// Starts the global subscriber. The filter is tracing-subscriber's `Targets` (a
    /// level, or `target=level` pairs), not `EnvFilter`: det-agent never filters on span
    /// fields, and `EnvFilter`'s regular-expression engine kept 0.34 MB of code resident
    /// in the idle daemon (README, "Memory").
    fn init(&self, log: &LogConfig) {
        use tracing_subscriber::{filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _};
        let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
        let from_env = rust_log.as_deref().map(str::parse::<Targets>);
        let filter = match &from_env {
            Some(Ok(targets)) => targets.clone(),
            // LogConfig has validated the level already.
            _ => log
                .level
                .as_str()
                .parse::<Targets>()
                .unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO)),
        };
        let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
        match self.format {
            LogFormat::Json => builder.json().finish().with(filter).init(),
            LogFormat::Text => {
                let ansi = log.color && std::io::IsTerminal::is_terminal(&std::io::stderr());
                builder.with_ansi(ansi).finish().with(filter).init();
            }
        }
        if let (Some(value), Some(Err(error))) = (&rust_log, &from_env) {
            tracing::warn!(
                "RUST_LOG={} is not a log filter ({error}); it takes a level (debug) or target=level pairs \
                 (det_agent=debug,rustls=trace); logging at {} instead",
                det_agent::text::quoted(value),
                log.level.as_str()
            );
        }
    }
}
