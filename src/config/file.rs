//! agent.yaml as written: the serde types that mirror it (unknown keys are refused with
//! their line), a [`Field`] that tells a key without a value from an absent one, and a
//! [`FileBool`] that reads booleans as Determined's agent does. Reading and merging files
//! is in `read.rs`.

use std::fmt;
use std::path::PathBuf;

use serde::de::{self, IgnoredAny, Unexpected};
use serde::Deserialize;

use super::names::{self, Opt};

/// `agent.yaml`, as written. Unknown keys are rejected by the parser, which names them
/// with their line.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "agent.yaml's settings, as `key: value` lines")]
pub(super) struct FileConfig {
    pub(super) master_host: Option<String>,
    pub(super) master_port: Option<u16>,
    pub(super) agent_id: Option<String>,
    pub(super) resource_pool: Option<String>,
    pub(super) container_master_host: Option<String>,
    pub(super) container_master_port: Option<u16>,
    pub(super) agent_reconnect_attempts: Option<u32>,
    pub(super) agent_reconnect_backoff: Option<f64>,
    pub(super) agent_reconnect_backoff_max: Option<f64>,
    pub(super) max_message_size: Option<u64>,
    pub(super) connect_timeout: Option<f64>,
    pub(super) handshake_timeout: Option<f64>,
    pub(super) inbound_buffer_messages: Option<u64>,
    pub(super) inbound_buffer_bytes: Option<u64>,
    pub(super) certificate_warning_days: Option<u32>,
    pub(super) certificate_error_days: Option<u32>,
    pub(super) security: Option<FileSecurity>,
    pub(super) fluent: Option<FileFluent>,
    pub(super) metrics: Option<FileMetrics>,
    pub(super) log: Option<FileLog>,
    pub(super) debug: Option<FileBool>,
    pub(super) slot_type: Option<String>,
    pub(super) visible_gpus: Option<String>,
    pub(super) artificial_slots: Option<i64>,
    pub(super) http_proxy: Option<String>,
    pub(super) https_proxy: Option<String>,
    pub(super) ftp_proxy: Option<String>,
    pub(super) no_proxy: Option<String>,
    pub(super) hooks: Option<FileHooks>,
    pub(super) state_file: Option<PathBuf>,
    // Determined's agent options det-agent ignores (see ignored.rs), with any value.
    #[allow(dead_code)]
    pub(super) config_file: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) api_enabled: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) bind_ip: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) bind_port: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) tls: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) tls_cert: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) tls_key: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) container_runtime: Option<IgnoredAny>,
    #[allow(dead_code)]
    pub(super) container_auto_remove_disabled: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the log settings (level, color)")]
pub(super) struct FileLog {
    pub(super) level: Option<String>,
    pub(super) color: Option<FileBool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the hooks settings (on_connection_lost)")]
pub(super) struct FileHooks {
    pub(super) on_connection_lost: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the metrics settings (listen)")]
pub(super) struct FileMetrics {
    pub(super) listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the fluent settings (config_dir, format, listen, port, flush)")]
pub(super) struct FileFluent {
    pub(super) config_dir: Option<PathBuf>,
    pub(super) format: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) port: Option<u16>,
    pub(super) flush: Option<u32>,
    /// Determined's agent ran Fluent Bit in a container; det-agent writes a
    /// configuration instead. Accepted so a Determined agent.yaml loads, and ignored.
    #[allow(dead_code)]
    pub(super) image: Option<IgnoredAny>,
    /// As `image`.
    #[allow(dead_code)]
    pub(super) container_name: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "the security settings (tls:)")]
pub(super) struct FileSecurity {
    pub(super) tls: Option<FileTls>,
}

/// The trust settings. Each key is a [`Field`], so a key written without a value is told
/// apart from an absent one.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "the security.tls settings (enabled, master_cert, …)")]
pub(super) struct FileTls {
    pub(super) enabled: Field<FileBool>,
    pub(super) skip_verify: Field<FileBool>,
    pub(super) master_cert: Field<PathBuf>,
    pub(super) master_cert_name: Field<String>,
    pub(super) master_key_pins: Field<Vec<String>>,
    pub(super) client_cert: Field<PathBuf>,
    pub(super) client_key: Field<PathBuf>,
}

/// A `security.tls` key as written: absent, present without a value (YAML null:
/// nothing after the colon, `~` or `null`, which is what a template leaves when its
/// variable is empty), or a value. Absent means "not set"; a null is an error, because
/// reading `master_cert: ${CERT}` with CERT unset as "not set" would mean CA mode, and
/// `enabled: ${TLS}` plain TCP.
#[derive(Debug, Default)]
pub(super) enum Field<T> {
    #[default]
    Absent,
    Null,
    Value(T),
}

impl<T> Field<T> {
    fn is_null(&self) -> bool {
        matches!(self, Field::Null)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(deserializer)?.map_or(Field::Null, Field::Value))
    }
}

/// What a key written without a value is, in the words of a [`ConfigError::Blank`].
pub(super) const NULL_FOUND: &str =
    "has no value (YAML null: nothing after the colon, `~` or `null`, as a template leaves it when its variable is empty)";

impl FileTls {
    /// The first key written without a value, in the order the resolver reads them.
    pub(super) fn first_null(&self) -> Option<&'static Opt> {
        [
            (self.enabled.is_null(), &names::TLS_ENABLED),
            (self.skip_verify.is_null(), &names::SKIP_VERIFY),
            (self.master_cert.is_null(), &names::MASTER_CERT),
            (self.master_cert_name.is_null(), &names::CERT_NAME),
            (self.master_key_pins.is_null(), &names::KEY_PINS),
            (self.client_cert.is_null(), &names::CLIENT_CERT),
            (self.client_key.is_null(), &names::CLIENT_KEY),
        ]
        .into_iter()
        .find_map(|(null, opt)| null.then_some(opt))
    }
}

/// A boolean in agent.yaml: YAML's `true`/`false`, or a string or number that
/// Determined's agent reads as one. Its file goes through viper, which reads YAML 1.1
/// (`yes`, `on`, `y`) and casts strings with Go's `strconv.ParseBool` (`t`, `F`, `1`) and
/// numbers as "not zero"; every [`parse::boolean`](super::parse::boolean) spelling is
/// accepted, and of numbers 0 and 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileBool(pub(super) bool);

impl<'de> Deserialize<'de> for FileBool {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FileBoolVisitor)
    }
}

struct FileBoolVisitor;

impl<'de> de::Visitor<'de> for FileBoolVisitor {
    type Value = FileBool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<FileBool, E> {
        Ok(FileBool(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FileBool, E> {
        super::parse::boolean(v).map(FileBool).map_err(|_| E::invalid_type(Unexpected::Str(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileBool, E> {
        match v {
            0 | 1 => Ok(FileBool(v == 1)),
            _ => Err(E::invalid_value(Unexpected::Unsigned(v), &"a boolean (0 or 1 as a number)")),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileBool, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &"a boolean (0 or 1 as a number)")),
        }
    }
}
