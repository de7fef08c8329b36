//! Files: replacing one so that a reader, or a crash, sees the old content or the new,
//! never a mix (write a temporary file in the same folder, fsync it, rename it over the
//! old one, fsync the folder); reading at most so many bytes; and who besides this user
//! and root can change a file ([`Access`], OpenSSH's StrictModes rule), with the command
//! that fixes it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replaces `path` with `bytes`, with permissions `mode` (e.g. `0o644`).
///
/// # Errors
/// Any I/O error; the old file is then untouched and the temporary file removed.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = parent(path);
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        // A temporary file left by a crash of this same PID is ours to replace.
        let _ = fs::remove_file(&tmp);
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have narrowed the mode at creation.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads `reader` to its end when it holds at most `limit` bytes; `Ok(None)` when it
/// holds more, found without reading past `limit + 1` bytes (so `/dev/zero` or an
/// endless pipe is refused rather than read for ever).
///
/// # Errors
/// Any I/O error.
pub fn read_limited(reader: impl Read, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    reader.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok(Some(bytes).filter(|b| b.len() as u64 <= limit))
}

/// Removes `path` if it exists; `Ok(true)` when something was removed.
///
/// # Errors
/// Any I/O error other than the file not existing.
pub fn remove_if_present(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(&parent(path))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// A file's or folder's permission bits (sticky bit included), its owner, and the user
/// this process runs as: enough to say who besides this user and root can change it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    /// The permission bits, `0o7777` at most.
    pub mode: u32,
    /// The owner's uid.
    pub owner: u32,
    /// This process's effective uid.
    pub me: u32,
}

impl Access {
    /// What `meta` says, for this process's effective user.
    pub fn of(meta: &fs::Metadata) -> Access {
        Access { mode: meta.mode() & 0o7777, owner: meta.uid(), me: rustix::process::geteuid().as_raw() }
    }

    /// Writable by its group or by every user.
    pub fn writable_by_others(self) -> bool {
        self.mode & 0o022 != 0
    }

    /// The sticky bit: in a folder, only a file's owner (or the folder's, or root) may
    /// rename or remove it, whoever may write the folder.
    pub fn sticky(self) -> bool {
        self.mode & 0o1000 != 0
    }

    /// The StrictModes rule on owners: this user, or root.
    pub fn owned_well(self) -> bool {
        self.owner == self.me || self.owner == 0
    }

    /// OpenSSH's StrictModes rule: owned by this user or root, writable by no one else.
    pub fn strict(self) -> bool {
        !self.writable_by_others() && self.owned_well()
    }

    /// Who may write it besides its owner, in words (`is writable by its group`), if
    /// anyone.
    pub fn writable_words(self) -> Option<&'static str> {
        match (self.mode & 0o020 != 0, self.mode & 0o002 != 0) {
            (true, true) => Some("is writable by its group and by every user"),
            (true, false) => Some("is writable by its group"),
            (false, true) => Some("is writable by every user"),
            (false, false) => None,
        }
    }

    /// Its owner, in words, when that is neither this user nor root.
    pub fn owner_words(self) -> Option<String> {
        (!self.owned_well())
            .then(|| format!("is owned by uid {}, neither this user (uid {}) nor root", self.owner, self.me))
    }

    /// Everything that breaks the StrictModes rule, in words, joined by "and".
    pub fn problems(self) -> String {
        let words: Vec<String> =
            self.writable_words().map(str::to_owned).into_iter().chain(self.owner_words()).collect();
        words.join(" and ")
    }
}

