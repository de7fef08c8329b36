//! The agent's state file: what `det-agent run` learned about its master when the master
//! accepted it (`MasterSetAgentOptions`: cluster ID, master ID, version), so that
//! `det-agent task-env` can give tasks `DET_CLUSTER_ID` and `DET_MASTER_ID` as
//! Determined's agent gives them to task containers.
//!
//! A small JSON object, at `state_file` (default
//! [`DEFAULT_STATE_FILE`](crate::config::DEFAULT_STATE_FILE)):
//!
//! ```json
//! {
//!   "format": 1,
//!   "cluster_id": "bbebcb05-e3c2-4201-9154-1d733b795cad",
//!   "master_id": "4a5b32d7-2ab8-42d6-a1eb-144e33451503",
//!   "master_version": "0.38.0",
//!   "master": "https://master.example.com:8443",
//!   "written_at": "2025-03-01T12:00:00Z"
//! }
//! ```
//!
//! `master` is the master it came from, as dialed (scheme, host, port), so a record about
//! another master is never used. It is written atomically ([`write()`]: a reader sees the
//! old record or the new one) and read with a bound ([`read`]), and every value is
//! checked on the way in and out: the IDs come from the network and end up in a task's
//! environment.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::{authority, Config};
use crate::link::MasterInfo;
use crate::text::escape;

/// The format written, and the only one read.
pub const FORMAT: u32 = 1;

/// The largest state file read: a record is a few hundred bytes.
pub const MAX_STATE_FILE_SIZE: u64 = 64 << 10;

/// The longest value kept: Determined's IDs are UUIDs (36 characters) and versions short.
pub const MAX_VALUE_LEN: usize = 256;

/// What the agent knows about its master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterRecord {
    /// Always [`FORMAT`].
    pub format: u32,
    /// The cluster's ID, for tasks' `DET_CLUSTER_ID`.
    pub cluster_id: String,
    /// The master's ID (new at each master start), for tasks' `DET_MASTER_ID`.
    pub master_id: String,
    /// The master's version.
    pub master_version: String,
    /// The master it came from: `https://HOST:PORT` or `http://HOST:PORT`, as dialed.
    pub master: String,
    /// When it was written, RFC 3339 in UTC.
    pub written_at: String,
}

impl MasterRecord {
    /// The record of what the master at `config`'s address said about itself, now.
    pub fn new(info: &MasterInfo, config: &Config, now: SystemTime) -> MasterRecord {
        MasterRecord {
            format: FORMAT,
            cluster_id: info.cluster_id.raw().to_owned(),
            master_id: info.master_id.raw().to_owned(),
            master_version: info.version.raw().to_owned(),
            master: master_of(config),
            written_at: rfc3339(now),
        }
    }

    /// The first value that cannot be used, and why.
    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format {} (this det-agent reads format {FORMAT})", self.format));
        }
        for (name, value) in [
            ("cluster_id", &self.cluster_id),
            ("master_id", &self.master_id),
            ("master_version", &self.master_version),
            ("master", &self.master),
            ("written_at", &self.written_at),
        ] {
            if value.len() > MAX_VALUE_LEN {
                return Err(format!("{name} is {} bytes long, more than {MAX_VALUE_LEN}", value.len()));
            }
            if value.chars().any(char::is_control) {
                return Err(format!("{name} \"{}\" holds control characters", escape(value)));
            }
        }
        if self.cluster_id.is_empty() || self.master_id.is_empty() {
            return Err("cluster_id or master_id is empty".to_owned());
        }
        Ok(())
    }
}

