//! The files that decide what det-agent trusts, and whether another local user can
//! change (or, for the client key, read) them.
//!
//! The trust store is refused outright when it breaks OpenSSH's StrictModes rule (see
//! [`crate::store`]). The files below are the operator's (often root's 0644 files in
//! /etc/determined, or a checkout's files whose mode follows the umask), so a refusal
//! would break working installations: they are used, and each problem becomes a
//! [`TrustFileWarning`] that `run` logs and `check` prints.
//!
//! - `security.tls.master_cert` (pinned mode's only anchors) and the bundle named by
//!   `SSL_CERT_FILE` (CA mode): the file must be writable by no one but its owner, and
//!   owned by root or this user. As OpenSSH's `safe_path`, so must every folder from it up
//!   to `/` (unless the sticky bit keeps others from renaming over what is in it): each
//!   folder a name is looked up in while the path is resolved, which covers the folders of
//!   the path as named and of its real path, and each symlink passed through, which,
//!   owned by another user in a sticky folder, that user can replace.
//! - `SSL_CERT_DIR` (CA mode; a colon-separated list): each folder it lists, as a folder
//!   of anchors, and the folders above it as above. rustls-native-certs reads every file
//!   in it, so another user who may write the folder adds a CA, sticky bit or not.
//! - `security.tls.client_key`: readable or writable by no one but its owner, and owned
//!   by this user or root, as OpenSSH asks of a private key ("UNPROTECTED PRIVATE KEY
//!   FILE").

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::names::{CLIENT_KEY, MASTER_CERT};
use super::{TlsConfig, Trust};
use crate::fsutil::{self, Access};
use crate::text::escape;

/// The variable that names CA mode's host bundle (read by rustls-native-certs).
const CERT_FILE_VAR: &str = "SSL_CERT_FILE";
/// The variable that lists CA mode's folders of host certificates (read likewise).
const CERT_DIR_VAR: &str = "SSL_CERT_DIR";
/// The most symlinks one path resolution follows, as Linux's `MAXSYMLINKS`; past it the
/// file cannot be opened anyway.
const MAX_LINKS: u32 = 40;

/// Which file a [`TrustFileWarning`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustFile {
    /// `security.tls.master_cert`: the only anchors in pinned mode.
    MasterCert,
    /// The host bundle `SSL_CERT_FILE` names: anchors in CA mode.
    HostBundle,
    /// A folder `SSL_CERT_DIR` lists: every file in it is anchors in CA mode.
    HostCertDir,
    /// `security.tls.client_key`: whoever reads it can connect as this agent.
    ClientKey,
}

impl TrustFile {
    /// The option or variable that names the file.
    pub fn setting(self) -> &'static str {
        match self {
            TrustFile::MasterCert => MASTER_CERT.key,
            TrustFile::HostBundle => CERT_FILE_VAR,
            TrustFile::HostCertDir => CERT_DIR_VAR,
            TrustFile::ClientKey => CLIENT_KEY.key,
        }
    }
}

/// What a [`TrustFileWarning`]'s problem is with.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Subject {
    /// The configured file (for `SSL_CERT_DIR`, folder) itself.
    Itself,
    /// A folder above it (its real path), in which another user can put something else
    /// in its place.
    Folder(PathBuf),
    /// A symlink the path passes through, owned by another user, in a sticky folder
    /// others may write: the sticky bit lets the link's owner replace it.
    Link {
        /// The symlink.
        link: PathBuf,
        /// The folder it is in (its real path).
        folder: PathBuf,
    },
}

/// A file that decides what det-agent trusts (or a folder or symlink on its path), which
/// another local user can change, or (the client key) read. det-agent uses the file
/// anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFileWarning {
    /// Which file.
    pub file: TrustFile,
    /// The file, as configured.
    pub path: PathBuf,
    /// What the problem is with.
    pub subject: Subject,
    /// The permission bits of what the problem is with (for a link, of the folder it is
    /// in: a link's own bits mean nothing).
    pub mode: u32,
    /// Its owner's uid.
    pub owner: u32,
    /// Its group's gid.
    pub group: u32,
    /// The uid det-agent runs as.
    pub me: u32,
}