/// The commands that fix a file or folder: `chown OWNER` (as root) when `chown_to` is
/// set, `chmod go-w` when `chmod` is; e.g. "run `chmod go-w /etc/x`". When the path would
/// be shown escaped ([`crate::text::escape`] changes it: a backslash, a control
/// character), a command naming it could not be copied back (it would name another
/// file), so the fix is said in words instead, about "that `noun`" (file, folder).
pub fn fix_command(path: &Path, noun: &str, chmod: bool, chown_to: Option<&str>) -> String {
    let Some(path) = shell_path(path) else {
        let escaped = "(its name holds characters shown escaped above)";
        return match (chmod, chown_to) {
            (true, None) => format!("run chmod go-w on that {noun} {escaped}"),
            (false, Some(owner)) => format!("run chown {owner} on that {noun} as root {escaped}"),
            (true, Some(owner)) => format!("run chown {owner} and chmod go-w on that {noun} as root {escaped}"),
            (false, None) => String::new(),
        };
    };
    match (chmod, chown_to) {
        (true, None) => format!("run `chmod go-w {path}`"),
        (false, Some(owner)) => format!("run `chown {owner} {path}` as root"),
        (true, Some(owner)) => format!("run `chown {owner} {path}` as root and `chmod go-w {path}`"),
        (false, None) => String::new(),
    }
}

/// `path` as one word of a shell command, when it is shown as it is: `None` when
/// [`crate::text::escape`] would change it, as the shown command would then name
/// another file.
pub fn shell_path(path: &Path) -> Option<String> {
    let text = path.to_string_lossy();
    let shown_as_is = path.to_str().is_some() && matches!(crate::text::escape(&text), std::borrow::Cow::Borrowed(_));
    shown_as_is.then(|| shell_word(path))
}

/// `path` as one word of a shell command.
pub fn shell_word(path: &Path) -> String {
    let text = path.to_string_lossy();
    if !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c)) {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.conf");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn reads_up_to_the_limit_and_no_further() {
        assert_eq!(read_limited(&b"four"[..], 4).unwrap(), Some(b"four".to_vec()));
        assert_eq!(read_limited(&b"five!"[..], 4).unwrap(), None);
        // An endless source ends at the limit.
        assert_eq!(read_limited(io::repeat(0), 1 << 20).unwrap(), None);
    }

    #[test]
    fn fix_commands_quote_paths_for_the_shell() {
        assert_eq!(shell_word(Path::new("/home/a.b/.config/determined")), "/home/a.b/.config/determined");
        assert_eq!(shell_word(Path::new("/home/o'neil/my certs.json")), "'/home/o'\\''neil/my certs.json'");
        assert_eq!(fix_command(Path::new("/etc/a b"), "file", true, None), "run `chmod go-w '/etc/a b'`");
    }

    #[test]
    fn no_command_names_a_path_shown_escaped() {
        // Shown as `/etc/a\\b`, which a shell reads as `/etc/a\b`: another file.
        for odd in ["/etc/a\\b", "/etc/\u{1b}[2Jx", "/etc/a\nb"] {
            assert_eq!(shell_path(Path::new(odd)), None, "{odd}");
        }
        let path = Path::new("/etc/a\\b");
        assert_eq!(
            fix_command(path, "folder", true, None),
            "run chmod go-w on that folder (its name holds characters shown escaped above)"
        );
        assert_eq!(
            fix_command(path, "file", true, Some("root")),
            "run chown root and chmod go-w on that file as root (its name holds characters shown escaped above)"
        );
        assert_eq!(
            fix_command(path, "file", false, Some("0")),
            "run chown 0 on that file as root (its name holds characters shown escaped above)"
        );
    }

    #[test]
    fn strict_modes_owner_and_writers() {
        let access = |mode, owner| Access { mode, owner, me: 1000 };
        assert!(access(0o644, 1000).strict() && access(0o600, 0).strict() && access(0o755, 0).strict());
        assert!(!access(0o664, 1000).strict() && !access(0o646, 0).strict() && !access(0o644, 1001).strict());
        assert_eq!(access(0o1777, 0).problems(), "is writable by its group and by every user");
        assert!(access(0o1777, 0).sticky() && !access(0o777, 0).sticky());
        assert_eq!(
            access(0o660, 7).problems(),
            "is writable by its group and is owned by uid 7, neither this user (uid 1000) nor root"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty folder: the rename fails after the temp file is written.
        let path = dir.path().join("taken");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "keep").unwrap();
        assert!(write_atomic(&path, b"new", 0o644).is_err());
        assert_eq!(fs::read_to_string(path.join("inside")).unwrap(), "keep");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file removed");
    }
}
