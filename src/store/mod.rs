//! The trust store shared with the `det` CLI: `certs.json`, a JSON object mapping
//! canonical master URLs to PEM chains, in the CLI's own format (4-space indentation,
//! sorted keys).
//!
//! Writers take the lock the CLI takes (an exclusive flock(2) on `certs.json.lock`),
//! re-read the file under it, and replace it atomically, so neither tool loses the
//! other's entries. Readers need no lock: the file is only ever replaced whole. A file
//! that is not a JSON object of strings is an error, never reset and never trusted.
//!
//! Whoever can write the store decides which masters det-agent trusts. So, as OpenSSH's
//! StrictModes does for `authorized_keys`, the file, its folder and the lock file must be
//! owned by this user (or root) and writable by no one else; otherwise the store is
//! neither read nor written.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

mod url;

pub use url::MasterUrl;

use crate::error::StoreError;
use crate::fsutil;

/// The store file, and where it lives.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

/// The store's content: canonical URL → PEM chain.
pub type Entries = BTreeMap<String, String>;

/// The largest store read: 16 MiB. The `det` CLI sets no limit and a chain takes a few
/// KiB, so this holds thousands of masters, and parses in milliseconds; a larger file is
/// a mistake (or `/dev/zero`) that would otherwise take the agent's memory.
pub const MAX_STORE_SIZE: u64 = 16 << 20;

/// The parts of the store, as [`StoreError::Unsafe`] names them.
const FILE: &str = "trust store";
const FOLDER: &str = "trust store folder";
const LOCK_FILE: &str = "trust store lock file";