/// Every warning for the files `tls` reads; `env` looks up `SSL_CERT_FILE` and
/// `SSL_CERT_DIR`, which CA mode reads. A file that cannot be examined (missing, no
/// permission) gets none: loading it has already failed, or rustls-native-certs skips
/// it. A folder or link shared by several of the files is warned about once.
pub fn trust_file_warnings(tls: Option<&TlsConfig>, env: &dyn Fn(&str) -> Option<String>) -> Vec<TrustFileWarning> {
    let mut out = Vec::new();
    let Some(tls) = tls else { return out };
    match &tls.trust {
        // A stored chain's file is the trust store, which is refused, not warned about.
        Trust::Pinned(pinned) if pinned.store_entry.is_none() => anchors(TrustFile::MasterCert, &pinned.path, &mut out),
        Trust::PublicRoots => {
            if let Some(path) = env(CERT_FILE_VAR).filter(|p| !p.is_empty()) {
                anchors(TrustFile::HostBundle, Path::new(&path), &mut out);
            }
            // Split as rustls-native-certs splits it (`std::env::split_paths`, empty
            // entries skipped).
            if let Some(dirs) = env(CERT_DIR_VAR) {
                for dir in std::env::split_paths(&dirs).filter(|d| !d.as_os_str().is_empty()) {
                    cert_dir(&dir, &mut out);
                }
            }
        }
        _ => {}
    }
    if let Some(identity) = &tls.client_identity {
        if let Ok(meta) = fs::metadata(&identity.key_path) {
            if key_exposed(Access::of(&meta)) {
                out.push(warning(TrustFile::ClientKey, &identity.key_path, Subject::Itself, &meta));
            }
        }
    }
    out
}

/// Warnings for a file of anchors: the file, then the folders and links on its path.
fn anchors(file: TrustFile, path: &Path, out: &mut Vec<TrustFileWarning>) {
    let Ok(meta) = fs::metadata(path) else { return };
    if anchors_exposed(Access::of(&meta)) {
        out.push(warning(file, path, Subject::Itself, &meta));
    }
    path_warnings(file, path, &Walk::of(path), out);
}

/// Warnings for a folder `SSL_CERT_DIR` lists: the folder (writable by no one else,
/// sticky or not: anyone who may add a file adds a CA), then the folders and links on its
/// path. The files in it are not examined, one by one: that would cost a `stat` per
/// certificate of a host store for each `check` and reload, and a file's own mode matters
/// less than the folder's, which decides who can add or rename files.
fn cert_dir(dir: &Path, out: &mut Vec<TrustFileWarning>) {
    let Ok(meta) = fs::metadata(dir) else { return };
    if !meta.is_dir() {
        return;
    }
    if !Access::of(&meta).strict() {
        out.push(warning(TrustFile::HostCertDir, dir, Subject::Itself, &meta));
    }
    path_warnings(TrustFile::HostCertDir, dir, &Walk::of(dir), out);
}

fn path_warnings(file: TrustFile, path: &Path, walk: &Walk, out: &mut Vec<TrustFileWarning>) {
    for step in &walk.steps {
        let found = match step {
            Step::Folder(dir) => fs::metadata(dir)
                .ok()
                .filter(|meta| folder_exposed(Access::of(meta)))
                .map(|meta| warning(file, path, Subject::Folder(dir.clone()), &meta)),
            Step::Link { link, folder, meta } => fs::metadata(folder)
                .ok()
                .filter(|dir| link_exposed(Access::of(dir), Access::of(meta)))
                .map(|dir| TrustFileWarning {
                    mode: dir.mode() & 0o7777,
                    ..warning(file, path, Subject::Link { link: link.clone(), folder: folder.clone() }, meta)
                }),
        };
        if let Some(found) = found {
            // Once per folder or link, even when two files share it.
            if !out.iter().any(|w| w.subject == found.subject) {
                out.push(found);
            }
        }
    }
}

