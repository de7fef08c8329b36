//! The layering: each option from a flag, else its environment variable, else the file,
//! else its default; every value checked, whatever its source; and [`ConfigArgs::load`],
//! which reads the file and resolves a [`Config`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults::{self, default_agent_id, DEFAULT_PLAIN_PORT, DEFAULT_TLS_PORT};
use super::file::{Field, FileConfig, FileFluent, NULL_FOUND};
use super::names::*;
use super::node::NodeFile;
use super::parse::{self, MAX_BACKOFF_SECS};
use super::read::{self, Sources};
use super::FluentFormat as Format;
use super::{Config, ConfigArgs, ExpiryDays, FluentConfig, Host, LinkLimits, Listen, MetricsConfig};
use crate::error::{ConfigError, Origin};

/// A value and where it came from.
pub(super) struct Setting<T> {
    /// The value.
    pub(super) value: T,
    /// Where it came from.
    pub(super) origin: Origin,
}

impl ConfigArgs {
    /// Loads the configuration files, layers environment and flags over them, and checks
    /// the result. The files, in order, later ones winning key by key:
    /// `--config-file` (else `$DET_CONFIG_FILE`), then each `--config`; when none is
    /// named, [`DEFAULT_CONFIG_PATH`](super::DEFAULT_CONFIG_PATH) if it exists.
    ///
    /// `env` looks up an environment variable; pass `|k| std::env::var(k).ok()` in a
    /// program. Empty variables count as unset.
    ///
    /// # Errors
    /// Any [`ConfigError`]: a file is unreadable or malformed, a value has the wrong
    /// form, options contradict each other, or a certificate or key file cannot be used.
    pub fn load(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let (file, sources) = read::read_all(&self.files(env)?)?;
        Resolver { args: self, env, sources: &sources }.resolve(file)
    }

    /// The configuration files to read, in order.
    pub(super) fn files(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<PathBuf>, ConfigError> {
        let sources = Sources::default();
        let resolver = Resolver { args: self, env, sources: &sources };
        let mut paths: Vec<PathBuf> = match resolver.flag_or_env(&CONFIG_FILE, &self.config_file)? {
            Some((path, _)) => vec![PathBuf::from(path)],
            None => Vec::new(),
        };
        paths.extend(self.config.iter().cloned());
        if paths.is_empty() {
            paths.extend(Some(PathBuf::from(defaults::DEFAULT_CONFIG_PATH)).filter(|p| p.exists()));
        }
        Ok(paths)
    }
}

pub(super) struct Resolver<'a> {
    pub(super) args: &'a ConfigArgs,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
    pub(super) sources: &'a Sources,
}

