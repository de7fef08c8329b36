//! The trust store shared with the `det` CLI: `certs.json`, a JSON object mapping
//! canonical master URLs to PEM chains, in the CLI's own format (4-space indentation,
//! sorted keys).
//!
//! Writers take the lock the CLI takes (an exclusive flock(2) on `certs.json.lock`),
//! re-read the file under it, and replace it atomically, so neither tool loses the
//! other's entries. Readers need no lock: the file is only ever replaced whole. A file
//! that is not a JSON object of strings is an error, never reset and never trusted.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use super::MasterUrl;
use crate::fsutil;

/// The store file, and where it lives.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

/// The store's content: canonical URL → PEM chain.
pub type Entries = BTreeMap<String, String>;

/// A store that cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Variants are documented; fields name themselves.
#[non_exhaustive]
pub enum StoreError {
    /// Neither XDG_CONFIG_HOME nor HOME is set.
    #[error("cannot find the trust store: neither XDG_CONFIG_HOME nor HOME is set")]
    NoLocation,
    /// The file or its folder cannot be read or written.
    #[error("trust store {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    /// The file is not a JSON object mapping URLs to PEM strings.
    #[error("trust store {} is corrupt ({detail}); it must be a JSON object mapping master URLs to PEM certificates. det-agent neither trusts nor rewrites it: repair it, or move it aside and trust the master again", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// An entry's PEM holds no usable certificate.
    #[error("trust store {}, entry {url:?}: {detail}; forget it with `det-agent trust --forget {url}` and trust the master again", path.display())]
    BadEntry { path: PathBuf, url: String, detail: String },
}

impl Store {
    /// The store at `path`.
    pub fn at(path: impl Into<PathBuf>) -> Store {
        Store { path: path.into() }
    }

    /// The CLI's location: `$XDG_CONFIG_HOME/determined/certs.json`, else
    /// `~/.config/determined/certs.json`. `env` looks up environment variables.
    ///
    /// # Errors
    /// Neither variable is set.
    pub fn locate(env: &dyn Fn(&str) -> Option<String>) -> Result<Store, StoreError> {
        let base = match env("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(env("HOME").filter(|v| !v.is_empty()).ok_or(StoreError::NoLocation)?).join(".config"),
        };
        Ok(Store::at(base.join("determined").join("certs.json")))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every entry; an empty map when the file does not exist.
    ///
    /// # Errors
    /// The file cannot be read or is corrupt.
    pub fn load(&self) -> Result<Entries, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Entries::new()),
            Err(source) => return Err(StoreError::Io { path: self.path.clone(), source }),
        };
        serde_json::from_str::<Entries>(&text)
            .map_err(|e| StoreError::Corrupt { path: self.path.clone(), detail: e.to_string() })
    }

    /// The chain stored for `url`, if any.
    ///
    /// # Errors
    /// The store cannot be read, is corrupt, or the entry holds no certificate.
    pub fn get(&self, url: &MasterUrl) -> Result<Option<Vec<CertificateDer<'static>>>, StoreError> {
        let key = url.store_key();
        let Some(pem) = self.load()?.remove(&key) else { return Ok(None) };
        crate::pem::parse_certs(pem.as_bytes(), &self.path).map(Some).map_err(|e| StoreError::BadEntry {
            path: self.path.clone(),
            url: key,
            detail: e.to_string(),
        })
    }

    /// Stores `chain` for `url`, replacing any previous entry for it.
    ///
    /// # Errors
    /// The store cannot be locked, read or written, or is corrupt (then nothing is written).
    pub fn put(&self, url: &MasterUrl, chain: &[CertificateDer<'_>]) -> Result<(), StoreError> {
        let pem = crate::pem::encode_certs(chain);
        self.update(|entries| {
            entries.insert(url.store_key(), pem);
        })
    }

    /// Removes the entry for `url`; `Ok(false)` when there was none.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn forget(&self, url: &MasterUrl) -> Result<bool, StoreError> {
        self.update(|entries| entries.remove(&url.store_key()).is_some())
    }

    /// Removes temporary files that writers killed before their rename left behind.
    /// Only a lock holder writes one, so under the lock every such file is an orphan.
    fn remove_orphans(&self, dir: &Path) {
        let Some(name) = self.path.file_name() else { return };
        let prefix = format!(".{}.tmp-", name.to_string_lossy());
        let Ok(listing) = std::fs::read_dir(dir) else { return };
        for entry in listing.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Runs `change` on the current entries under the CLI's lock and writes the result.
    fn update<R>(&self, change: impl FnOnce(&mut Entries) -> R) -> Result<R, StoreError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))?;
        let lock_path = self.path.with_file_name(format!(
            "{}.lock",
            self.path.file_name().map_or_else(|| "certs.json".into(), |n| n.to_string_lossy())
        ));
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        // flock(2), as Python's filelock takes it; released when `lock` is dropped.
        lock.lock().map_err(io_err(&lock_path))?;
        self.remove_orphans(dir);
        let mut entries = self.load()?;
        let result = change(&mut entries);
        let json = to_cli_json(&entries).map_err(|e| StoreError::Io { path: self.path.clone(), source: e.into() })?;
        fsutil::write_atomic(&self.path, json.as_bytes(), 0o600).map_err(io_err(&self.path))?;
        drop(lock);
        Ok(result)
    }
}

/// `json.dumps(entries, indent=4, sort_keys=True)`: the CLI's exact layout.
fn to_cli_json(entries: &Entries) -> serde_json::Result<String> {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::with_indent(b"    "));
    entries.serialize(&mut ser)?;
    Ok(String::from_utf8(out).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dev_master::fixtures;

    #[test]
    fn writes_the_cli_layout_and_keeps_its_entries() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("determined/certs.json"));
        fs::create_dir_all(dir.path().join("determined")).unwrap();
        // As the CLI writes it.
        fs::write(store.path(), "{\n    \"https://cli.example.com:443\": \"not ours\"\n}").unwrap();
        let url = MasterUrl::parse("https://master.det.test:8443").unwrap();
        store.put(&url, &fixtures::certs("master.pem")).unwrap();
        let text = fs::read_to_string(store.path()).unwrap();
        assert!(text.starts_with("{\n    \"https://cli.example.com:443\": \"not ours\",\n    \"https://master.det.test:8443\": \"-----BEGIN CERTIFICATE-----\\n"), "{text}");
        assert!(text.ends_with("-----END CERTIFICATE-----\\n\"\n}"), "{text}");
        assert_eq!(store.get(&url).unwrap().unwrap(), fixtures::certs("master.pem"));
        assert!(store.forget(&url).unwrap());
        assert!(!store.forget(&url).unwrap());
        assert_eq!(store.load().unwrap().into_keys().collect::<Vec<_>>(), ["https://cli.example.com:443"]);
    }

    #[test]
    fn a_corrupt_store_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::at(dir.path().join("certs.json"));
        for bad in ["[1, 2]", "{\"https://a:443\": 5}", "{not json"] {
            fs::write(store.path(), bad).unwrap();
            let url = MasterUrl::parse("https://a").unwrap();
            let err = store.put(&url, &fixtures::certs("master.pem")).unwrap_err().to_string();
            assert!(err.contains("is corrupt") && err.contains("neither trusts nor rewrites it"), "{err}");
            assert!(store.get(&url).is_err());
            assert_eq!(fs::read_to_string(store.path()).unwrap(), bad);
        }
    }
}
