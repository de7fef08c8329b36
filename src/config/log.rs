//! The logging settings: `log.level` (`-l`/`--log-level`, `DET_LOG_LEVEL`), `log.color`
//! (`--log-color`, `DET_LOG_COLOR`) and `debug`, as Determined's agent names them
//! (`master/pkg/config/logging.go`: a logrus level and a color switch).
//!
//! Determined's agent parses and checks these but, in the versions read (0.38), never
//! applies them (its init.go keeps `TODO(DET-8884): Configure log level through agent
//! config file`); det-agent applies them. `debug`, which Determined's agent only passed to
//! its removed Singularity and Podman runtimes, and which its documentation describes as
//! "a more verbose form of logging", makes `debug` the level when no level is set.

use std::fmt;
use std::str::FromStr;

use super::defaults::{DEFAULT_LOG_COLOR, DEFAULT_LOG_LEVEL};
use super::file::FileLog;
use super::names::{DEBUG, LOG_COLOR, LOG_LEVEL};
use super::parse;
use super::resolve::Resolver;
use crate::error::ConfigError;

/// How much is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Errors only (logrus `panic` and `fatal` read as this too).
    Error,
    /// Warnings and errors (`warn` or logrus' `warning`).
    Warn,
    /// The default.
    Info,
    /// More detail.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// The level's name as a `tracing` filter reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level that is neither one of logrus' (which Determined's agent checks `log.level`
/// against) nor one of det-agent's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected one of error, warn, info, debug, trace (or logrus' panic, fatal, warning, as Determined's agent accepts them)")]
pub struct LogLevelError;

/// logrus' `ParseLevel` names, in any case, as Determined's agent validates `log.level`:
/// `panic`, `fatal`, `error`, `warn`, `warning`, `info`, `debug`, `trace`.
impl FromStr for LogLevel {
    type Err = LogLevelError;

    fn from_str(s: &str) -> Result<Self, LogLevelError> {
        match s.to_ascii_lowercase().as_str() {
            "panic" | "fatal" | "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(LogLevelError),
        }
    }
}

/// The logging settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogConfig {
    /// What is logged: `log.level` when set, else `debug` when `debug` is on, else
    /// [`DEFAULT_LOG_LEVEL`]. `RUST_LOG`, when set, replaces it (a developer's filter).
    pub level: LogLevel,
    /// `log.color`: color the log when it goes to a terminal. Never colored elsewhere.
    pub color: bool,
    /// `debug`: whether it was on (it has already chosen `level`).
    pub debug: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: DEFAULT_LOG_LEVEL, color: DEFAULT_LOG_COLOR, debug: false }
    }
}

impl LogConfig {
    /// The settings from the global flags and the environment only, for the commands
    /// that load no configuration (`trust`, `demo`, `dev-master`). `level` and `color`
    /// are the `--log-level` and `--log-color` flags' text.
    ///
    /// # Errors
    /// A blank or invalid level or color.
    pub fn from_flags(
        level: Option<&str>,
        color: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<LogConfig, ConfigError> {
        let args = super::ConfigArgs {
            log_level: level.map(str::to_owned),
            log_color: color.map(str::to_owned),
            ..super::ConfigArgs::default()
        };
        let sources = super::read::Sources::default();
        Resolver { args: &args, env, sources: &sources }.log(None, None)
    }
}

impl Resolver<'_> {
    /// `log.*` and `debug`, layered.
    pub(super) fn log(&self, file: Option<FileLog>, debug: Option<bool>) -> Result<LogConfig, ConfigError> {
        let a = self.args;
        let file = file.unwrap_or_default();
        let level = self
            .pick_parsed(&LOG_LEVEL, &a.log_level, file.level, |s| s.parse::<LogLevel>().map_err(|e| e.to_string()))?;
        let color = self.pick(&LOG_COLOR, &a.log_color, file.color.map(|b| b.0), parse::boolean)?;
        let debug = self.pick(&DEBUG, &a.debug, debug, parse::boolean)?.is_some_and(|s| s.value);
        let level = match level {
            Some(level) => level.value,
            None if debug => LogLevel::Debug,
            None => DEFAULT_LOG_LEVEL,
        };
        Ok(LogConfig { level, color: color.map_or(DEFAULT_LOG_COLOR, |s| s.value), debug })
    }
}