/// What resolving a path passes through, in order: each folder a name is looked up in
/// (its real path), with the folders above it, each once; and each symlink followed.
#[derive(Default)]
struct Walk {
    steps: Vec<Step>,
}

enum Step {
    Folder(PathBuf),
    Link { link: PathBuf, folder: PathBuf, meta: fs::Metadata },
}

impl Walk {
    /// Resolves `path` one name at a time, as the kernel does (relative to the current
    /// folder). It stops where a name cannot be looked up: the file is then unreadable
    /// anyway.
    fn of(path: &Path) -> Walk {
        let mut walk = Walk::default();
        let path = if path.is_absolute() {
            path.to_owned()
        } else {
            match std::env::current_dir() {
                Ok(cwd) => cwd.join(path),
                Err(_) => return walk,
            }
        };
        let mut at = PathBuf::from("/");
        let mut links = MAX_LINKS;
        walk.resolve(&mut at, &path, &mut links);
        walk
    }

    /// Follows `path` from the folder `at` (a real path), leaving `at` where it ends.
    fn resolve(&mut self, at: &mut PathBuf, path: &Path, links: &mut u32) -> Option<()> {
        for part in path.components() {
            match part {
                Component::RootDir => *at = PathBuf::from("/"),
                Component::Prefix(_) | Component::CurDir => {}
                Component::ParentDir => {
                    at.pop();
                }
                Component::Normal(name) => {
                    self.folder(at);
                    let next = at.join(name);
                    let meta = fs::symlink_metadata(&next).ok()?;
                    if meta.file_type().is_symlink() {
                        *links = links.checked_sub(1)?;
                        let target = fs::read_link(&next).ok()?;
                        self.steps.push(Step::Link { link: next, folder: at.clone(), meta });
                        self.resolve(at, &target, links)?;
                    } else {
                        *at = next;
                    }
                }
            }
        }
        Some(())
    }

    /// `dir` and the folders above it, each the first time it is met.
    fn folder(&mut self, dir: &Path) {
        let mut above: Vec<&Path> = dir.ancestors().collect();
        above.reverse();
        for dir in above {
            if !self.steps.iter().any(|s| matches!(s, Step::Folder(d) if d == dir)) {
                self.steps.push(Step::Folder(dir.to_owned()));
            }
        }
    }
}

fn warning(file: TrustFile, path: &Path, subject: Subject, meta: &fs::Metadata) -> TrustFileWarning {
    let Access { mode, owner, me } = Access::of(meta);
    TrustFileWarning { file, path: path.to_owned(), subject, mode, owner, group: meta.gid(), me }
}

/// A file of anchors another user can change: StrictModes.
fn anchors_exposed(access: Access) -> bool {
    !access.strict()
}

/// A folder in which another user can put another file in the file's place: writable by
/// others without the sticky bit, or owned by another user.
fn folder_exposed(access: Access) -> bool {
    (access.writable_by_others() && !access.sticky()) || !access.owned_well()
}

/// A symlink its owner, another user, can replace: in a folder others may write, whose
/// sticky bit lets each entry's owner rename or remove it. (Without the sticky bit, the
/// folder itself is warned about; if others may not write it, neither may the link's
/// owner replace it. A link's own mode cannot be changed on Linux and means nothing.)
fn link_exposed(folder: Access, link: Access) -> bool {
    folder.sticky() && folder.writable_by_others() && !link.owned_well()
}

/// A private key another user can read or change: its group or every user may read or
/// write it, or it belongs to another user (who may read it, and chmod it).
fn key_exposed(access: Access) -> bool {
    access.mode & 0o066 != 0 || !access.owned_well()
}

