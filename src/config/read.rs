//! Reading agent.yaml: bounded (size, nesting, UTF-8), parsed with errors that name the
//! file and line, and several files merged, later ones winning key by key, with the file
//! each key came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use super::file::{FileConfig, FileTls, NULL_FOUND};
use crate::error::{ConfigError, Origin};

/// The largest configuration file read: 1 MiB, two hundred times a complete agent.yaml
/// (agent.yaml.example is under 5 KiB), small enough that even a hostile file is
/// parsed in a fraction of a second (with at most [`MAX_FLOW_BRACKETS`] brackets).
pub const MAX_CONFIG_SIZE: u64 = 1 << 20;

/// The most `[` and `{` a configuration file may hold. Each can open a YAML flow
/// collection, and libyaml's scanner (under serde_norway) walks one entry per open level
/// for every token: a file nested 100,000 deep took over 20 s, before serde_norway's own
/// depth limit (128), which applies only once the whole file is scanned. Which brackets
/// open a level depends on quoting rules only a full YAML scanner knows, so every one is
/// counted, in comments and strings too: a bound the nesting can never exceed. 64 leaves
/// room for any real file (the schema nests 4 deep, and needs a bracket pair only for an
/// inline list) and keeps a 1 MiB file nested 64 deep under 0.2 s.
pub const MAX_FLOW_BRACKETS: usize = 64;

/// The configuration file's text: at most [`MAX_CONFIG_SIZE`] bytes of UTF-8.
pub(super) fn read_file(path: &Path) -> Result<String, ConfigError> {
    let read_error = |source| ConfigError::Read { path: path.to_owned(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let bytes = crate::fsutil::read_limited(file, MAX_CONFIG_SIZE)
        .map_err(read_error)?
        .ok_or_else(|| ConfigError::TooLarge { path: path.to_owned(), limit: MAX_CONFIG_SIZE })?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        ConfigError::Parse {
            path: path.to_owned(),
            message: format!(
                "not UTF-8 text (byte {at} starts an invalid sequence); agent.yaml must be UTF-8 YAML, so check that this is the right file, or convert it with iconv"
            ),
        }
    })
}

pub(super) fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    if text.len() as u64 > MAX_CONFIG_SIZE {
        return Err(ConfigError::TooLarge { path: path.to_owned(), limit: MAX_CONFIG_SIZE });
    }
    check_flow_brackets(text, path)?;
    // An empty file, or one holding only comments, is an empty configuration.
    let parsed: Option<FileConfig> = serde_norway::from_str(text)
        .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
    Ok(parsed.unwrap_or_default())
}

/// Refuses a file with more than [`MAX_FLOW_BRACKETS`] `[` and `{`, naming where the
/// first one over the limit is.
fn check_flow_brackets(text: &str, path: &Path) -> Result<(), ConfigError> {
    let Some((offset, _)) = text.match_indices(['[', '{']).nth(MAX_FLOW_BRACKETS) else { return Ok(()) };
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Err(ConfigError::TooNested {
        path: path.to_owned(),
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
        limit: MAX_FLOW_BRACKETS,
    })
}

/// The configuration files read, in order, and which of them set each key.
#[derive(Debug, Default)]
pub(super) struct Sources {
    /// The files, in the order read.
    pub(super) paths: Vec<PathBuf>,
    /// Every key set to a value (dotted: `security.tls.master_cert`), and the index in
    /// `paths` of the last file that set it.
    keys: BTreeMap<String, usize>,
}

impl Sources {
    /// The file that set `key`: the one whose value is used. `None` when no file did.
    pub(super) fn file_of(&self, key: &str) -> Option<&Path> {
        self.keys.get(key).map(|&i| self.paths[i].as_path())
    }

    /// The last file that set `key` or a key under it (`tls.x` under `tls`), for keys
    /// whose value is not read.
    pub(super) fn file_under(&self, key: &str) -> Option<&Path> {
        let under = |k: &str| k == key || k.strip_prefix(key).is_some_and(|rest| rest.starts_with('.'));
        let last = self.keys.iter().filter(|(k, _)| under(k)).map(|(_, &i)| i).max()?;
        Some(self.paths[last].as_path())
    }
}

/// Reads and merges `paths`, each at most [`MAX_CONFIG_SIZE`] bytes.
pub(super) fn read_all(paths: &[PathBuf]) -> Result<(FileConfig, Sources), ConfigError> {
    let texts = paths.iter().map(|path| Ok((path.as_path(), read_file(path)?))).collect::<Result<Vec<_>, _>>()?;
    let texts: Vec<(&Path, &str)> = texts.iter().map(|(path, text)| (*path, text.as_str())).collect();
    merge(&texts)
}

/// Parses each file on its own, so an error names its file and line, then merges them:
/// for each key the last file that gives it a value wins; a key without a value (YAML
/// null) overrides nothing. A `security.tls` key without a value is an error in any
/// file, even one a later file overrides.
pub(super) fn merge(texts: &[(&Path, &str)]) -> Result<(FileConfig, Sources), ConfigError> {
    let mut sources = Sources::default();
    let mut merged = Value::Null;
    let mut last = FileConfig::default();
    for (index, (path, text)) in texts.iter().enumerate() {
        last = parse_file(text, path)?;
        if let Some(opt) = last.security.as_ref().and_then(|s| s.tls.as_ref()).and_then(FileTls::first_null) {
            let origin = Origin::File(path.to_path_buf());
            return Err(ConfigError::Blank {
                option: opt.key,
                origin,
                found: NULL_FOUND.to_owned(),
                expected: opt.value,
            });
        }
        // The text parsed as the schema, so it parses as plain YAML.
        let value: Value = serde_norway::from_str(text).unwrap_or(Value::Null);
        sources.paths.push(path.to_path_buf());
        merge_value(&mut merged, value, String::new(), index, &mut sources.keys);
    }
    if texts.len() < 2 {
        return Ok((last, sources));
    }
    // Through YAML text again rather than from the Value, so that scalars are read as
    // in a file (`visible_gpus: 0` is the string "0").
    let text = serde_norway::to_string(&merged).unwrap_or_default();
    let config = serde_norway::from_str::<Option<FileConfig>>(&text).map_err(|e| ConfigError::Parse {
        path: sources.paths.last().cloned().unwrap_or_default(),
        message: format!("these files cannot be merged: {e}"),
    })?;
    Ok((config.unwrap_or_default(), sources))
}

/// Merges `from` (file number `index`) into `into`: mappings key by key, anything else
/// replaced whole; a null never replaces anything.
fn merge_value(into: &mut Value, from: Value, key: String, index: usize, keys: &mut BTreeMap<String, usize>) {
    match (into, from) {
        (_, Value::Null) => {}
        (Value::Mapping(into), Value::Mapping(from)) => {
            for (name, value) in from {
                let child = match name.as_str() {
                    Some(name) if key.is_empty() => name.to_owned(),
                    Some(name) => format!("{key}.{name}"),
                    None => continue,
                };
                match into.get_mut(&name) {
                    Some(slot) => merge_value(slot, value, child, index, keys),
                    None if value.is_null() => {}
                    None => {
                        let mut slot = Value::Null;
                        merge_value(&mut slot, value, child, index, keys);
                        into.insert(name, slot);
                    }
                }
            }
        }
        (into, Value::Mapping(from)) => {
            *into = Value::Mapping(Default::default());
            merge_value(into, Value::Mapping(from), key, index, keys);
        }
        (into, from) => {
            *into = from;
            keys.insert(key, index);
        }
    }
}