/// The StrictModes rule: owned by this user or root, writable by no one else.
fn check_part(path: &Path, what: &'static str, meta: &fs::Metadata) -> Result<(), StoreError> {
    let access = fsutil::Access::of(meta);
    if access.strict() {
        Ok(())
    } else {
        let fsutil::Access { mode, owner, me } = access;
        Err(StoreError::Unsafe { path: path.to_owned(), what, mode, owner, me })
    }
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

    /// The folder that holds the file.
    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// Checks the folder, when it exists, against the StrictModes rule.
    fn check_dir(&self) -> Result<(), StoreError> {
        let dir = self.dir();
        match fs::metadata(dir) {
            Ok(meta) => check_part(dir, FOLDER, &meta),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io { path: dir.to_owned(), source }),
        }
    }

    /// Every entry; an empty map when the file does not exist.
    ///
    /// # Errors
    /// The file cannot be read or is corrupt, or it or its folder can be changed by
    /// another user.
    pub fn load(&self) -> Result<Entries, StoreError> {
        self.check_dir()?;
        let io = |source| StoreError::Io { path: self.path.clone(), source };
        let file = match fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Entries::new()),
            Err(source) => return Err(io(source)),
        };
        // The opened file itself, so what is checked is what is read.
        check_part(&self.path, FILE, &file.metadata().map_err(io)?)?;
        let bytes = fsutil::read_limited(file, MAX_STORE_SIZE)
            .map_err(io)?
            .ok_or_else(|| StoreError::TooLarge { path: self.path.clone(), limit: MAX_STORE_SIZE })?;
        serde_json::from_slice::<Entries>(&bytes)
            .map_err(|e| StoreError::Corrupt { path: self.path.clone(), detail: e.to_string() })
    }

    /// The chain stored for `url`, if any.
    ///
    /// # Errors
    /// As [`load`](Self::load), or the entry holds no certificate.
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
    /// The store cannot be locked, read or written, is corrupt, or it, its folder or its
    /// lock file can be changed by another user (then nothing is written).
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
        let dir = self.dir();
        DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir))?;
        self.check_dir()?;
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
        // Its owner could hold the lock for ever, and every writer would wait.
        check_part(&lock_path, LOCK_FILE, &lock.metadata().map_err(io_err(&lock_path))?)?;
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
        DirBuilder::new().mode(0o700).create(dir.path().join("determined")).unwrap();
        // As the CLI writes it.
        fs::write(store.path(), "{\n    \"https://cli.example.com:443\": \"not ours\"\n}").unwrap();
        chmod(store.path(), 0o600);
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

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    fn url() -> MasterUrl {
        MasterUrl::parse("https://master.det.test:8443").unwrap()
    }

    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// A store as `put` leaves it: folder 0700, file and lock file 0600, one entry.
    fn store() -> (tempfile::TempDir, Store) {
        let home = tempfile::tempdir().unwrap();
        let store = Store::at(home.path().join("determined/certs.json"));
        store.put(&url(), &fixtures::certs("master.pem")).unwrap();
        (home, store)
    }

    fn lock_path(store: &Store) -> PathBuf {
        store.path().with_file_name("certs.json.lock")
    }

    const AFTER: &str = "another user could change which masters det-agent trusts, so det-agent neither reads nor writes the store until this is fixed";

    /// Every way in: reading (`check`, `run`, `trust --list`) and writing (`put`, `forget`).
    fn refused_everywhere(store: &Store, message: &str) {
        let before = fs::read(store.path()).unwrap();
        assert_eq!(store.load().unwrap_err().to_string(), message);
        assert_eq!(store.get(&url()).unwrap_err().to_string(), message);
        assert_eq!(store.put(&url(), &fixtures::certs("ip-only.pem")).unwrap_err().to_string(), message);
        assert_eq!(store.forget(&url()).unwrap_err().to_string(), message);
        assert_eq!(fs::read(store.path()).unwrap(), before, "nothing written");
    }

    #[test]
    fn a_0600_file_in_a_0700_folder_is_used() {
        use std::os::unix::fs::PermissionsExt;
        let (_home, store) = store();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(store.path()), 0o600);
        assert_eq!(mode(store.path().parent().unwrap()), 0o700);
        assert_eq!(mode(&lock_path(&store)), 0o600);
        assert_eq!(store.get(&url()).unwrap().unwrap(), fixtures::certs("master.pem"));
        // Readable by others is fine: certificates are public, only writing is guarded.
        chmod(store.path(), 0o644);
        chmod(store.path().parent().unwrap(), 0o755);
        assert_eq!(store.load().unwrap().len(), 1);
        assert!(store.forget(&url()).unwrap());
    }

    #[test]
    fn a_group_writable_file_is_neither_read_nor_written() {
        let (_home, store) = store();
        chmod(store.path(), 0o660);
        let p = store.path().display();
        refused_everywhere(&store, &format!(
            "trust store {p} is writable by its group (mode 0660, owner uid {}); {AFTER}: run `chmod go-w {p}`, then check the stored masters with `det-agent trust --list`",
            me()
        ));
    }

    #[test]
    fn a_folder_writable_by_others_is_refused() {
        let (_home, store) = store();
        let dir = store.path().parent().unwrap().to_owned();
        for (mode, octal, problem) in [
            (0o777, "0777", "is writable by its group and by every user"),
            (0o1703, "1703", "is writable by every user"),
            (0o770, "0770", "is writable by its group"),
        ] {
            chmod(&dir, mode);
            refused_everywhere(&store, &format!(
                "trust store folder {d} {problem} (mode {octal}, owner uid {}); {AFTER}: run `chmod go-w {d}`, then check the stored masters with `det-agent trust --list`",
                me(),
                d = dir.display()
            ));
        }
        chmod(&dir, 0o700);
        assert_eq!(store.load().unwrap().len(), 1);
    }

    #[test]
    fn a_lock_file_others_could_hold_is_refused_before_writing() {
        let (_home, store) = store();
        let lock = lock_path(&store);
        chmod(&lock, 0o666);
        let message = format!(
            "trust store lock file {l} is writable by its group and by every user (mode 0666, owner uid {}); {AFTER}: run `chmod go-w {l}`, then check the stored masters with `det-agent trust --list`",
            me(),
            l = lock.display()
        );
        let before = fs::read(store.path()).unwrap();
        assert_eq!(store.put(&url(), &fixtures::certs("ip-only.pem")).unwrap_err().to_string(), message);
        assert_eq!(store.forget(&url()).unwrap_err().to_string(), message);
        assert_eq!(fs::read(store.path()).unwrap(), before, "nothing written");
        // Readers take no lock.
        assert_eq!(store.load().unwrap().len(), 1);
    }

    #[test]
    fn a_store_owned_by_another_user_is_refused() {
        if me() != 0 {
            // Past libtest's capture, so it shows even when the test "passes".
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED trust::store::tests::a_store_owned_by_another_user_is_refused: only root can give a file \
                 to another user (chown to uid 65534), and this runs as uid {}; run it as root (CI does) ***\n",
                me()
            );
            return;
        }
        let (_home, store) = store();
        let p = store.path().display();
        let owned = "is owned by uid 65534, neither this user (uid 0) nor root";
        std::os::unix::fs::chown(store.path(), Some(65534), None).unwrap();
        refused_everywhere(&store, &format!(
            "trust store {p} {owned} (mode 0600, owner uid 65534); {AFTER}: run `chown 0 {p}` as root, then check the stored masters with `det-agent trust --list`"
        ));
        chmod(store.path(), 0o664);
        refused_everywhere(&store, &format!(
            "trust store {p} is writable by its group and {owned} (mode 0664, owner uid 65534); {AFTER}: run `chown 0 {p}` as root and `chmod go-w {p}`, then check the stored masters with `det-agent trust --list`"
        ));
        // The folder, likewise; root-owned parts are accepted.
        std::os::unix::fs::chown(store.path(), Some(0), None).unwrap();
        chmod(store.path(), 0o600);
        let dir = store.path().parent().unwrap().to_owned();
        std::os::unix::fs::chown(&dir, Some(65534), None).unwrap();
        refused_everywhere(&store, &format!(
            "trust store folder {d} {owned} (mode 0700, owner uid 65534); {AFTER}: run `chown 0 {d}` as root, then check the stored masters with `det-agent trust --list`",
            d = dir.display()
        ));
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        assert_eq!(store.load().unwrap().len(), 1);
    }

    #[test]
    fn a_store_over_16_mib_is_refused_unparsed() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o700);
        let store = Store::at(dir.path().join("certs.json"));
        let entry = format!("\"https://a:443\": \"{}\"", "A".repeat(1 << 20));
        let big = format!("{{{}}}", vec![entry; 16].join(","));
        assert!(big.len() as u64 > MAX_STORE_SIZE);
        fs::write(store.path(), &big).unwrap();
        chmod(store.path(), 0o600);
        let err = store.load().unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("trust store {} is over 16 MiB (16777216 bytes), more than thousands of stored chains would take; det-agent neither trusts nor rewrites it: check what wrote it, then repair it, or move it aside and trust the masters again", store.path().display())
        );
        assert!(matches!(store.put(&url(), &fixtures::certs("master.pem")), Err(StoreError::TooLarge { .. })));
        assert_eq!(fs::read_to_string(store.path()).unwrap(), big, "left alone");
    }

    #[test]
    fn a_corrupt_store_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o700);
        let store = Store::at(dir.path().join("certs.json"));
        for bad in ["[1, 2]", "{\"https://a:443\": 5}", "{not json"] {
            fs::write(store.path(), bad).unwrap();
            chmod(store.path(), 0o600);
            let url = MasterUrl::parse("https://a").unwrap();
            let err = store.put(&url, &fixtures::certs("master.pem")).unwrap_err().to_string();
            assert!(err.contains("is corrupt") && err.contains("neither trusts nor rewrites it"), "{err}");
            assert!(store.get(&url).is_err());
            assert_eq!(fs::read_to_string(store.path()).unwrap(), bad);
        }
    }
}