/// Why a fix is said in words rather than as a command: a command naming a path shown
/// escaped would name another file (see [`fsutil::fix_command`]).
const ESCAPED: &str = "(its name holds characters shown escaped above)";

impl TrustFileWarning {
    fn access(&self) -> Access {
        Access { mode: self.mode, owner: self.owner, me: self.me }
    }

    /// Who, besides this user and root, can act on the file: "any local user", "any
    /// user in group 1000", "uid 1001", joined by "and".
    fn who(&self, others: bool, group: bool, owner: bool) -> String {
        let mut who = Vec::new();
        if others {
            who.push("any local user".to_owned());
        } else if group {
            who.push(format!("any user in group {}", self.group));
        }
        if owner {
            who.push(format!("uid {}", self.owner));
        }
        who.join(" and ")
    }

    fn fmt_key(&self, f: &mut fmt::Formatter<'_>, path: &str) -> fmt::Result {
        let bits = |shift: u32| {
            let (read, write) = (self.mode >> shift & 0o4 != 0, self.mode >> shift & 0o2 != 0);
            match (read, write) {
                (true, true) => Some("readable and writable"),
                (true, false) => Some("readable"),
                (false, true) => Some("writable"),
                (false, false) => None,
            }
        };
        let bit_words = match (bits(3), bits(0)) {
            (Some(g), Some(o)) if g == o => Some(format!("is {g} by its group and by every user")),
            (Some(g), Some(o)) => Some(format!("is {g} by its group and {o} by every user")),
            (Some(g), None) => Some(format!("is {g} by its group")),
            (None, Some(o)) => Some(format!("is {o} by every user")),
            (None, None) => None,
        };
        let access = self.access();
        let owner_bad = !access.owned_well();
        let words: Vec<String> = bit_words.into_iter().chain(access.owner_words()).collect();
        // Readers and writers apart: a 0642 key is read by its group, written by all.
        let readers = self.who(self.mode & 0o004 != 0, self.mode & 0o040 != 0, owner_bad);
        let writers = self.who(self.mode & 0o002 != 0, self.mode & 0o020 != 0, owner_bad);
        let read = "can read the key and connect to the master as this agent";
        let what = match (readers.is_empty(), writers.is_empty()) {
            (false, false) if readers == writers => format!("{readers} {read}, and can replace it"),
            (false, false) => format!("{readers} {read}, and {writers} can replace it"),
            (false, true) => format!("{readers} {read}"),
            (true, false) => format!("{writers} can replace the key"),
            (true, true) => String::new(),
        };
        let chmod = self.mode & 0o066 != 0;
        let me = if self.me == 0 { "root".to_owned() } else { self.me.to_string() };
        let chown = if self.me == 0 { me.clone() } else { format!("{me} (or root)") };
        let fix = match (fsutil::shell_path(&self.path), owner_bad, chmod) {
            (Some(p), false, _) => format!("run `chmod 600 {p}`"),
            (Some(p), true, false) if self.me == 0 => format!("run `chown root {p}`"),
            (Some(p), true, false) => format!("run `chown {me} {p}` (or `chown root {p}`) as root"),
            (Some(p), true, true) => {
                let or_root = if self.me == 0 { String::new() } else { format!(" (or `chown root {p}`)") };
                format!("run `chown {me} {p}`{or_root} as root and `chmod 600 {p}`")
            }
            (None, false, _) => format!("run chmod 600 on that file {ESCAPED}"),
            (None, true, false) => format!("run chown {chown} on that file as root {ESCAPED}"),
            (None, true, true) => format!("run chown {chown} and chmod 600 on that file as root {ESCAPED}"),
        };
        write!(
            f,
            "{} {path} {} (mode {:04o}, owner uid {}, group gid {}): {what}; det-agent uses it anyway. \
             Protect it as OpenSSH would insist: {fix}",
            self.file.setting(),
            words.join(" and "),
            self.mode,
            self.owner,
            self.group,
        )
    }