impl Resolver<'_> {
    /// The text of one option from a flag, else from the environment, and where it came
    /// from. An environment variable that is exactly empty counts as unset (that is how
    /// shells and systemd unset one), except for the `security.` options: there an empty
    /// variable is more often a template whose value went missing
    /// (`DET_SECURITY_TLS_MASTER_KEY_PINS=${PINS}`), and reading it as unset would weaken
    /// how the master is trusted, so it is an error. A blank flag or a whitespace-only
    /// variable is an error for every option.
    pub(super) fn flag_or_env(
        &self,
        opt: &Opt,
        flag: &Option<String>,
    ) -> Result<Option<(String, Origin)>, ConfigError> {
        let from_env = (self.env)(opt.env).filter(|v| !v.is_empty() || opt.key.starts_with("security."));
        let text = match (flag, from_env) {
            (Some(v), _) => Some((v.clone(), Origin::Flag(opt.flag))),
            (None, Some(v)) => Some((v, Origin::Env(opt.env))),
            (None, None) => None,
        };
        match text {
            Some((value, origin)) if value.trim().is_empty() => Err(blank(opt, origin, &value)),
            text => Ok(text),
        }
    }

    /// Picks the highest-precedence value of one option and parses it.
    pub(super) fn pick<T>(
        &self,
        opt: &Opt,
        flag: &Option<String>,
        file: Option<T>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Setting<T>>, ConfigError> {
        match self.flag_or_env(opt, flag)? {
            Some((value, origin)) => match parse(&value) {
                Ok(v) => Ok(Some(Setting { value: v, origin })),
                Err(expected) => Err(ConfigError::Invalid { option: opt.key, origin, value, expected }),
            },
            None => Ok(file.map(|value| Setting { value, origin: self.file_origin(opt) })),
        }
    }

    /// Like [`pick`](Self::pick), for options whose file value must pass the same parser
    /// as a flag or the environment: YAML has checked its type, but not what the type
    /// cannot say (port 0, an empty agent ID, a host that is a URL).
    pub(super) fn pick_parsed<T>(
        &self,
        opt: &Opt,
        flag: &Option<String>,
        file: Option<impl ToString>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Setting<T>>, ConfigError> {
        let file = file
            .map(|v| {
                let text = v.to_string();
                if text.trim().is_empty() {
                    return Err(blank(opt, self.file_origin(opt), &text));
                }
                parse(&text).map_err(|expected| ConfigError::Invalid {
                    option: opt.key,
                    origin: self.file_origin(opt),
                    value: text,
                    expected,
                })
            })
            .transpose()?;
        self.pick(opt, flag, file, parse)
    }

    /// The file that set `opt` (the last one read when none did: only a message about
    /// a file as a whole asks).
    pub(super) fn file_origin(&self, opt: &Opt) -> Origin {
        let path = self.sources.file_of(opt.key).or(self.sources.paths.last().map(PathBuf::as_path));
        Origin::File(path.map(Path::to_owned).unwrap_or_default())
    }

    /// A path from the file is relative to the file's folder; one from a flag or the
    /// environment is relative to the working directory.
    pub(super) fn file_relative(&self, opt: &Opt, path: PathBuf) -> PathBuf {
        match self.sources.file_of(opt.key).and_then(Path::parent) {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    }

    /// A `security.tls` key from the file: absent is "not set", a key without a value an
    /// error.
    pub(super) fn tls_key<T>(&self, opt: &Opt, field: Field<T>) -> Result<Option<T>, ConfigError> {
        match field {
            Field::Absent => Ok(None),
            Field::Null => Err(ConfigError::Blank {
                option: opt.key,
                origin: self.file_origin(opt),
                found: NULL_FOUND.to_owned(),
                expected: opt.value,
            }),
            Field::Value(value) => Ok(Some(value)),
        }
    }

    /// A path from the file: a blank one is an error (`""` would otherwise name the
    /// file's own folder), a relative one follows the file.
    pub(super) fn file_path_value(&self, opt: &Opt, path: Option<PathBuf>) -> Result<Option<PathBuf>, ConfigError> {
        match path {
            Some(path) if path.to_string_lossy().trim().is_empty() => {
                Err(blank(opt, self.file_origin(opt), &path.to_string_lossy()))
            }
            path => Ok(path.map(|p| self.file_relative(opt, p))),
        }
    }

    /// Text from the file; a blank one is an error.
    pub(super) fn file_text(&self, opt: &Opt, text: Option<String>) -> Result<Option<String>, ConfigError> {
        match text {
            Some(text) if text.trim().is_empty() => Err(blank(opt, self.file_origin(opt), &text)),
            text => Ok(text),
        }
    }

    pub(super) fn resolve(&self, file: FileConfig) -> Result<Config, ConfigError> {
        let a = self.args;
        let ftls = file.security.and_then(|s| s.tls).unwrap_or_default();

        let master_host = self
            .pick_parsed(&MASTER_HOST, &a.master_host, file.master_host, |s| Host::parse(s).map_err(|e| e.to_string()))?
            .ok_or(ConfigError::Missing { option: MASTER_HOST.key, flag: MASTER_HOST.flag, env: MASTER_HOST.env })?;
        let master_port = self.pick_parsed(&MASTER_PORT, &a.master_port, file.master_port, parse::port)?;
        let agent_id = self.pick_parsed(&AGENT_ID, &a.agent_id, file.agent_id, parse::label)?;
        let resource_pool = self.pick_parsed(&RESOURCE_POOL, &a.resource_pool, file.resource_pool, parse::label)?;
        let container_master_host =
            self.pick_parsed(&CONTAINER_HOST, &a.container_master_host, file.container_master_host, |s| {
                Host::parse(s).map_err(|e| e.to_string())
            })?;
        let container_master_port =
            self.pick_parsed(&CONTAINER_PORT, &a.container_master_port, file.container_master_port, parse::port)?;
        let attempts =
            self.pick(&ATTEMPTS, &a.agent_reconnect_attempts, file.agent_reconnect_attempts, parse::attempts)?;
        let backoff = self.pick(&BACKOFF, &a.agent_reconnect_backoff, file.agent_reconnect_backoff, parse::seconds)?;
        let backoff = match backoff {
            Some(s) => check_backoff(&BACKOFF, s)?,
            None => defaults::DEFAULT_RECONNECT_BACKOFF,
        };
        let backoff_max =
            self.pick(&BACKOFF_MAX, &a.agent_reconnect_backoff_max, file.agent_reconnect_backoff_max, parse::seconds)?;
        let backoff_max = match backoff_max {
            Some(s) => {
                let origin = s.origin.clone();
                let max = check_backoff(&BACKOFF_MAX, s)?;
                if max < backoff {
                    return Err(ConfigError::Invalid {
                        option: BACKOFF_MAX.key,
                        origin,
                        value: max.as_secs_f64().to_string(),
                        expected: format!(
                            "expected at least agent_reconnect_backoff ({} s): the cap cannot be below the base",
                            backoff.as_secs_f64()
                        ),
                    });
                }
                max
            }
            None => defaults::DEFAULT_RECONNECT_BACKOFF_MAX.max(backoff),
        };
        let max_message_size =
            self.pick_parsed(&MAX_MESSAGE, &a.max_message_size, file.max_message_size, parse::message_size)?;

        let connect_timeout =
            self.pick_parsed(&CONNECT_TIMEOUT, &a.connect_timeout, file.connect_timeout, parse::timeout)?;
        let handshake_timeout =
            self.pick_parsed(&HANDSHAKE_TIMEOUT, &a.handshake_timeout, file.handshake_timeout, parse::timeout)?;
        let inbound_messages = self.pick_parsed(
            &INBOUND_MESSAGES,
            &a.inbound_buffer_messages,
            file.inbound_buffer_messages,
            parse::buffer_messages,
        )?;
        let inbound_bytes =
            self.pick_parsed(&INBOUND_BYTES, &a.inbound_buffer_bytes, file.inbound_buffer_bytes, parse::buffer_bytes)?;
        let link = LinkLimits {
            connect_timeout: connect_timeout.map_or(defaults::DEFAULT_CONNECT_TIMEOUT, |s| s.value),
            handshake_timeout: handshake_timeout.map_or(defaults::DEFAULT_HANDSHAKE_TIMEOUT, |s| s.value),
            inbound_buffer_messages: inbound_messages.map_or(defaults::DEFAULT_INBOUND_BUFFER_MESSAGES, |s| s.value),
            inbound_buffer_bytes: inbound_bytes.map_or(defaults::DEFAULT_INBOUND_BUFFER_BYTES, |s| s.value),
        };
        let warning_days = self.pick_parsed(
            &CERT_WARNING_DAYS,
            &a.certificate_warning_days,
            file.certificate_warning_days,
            parse::days,
        )?;
        let error_days =
            self.pick_parsed(&CERT_ERROR_DAYS, &a.certificate_error_days, file.certificate_error_days, parse::days)?;
        let warning = warning_days.map_or(defaults::DEFAULT_CERT_WARNING_DAYS, |s| s.value);
        let error = match error_days {
            Some(s) if s.value > warning => {
                return Err(ConfigError::Invalid {
                    option: CERT_ERROR_DAYS.key,
                    origin: s.origin,
                    value: s.value.to_string(),
                    expected: format!(
                        "expected at most certificate_warning_days ({warning}): the error window lies inside the warning window"
                    ),
                })
            }
            Some(s) => s.value,
            None => defaults::DEFAULT_CERT_ERROR_DAYS.min(warning),
        };
        let certificate_expiry = ExpiryDays { warning, error };

        let tls_settings = self.tls_settings(ftls)?;
        let fluent = self.fluent(file.fluent.unwrap_or_default())?;
        let metrics_listen = file.metrics.and_then(|m| m.listen);
        let metrics_listen = self.pick_parsed(&METRICS_LISTEN, &a.metrics_listen, metrics_listen, |s| {
            s.parse::<Listen>().map_err(|e| e.to_string())
        })?;

        let log = self.log(file.log, file.debug.map(|b| b.0))?;
        let agent_id = agent_id.map_or_else(default_agent_id, |s| s.value);
        let node = self.node(
            NodeFile {
                slot_type: file.slot_type,
                visible_gpus: file.visible_gpus,
                artificial_slots: file.artificial_slots,
                http_proxy: file.http_proxy,
                https_proxy: file.https_proxy,
                ftp_proxy: file.ftp_proxy,
                no_proxy: file.no_proxy,
                on_connection_lost: file.hooks.and_then(|h| h.on_connection_lost),
                state_file: file.state_file,
            },
            &agent_id,
        )?;
        let ignored = self.ignored();
        let tls = self.tls(tls_settings, &master_host.value, master_port.as_ref().map(|s| s.value))?;
        let trust_file_warnings = super::trust_file_warnings(tls.as_ref(), self.env);

        let default_port = if tls.is_some() { DEFAULT_TLS_PORT } else { DEFAULT_PLAIN_PORT };
        Ok(Config {
            master_host: master_host.value,
            master_port: master_port.map_or(default_port, |s| s.value),
            agent_id,
            resource_pool: resource_pool.map_or_else(|| defaults::DEFAULT_RESOURCE_POOL.to_owned(), |s| s.value),
            container_master_host: container_master_host.map(|s| s.value),
            container_master_port: container_master_port.map(|s| s.value),
            agent_reconnect_attempts: attempts.map_or(defaults::DEFAULT_RECONNECT_ATTEMPTS, |s| s.value),
            agent_reconnect_backoff: backoff,
            agent_reconnect_backoff_max: backoff_max,
            max_message_size: max_message_size.map_or(defaults::DEFAULT_MAX_MESSAGE_SIZE, |s| s.value),
            link,
            certificate_expiry,
            tls,
            fluent,
            files: self.sources.paths.clone(),
            metrics: MetricsConfig { listen: metrics_listen.map(|s| s.value) },
            log,
            devices: node.devices,
            task_proxy: node.task_proxy,
            hooks: node.hooks,
            state_file: node.state_file,
            ignored,
            trust_file_warnings,
        })
    }

    fn fluent(&self, file: FileFluent) -> Result<FluentConfig, ConfigError> {
        let a = self.args;
        let defaults = FluentConfig::default();
        let file_dir = self.file_path_value(&FLUENT_DIR, file.config_dir)?;
        let config_dir = self.pick(&FLUENT_DIR, &a.fluent_config_dir, file_dir, parse::path)?;
        let format = self.pick_parsed(&FLUENT_FORMAT, &a.fluent_format, file.format, |s| {
            s.parse::<Format>().map_err(|e| e.to_string())
        })?;
        let listen = self.pick_parsed(&FLUENT_LISTEN, &a.fluent_listen, file.listen, parse::ip)?;
        let port = self.pick_parsed(&FLUENT_PORT, &a.fluent_port, file.port, parse::port)?;
        let flush = self.pick_parsed(&FLUENT_FLUSH, &a.fluent_flush, file.flush, parse::flush)?;
        Ok(FluentConfig {
            config_dir: config_dir.map(|s| s.value),
            format: format.map_or(defaults.format, |s| s.value),
            listen: listen.map_or(defaults.listen, |s| s.value),
            port: port.map_or(defaults.port, |s| s.value),
            flush_secs: flush.map_or(defaults.flush_secs, |s| s.value),
        })
    }
}

fn check_backoff(opt: &Opt, s: Setting<f64>) -> Result<Duration, ConfigError> {
    if s.value.is_finite() && (0.0..=MAX_BACKOFF_SECS).contains(&s.value) {
        Ok(Duration::from_secs_f64(s.value))
    } else {
        Err(ConfigError::Invalid {
            option: opt.key,
            origin: s.origin,
            value: s.value.to_string(),
            expected: format!("expected a number of seconds from 0 to {MAX_BACKOFF_SECS}"),
        })
    }
}

/// An error for an option set to nothing: empty, or only whitespace.
fn blank(opt: &Opt, origin: Origin, value: &str) -> ConfigError {
    let found =
        if value.is_empty() { "is empty".to_owned() } else { format!("is blank ({})", crate::text::quoted(value)) };
    ConfigError::Blank { option: opt.key, origin, found, expected: opt.value }
}