/// The master as a record names it: `https://HOST:PORT` with TLS, `http://HOST:PORT`
/// without.
pub fn master_of(config: &Config) -> String {
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{}", authority(&config.master_host, config.master_port))
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    /// The file exists and cannot be read.
    #[error("cannot read the state file {}: {source}{}", path.display(), read_hint(source))]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The file is far larger than a record.
    #[error("the state file {} is over {} ({limit} bytes), far more than the few hundred bytes det-agent writes; it is not det-agent's: move it aside, or set state_file to another path", path.display(), crate::text::bytes(*.limit))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The bound.
        limit: u64,
    },
    /// The file is not a record det-agent wrote.
    #[error("the state file {} is not det-agent's record of its master ({detail}); delete it: `det-agent run` writes it again when the master next accepts the agent", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        detail: String,
    },
    /// The master sent a value that cannot be recorded.
    #[error("not recording the master's identity in {}: {detail}", path.display())]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        detail: String,
    },
    /// The file could not be written.
    #[error("cannot write the state file {}: {source}{}", path.display(), write_hint(source))]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

fn read_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::PermissionDenied => {
            "; `det-agent run` writes it as its own user (det-agent under systemd, in /var/lib/det-agent, mode 0700): run this as that user or as root, or set state_file"
        }
        _ => "",
    }
}

fn write_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::NotFound => {
            "; its folder does not exist: create it (systemd's StateDirectory=det-agent creates /var/lib/det-agent), or set state_file to a path in a folder det-agent may write"
        }
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            "; det-agent may not write there: set state_file to a path in a folder it may write (under systemd, /var/lib/det-agent)"
        }
        _ => "",
    }
}

/// Records what the master at `config`'s address said about itself (`MasterInfo` from
/// `MasterSetAgentOptions`), replacing any earlier record atomically.
///
/// # Errors
/// [`StateFileError::Unusable`] when a value cannot go into a task's environment
/// (control characters, over [`MAX_VALUE_LEN`] bytes, an empty ID);
/// [`StateFileError::Write`] when the file cannot be written (the old one is then intact).
pub fn write(path: &Path, info: &MasterInfo, config: &Config) -> Result<MasterRecord, StateFileError> {
    let record = MasterRecord::new(info, config, SystemTime::now());
    write_record(path, &record)?;
    Ok(record)
}

/// Writes `record` to `path` atomically, mode 0644 (it holds no secret).
///
/// # Errors
/// As [`write()`].
pub fn write_record(path: &Path, record: &MasterRecord) -> Result<(), StateFileError> {
    record.check().map_err(|detail| StateFileError::Unusable { path: path.to_owned(), detail })?;
    let mut text = serde_json::to_string_pretty(record).unwrap_or_default();
    text.push('\n');
    crate::fsutil::write_atomic(path, text.as_bytes(), 0o644)
        .map_err(|source| StateFileError::Write { path: path.to_owned(), source })
}

/// Reads the record at `path`; `None` when there is no file.
///
/// # Errors
/// The file exists and cannot be read, is over [`MAX_STATE_FILE_SIZE`], or is not a
/// record det-agent writes.
pub fn read(path: &Path) -> Result<Option<MasterRecord>, StateFileError> {
    let read_error = |source| StateFileError::Read { path: path.to_owned(), source };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_error(e)),
    };
    let bytes = crate::fsutil::read_limited(file, MAX_STATE_FILE_SIZE)
        .map_err(read_error)?
        .ok_or_else(|| StateFileError::TooLarge { path: path.to_owned(), limit: MAX_STATE_FILE_SIZE })?;
    let corrupt = |detail: String| StateFileError::Corrupt { path: path.to_owned(), detail };
    let record: MasterRecord = serde_json::from_slice(&bytes).map_err(|e| corrupt(json_error(&e)))?;
    record.check().map_err(corrupt)?;
    Ok(Some(record))
}

/// A JSON error in words, without echoing the file's text.
fn json_error(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Io => "it cannot be read",
        Category::Syntax => "it is not valid JSON",
        Category::Eof => "it ends early",
        Category::Data => "it is JSON of another shape",
    };
    format!("{what}, at line {} column {}", error.line(), error.column())
}

fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