    fn fmt_link(&self, f: &mut fmt::Formatter<'_>, path: &str, link: &Path, folder: &Path) -> fmt::Result {
        let fix = match fsutil::shell_path(link) {
            Some(p) => format!("run `chown -h root {p}` as root"),
            None => format!("run chown -h root on that symlink as root {ESCAPED}"),
        };
        write!(
            f,
            "the symlink {} on the way to {} {path} is owned by uid {owner}, neither this user (uid {}) nor root, \
             in the folder {} (mode {:04o}) that others may write and whose sticky bit lets a link's owner replace \
             it: uid {owner} can point it elsewhere, and so replace the certificates det-agent trusts; det-agent \
             uses it anyway. To fix: point {} at a path without that link (such as the file's real path), or {fix}",
            escape(&link.to_string_lossy()),
            self.file.setting(),
            self.me,
            escape(&folder.to_string_lossy()),
            self.mode,
            self.file.setting(),
            owner = self.owner,
        )
    }
}

impl fmt::Display for TrustFileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = escape(&self.path.to_string_lossy()).into_owned();
        if self.file == TrustFile::ClientKey {
            return self.fmt_key(f, &path);
        }
        let access = self.access();
        let setting = self.file.setting();
        let (group_w, others_w) = (self.mode & 0o020 != 0, self.mode & 0o002 != 0);
        let owner_bad = !access.owned_well();
        let (subject, problem, writers_count, how, fix) = match &self.subject {
            Subject::Link { link, folder } => return self.fmt_link(f, &path, link, folder),
            Subject::Itself if self.file == TrustFile::HostCertDir => (
                format!("the folder {path} that {setting} lists"),
                access.problems(),
                access.writable_by_others(),
                "can add a certificate det-agent trusts (it reads every file there)",
                fsutil::fix_command(&self.path, "folder", access.writable_by_others(), owner_bad.then_some("root")),
            ),
            Subject::Itself => (
                format!("{setting} {path}"),
                access.problems(),
                access.writable_by_others(),
                "can replace the certificates det-agent trusts",
                fsutil::fix_command(&self.path, "file", access.writable_by_others(), owner_bad.then_some("root")),
            ),
            Subject::Folder(dir) => {
                let writable = access.writable_by_others() && !access.sticky();
                let words: Vec<String> = writable
                    .then(|| format!("{} and has no sticky bit", access.writable_words().unwrap_or_default()))
                    .into_iter()
                    .chain(access.owner_words())
                    .collect();
                let how = if self.file == TrustFile::HostCertDir {
                    "can put another folder in its place, and so replace the certificates det-agent trusts"
                } else {
                    "can put another file in its place, and so replace the certificates det-agent trusts"
                };
                let fix = if owner_bad {
                    // `chown root` alone could take someone's home folder from them.
                    let what = if self.file == TrustFile::HostCertDir { "certificates" } else { "file" };
                    format!(
                        "keep the {what} in a folder that root owns (such as /etc/determined) and point {setting} \
                         at it; or, if that folder should be root's, {}",
                        fsutil::fix_command(dir, "folder", writable, Some("root"))
                    )
                } else {
                    fsutil::fix_command(dir, "folder", writable, None)
                };
                (
                    format!("the folder {} of {setting} {path}", escape(&dir.to_string_lossy())),
                    words.join(" and "),
                    writable,
                    how,
                    fix,
                )
            }
        };
        let who = self.who(writers_count && others_w, writers_count && group_w, owner_bad);
        write!(
            f,
            "{subject} {problem} (mode {:04o}, owner uid {}, group gid {}): {who} {how}; det-agent uses it anyway. \
             To fix: {fix}",
            self.mode, self.owner, self.group,
        )
    }
}

#[cfg(test)]
mod tests;
