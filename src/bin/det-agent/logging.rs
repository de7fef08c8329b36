//! Logging: the global flags layered over the configuration's `log` keys.

use det_agent::config::{ConfigArgs, LogConfig};
use tracing_subscriber::filter::{LevelFilter, Targets};

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
        use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
        let level = log.level.as_str();
        let configured = parse_level(level).unwrap_or(LevelFilter::INFO);
        let rust_log = std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty());
        let from_env = rust_log.as_deref().map(|v| rust_log_filter(v, configured));
        let filter = match &from_env {
            Some(Ok(targets)) => targets.clone(),
            _ => Targets::new().with_default(configured),
        };
        // A log line that cannot be written (journald restarted, the reader of a pipe gone)
        // is dropped. By default tracing-subscriber reports that with eprintln!, which
        // panics on the same broken stderr and so ended the daemon.
        let builder = tracing_subscriber::fmt().with_writer(std::io::stderr).log_internal_errors(false);
        match self.format {
            LogFormat::Json => builder.json().finish().with(filter).init(),
            LogFormat::Text => {
                let ansi = log.color && std::io::IsTerminal::is_terminal(&std::io::stderr());
                builder.with_ansi(ansi).finish().with(filter).init();
            }
        }
        if let (Some(value), Some(Err(why))) = (&rust_log, &from_env) {
            // At error, so that the configured level never hides it.
            tracing::error!(
                "RUST_LOG={} is not a log filter: {why}; it takes a level (debug) and target=level pairs \
                 (det_agent=debug,rustls=trace); logging at {level} instead",
                det_agent::text::quoted(value),
            );
        }
    }
}

/// `RUST_LOG` as a filter: comma-separated directives, each a level (for every target) or
/// `target=level`; without a bare level, other targets log at `configured`. Checked here
/// rather than by `Targets`' own parser, which reads any word that is not a level as a
/// target at TRACE: `RUST_LOG=warning` would enable a target named "warning" and silence
/// every other line, the "master identity NOT verified" warning included.
fn rust_log_filter(value: &str, configured: LevelFilter) -> Result<Targets, String> {
    let mut targets = Targets::new().with_default(configured);
    for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        targets = match directive.split_once('=') {
            None => targets.with_default(parse_level(directive)?),
            Some((target, level)) => {
                let is_path = target.split("::").all(|part| {
                    let mut chars = part.chars();
                    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                if !is_path {
                    return Err(format!(
                        "{} is not a target (a Rust module path such as det_agent or rustls::client)",
                        det_agent::text::quoted(target)
                    ));
                }
                targets.with_target(target, parse_level(level.trim())?)
            }
        };
    }
    Ok(targets)
}

/// A level by name, as `RUST_LOG` and `log.level` write it.
fn parse_level(text: &str) -> Result<LevelFilter, String> {
    Ok(match text.to_ascii_lowercase().as_str() {
        "off" => LevelFilter::OFF,
        "error" => LevelFilter::ERROR,
        "warn" => LevelFilter::WARN,
        "info" => LevelFilter::INFO,
        "debug" => LevelFilter::DEBUG,
        "trace" => LevelFilter::TRACE,
        _ => {
            let name = det_agent::text::quoted(text);
            return Err(format!("{name} is not a level (off, error, warn, info, debug, trace)"));
        }
    })
}