impl fmt::Display for MasterRecord {
    /// `cluster ID …, master ID …, master … (version …), recorded …`, escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cluster ID {}, master ID {}, from the master at {} (version {}), recorded {}",
            escape(&self.cluster_id),
            escape(&self.master_id),
            escape(&self.master),
            escape(&self.master_version),
            escape(&self.written_at)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Host, TlsConfig, Trust};
    use crate::text::Untrusted;
    use std::time::Duration;

    fn info(cluster_id: &str, master_id: &str) -> MasterInfo {
        MasterInfo {
            version: Untrusted::new("0.38.0"),
            cluster_id: Untrusted::new(cluster_id),
            master_id: Untrusted::new(master_id),
            cluster_name: Untrusted::new("prod"),
        }
    }

    fn config() -> Config {
        Config::new(Host::parse("master.example.com").unwrap(), Some(TlsConfig::new(Trust::PublicRoots)))
    }

    #[test]
    fn written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.json");
        assert_eq!(read(&path).unwrap(), None);
        let written = write(&path, &info("c-1", "m-1"), &config()).unwrap();
        assert_eq!(written.master, "https://master.example.com:8443");
        assert_eq!(read(&path).unwrap(), Some(written.clone()));
        // Replaced whole, no temporary file left, readable by others (no secret in it).
        let again = write(&path, &info("c-1", "m-2"), &config()).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().master_id, "m-2");
        assert_ne!(again, written);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn the_format_is_small_json_with_a_utc_timestamp() {
        let epoch_plus = SystemTime::UNIX_EPOCH + Duration::from_millis(1_740_830_400_250);
        let record = MasterRecord::new(&info("c-1", "m-1"), &config(), epoch_plus);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.json");
        write_record(&path, &record).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\n  \"format\": 1,\n  \"cluster_id\": \"c-1\",\n  \"master_id\": \"m-1\",\n  \"master_version\": \"0.38.0\",\n  \"master\": \"https://master.example.com:8443\",\n  \"written_at\": \"2025-03-01T12:00:00Z\"\n}\n"
        );
    }

    #[test]
    fn what_the_network_sent_is_checked_before_it_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.json");
        for (info, detail) in [
            (info("c\n1", "m"), "cluster_id \"c\\x0a1\" holds control characters"),
            (info(&"c".repeat(257), "m"), "cluster_id is 257 bytes long, more than 256"),
            (info("c", ""), "cluster_id or master_id is empty"),
        ] {
            let err = write(&path, &info, &config()).unwrap_err();
            assert_eq!(err.to_string(), format!("not recording the master's identity in {}: {detail}", path.display()));
        }
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_is_not_a_record_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.json");
        let p = path.display();
        for (text, detail) in [
            ("not json", "it is not valid JSON, at line 1 column 2"),
            ("{\"format\": 1", "it ends early, at line 1 column 12"),
            ("[1]", "it is JSON of another shape, at line 1 column 3"),
            (
                "{\"format\": 2, \"cluster_id\": \"c\", \"master_id\": \"m\", \"master_version\": \"v\", \"master\": \"x\", \"written_at\": \"t\"}",
                "format 2 (this det-agent reads format 1)",
            ),
            (
                "{\"format\": 1, \"cluster_id\": \"c\\u001b[2J\", \"master_id\": \"m\", \"master_version\": \"v\", \"master\": \"x\", \"written_at\": \"t\"}",
                "cluster_id \"c\\x1b[2J\" holds control characters",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(
                read(&path).unwrap_err().to_string(),
                format!("the state file {p} is not det-agent's record of its master ({detail}); delete it: `det-agent run` writes it again when the master next accepts the agent")
            );
        }
        std::fs::write(&path, vec![b' '; 64 << 10 | 1]).unwrap();
        assert!(matches!(read(&path), Err(StateFileError::TooLarge { limit: 65536, .. })));
        assert!(matches!(read(Path::new("/dev/zero")), Err(StateFileError::TooLarge { .. })));
    }

    #[test]
    fn a_missing_folder_says_how_to_fix_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/master.json");
        let err = write(&path, &info("c", "m"), &config()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cannot write the state file {}: ", path.display())), "{err}");
        assert!(err.ends_with("or set state_file to a path in a folder det-agent may write"), "{err}");
    }
}
