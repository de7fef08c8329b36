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
mod tests {
    use super::*;

    const ME: u32 = 1000;

    fn access(mode: u32) -> Access {
        Access { mode, owner: ME, me: ME }
    }

    #[test]
    fn files_of_anchors_others_could_change() {
        assert!(!anchors_exposed(access(0o644)));
        assert!(!anchors_exposed(access(0o444)));
        assert!(!anchors_exposed(Access { mode: 0o644, owner: 0, me: ME }));
        assert!(anchors_exposed(access(0o664)));
        assert!(anchors_exposed(access(0o666)));
        assert!(anchors_exposed(access(0o646)));
        assert!(anchors_exposed(Access { mode: 0o644, owner: 1001, me: ME }));
    }

    #[test]
    fn folders_others_could_rename_into() {
        assert!(!folder_exposed(access(0o755)));
        assert!(!folder_exposed(Access { mode: 0o755, owner: 0, me: ME }));
        assert!(folder_exposed(access(0o777)));
        assert!(!folder_exposed(Access { mode: 0o1777, owner: 0, me: ME }), "/tmp");
        assert!(folder_exposed(access(0o775)), "group-writable");
        assert!(!folder_exposed(access(0o1775)));
        assert!(folder_exposed(Access { mode: 0o755, owner: 1001, me: ME }));
        assert!(folder_exposed(Access { mode: 0o1777, owner: 1001, me: ME }));
    }

    #[test]
    fn keys_others_could_read() {
        assert!(!key_exposed(access(0o600)));
        assert!(!key_exposed(access(0o400)));
        assert!(key_exposed(access(0o640)));
        assert!(key_exposed(access(0o644)));
        assert!(key_exposed(access(0o620)));
        assert!(key_exposed(access(0o602)));
    }

    fn shown(file: TrustFile, folder: Option<&str>, mode: u32, owner: u32) -> String {
        TrustFileWarning {
            file,
            path: "/etc/determined/ca.crt".into(),
            subject: folder.map_or(Subject::Itself, |d| Subject::Folder(d.into())),
            mode,
            owner,
            group: 50,
            me: ME,
        }
        .to_string()
    }

    #[test]
    fn each_warning_says_who_can_do_what_and_the_fix() {
        let (cert, bundle, key) = (TrustFile::MasterCert, TrustFile::HostBundle, TrustFile::ClientKey);
        assert_eq!(
            shown(cert, None, 0o664, 0),
            "security.tls.master_cert /etc/determined/ca.crt is writable by its group (mode 0664, owner uid 0, \
             group gid 50): any user in group 50 can replace the certificates det-agent trusts; det-agent uses it \
             anyway. To fix: run `chmod go-w /etc/determined/ca.crt`"
        );
        assert_eq!(
            shown(bundle, None, 0o666, 1001),
            "SSL_CERT_FILE /etc/determined/ca.crt is writable by its group and by every user and is owned by uid \
             1001, neither this user (uid 1000) nor root (mode 0666, owner uid 1001, group gid 50): any local user \
             and uid 1001 can replace the certificates det-agent trusts; det-agent uses it anyway. To fix: run \
             `chown root /etc/determined/ca.crt` as root and `chmod go-w /etc/determined/ca.crt`"
        );
        assert_eq!(
            shown(cert, Some("/etc/determined"), 0o777, 0),
            "the folder /etc/determined of security.tls.master_cert /etc/determined/ca.crt is writable by its group \
             and by every user and has no sticky bit (mode 0777, owner uid 0, group gid 50): any local user can put \
             another file in its place, and so replace the certificates det-agent trusts; det-agent uses it anyway. \
             To fix: run `chmod go-w /etc/determined`"
        );
        assert_eq!(
            shown(cert, Some("/srv"), 0o1777, 1001),
            "the folder /srv of security.tls.master_cert /etc/determined/ca.crt is owned by uid 1001, neither this \
             user (uid 1000) nor root (mode 1777, owner uid 1001, group gid 50): uid 1001 can put another file in \
             its place, and so replace the certificates det-agent trusts; det-agent uses it anyway. To fix: keep the \
             file in a folder that root owns (such as /etc/determined) and point security.tls.master_cert at it; or, \
             if that folder should be root's, run `chown root /srv` as root"
        );
        assert!(shown(cert, Some("/home/bob"), 0o775, 1001).ends_with(
            "if that folder should be root's, run `chown root /home/bob` as root and `chmod go-w /home/bob`"
        ));
        assert_eq!(
            shown(key, None, 0o640, ME),
            "security.tls.client_key /etc/determined/ca.crt is readable by its group (mode 0640, owner uid 1000, \
             group gid 50): any user in group 50 can read the key and connect to the master as this agent; \
             det-agent uses it anyway. Protect it as OpenSSH would insist: run `chmod 600 /etc/determined/ca.crt`"
        );
        assert!(shown(key, None, 0o644, ME).contains(
            "is readable by its group and by every user (mode 0644, owner uid 1000, group gid 50): any local user can read"
        ));
        assert!(shown(key, None, 0o662, ME)
            .contains("is readable and writable by its group and writable by every user (mode 0662"));
        assert!(shown(key, None, 0o620, ME).contains("any user in group 50 can replace the key;"));
    }

    #[test]
    fn odd_bytes_in_a_path_are_shown_escaped() {
        let warning = TrustFileWarning {
            file: TrustFile::MasterCert,
            path: "/etc/\u{1b}[2Jca.crt".into(),
            subject: Subject::Itself,
            mode: 0o664,
            owner: 0,
            group: 0,
            me: ME,
        };
        let text = warning.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("/etc/\\x1b[2Jca.crt is writable"), "{text}");
        // Not a command: `chmod go-w '/etc/\x1b[2Jca.crt'` would name another file.
        assert!(
            text.ends_with("To fix: run chmod go-w on that file (its name holds characters shown escaped above)"),
            "{text}"
        );
        let folder = TrustFileWarning {
            path: "/etc/a\\b/ca.crt".into(),
            subject: Subject::Folder("/etc/a\\b".into()),
            mode: 0o777,
            owner: 1001,
            ..warning.clone()
        }
        .to_string();
        assert!(
            folder.starts_with("the folder /etc/a\\\\b of security.tls.master_cert /etc/a\\\\b/ca.crt is"),
            "{folder}"
        );
        assert!(
            folder.ends_with(
                "if that folder should be root's, run chown root and chmod go-w on that folder as root (its name \
                 holds characters shown escaped above)"
            ),
            "{folder}"
        );
        let key = TrustFileWarning { file: TrustFile::ClientKey, mode: 0o644, ..warning }.to_string();
        assert!(key.ends_with("run chmod 600 on that file (its name holds characters shown escaped above)"), "{key}");
    }

    #[test]
    fn key_readers_and_writers_are_told_apart() {
        let key = TrustFile::ClientKey;
        assert_eq!(
            shown(key, None, 0o642, ME),
            "security.tls.client_key /etc/determined/ca.crt is readable by its group and writable by every user \
             (mode 0642, owner uid 1000, group gid 50): any user in group 50 can read the key and connect to the \
             master as this agent, and any local user can replace it; det-agent uses it anyway. Protect it as \
             OpenSSH would insist: run `chmod 600 /etc/determined/ca.crt`"
        );
        assert!(shown(key, None, 0o666, ME).contains(
            ": any local user can read the key and connect to the master as this agent, and can replace it;"
        ));
        assert!(shown(key, None, 0o624, ME).contains(
            "is writable by its group and readable by every user (mode 0624, owner uid 1000, group gid 50): any \
             local user can read the key and connect to the master as this agent, and any user in group 50 can \
             replace it;"
        ));
        // Another user's key, even 0600: its owner reads it, and may chmod it.
        assert_eq!(
            shown(key, None, 0o600, 1001),
            "security.tls.client_key /etc/determined/ca.crt is owned by uid 1001, neither this user (uid 1000) nor \
             root (mode 0600, owner uid 1001, group gid 50): uid 1001 can read the key and connect to the master as \
             this agent, and can replace it; det-agent uses it anyway. Protect it as OpenSSH would insist: run \
             `chown 1000 /etc/determined/ca.crt` (or `chown root /etc/determined/ca.crt`) as root"
        );
        assert!(shown(key, None, 0o640, 1001).ends_with(
            "run `chown 1000 /etc/determined/ca.crt` (or `chown root /etc/determined/ca.crt`) as root and \
             `chmod 600 /etc/determined/ca.crt`"
        ));
        let as_root = TrustFileWarning { me: 0, ..TrustFileWarning::clone(&key_warning(0o600, 1001)) }.to_string();
        assert!(as_root.ends_with("run `chown root /etc/determined/ca.crt`"), "{as_root}");
        assert!(key_exposed(Access { mode: 0o600, owner: 1001, me: ME }));
        assert!(!key_exposed(Access { mode: 0o600, owner: 0, me: ME }));
    }

    fn key_warning(mode: u32, owner: u32) -> TrustFileWarning {
        TrustFileWarning {
            file: TrustFile::ClientKey,
            path: "/etc/determined/ca.crt".into(),
            subject: Subject::Itself,
            mode,
            owner,
            group: 50,
            me: ME,
        }
    }

    #[test]
    fn cert_dirs_and_links() {
        let dir = |subject, mode, owner| {
            TrustFileWarning {
                file: TrustFile::HostCertDir,
                path: "/srv/certs".into(),
                subject,
                mode,
                owner,
                group: 50,
                me: ME,
            }
            .to_string()
        };
        assert_eq!(
            dir(Subject::Itself, 0o1777, 0),
            "the folder /srv/certs that SSL_CERT_DIR lists is writable by its group and by every user (mode 1777, \
             owner uid 0, group gid 50): any local user can add a certificate det-agent trusts (it reads every file \
             there); det-agent uses it anyway. To fix: run `chmod go-w /srv/certs`"
        );
        assert!(dir(Subject::Folder("/srv".into()), 0o777, 0).contains(
            "any local user can put another folder in its place, and so replace the certificates det-agent trusts"
        ));
        assert!(dir(Subject::Folder("/srv".into()), 0o755, 1001).contains("To fix: keep the certificates in a folder"));
        let link = TrustFileWarning {
            file: TrustFile::MasterCert,
            path: "/tmp/ca/master.crt".into(),
            subject: Subject::Link { link: "/tmp/ca".into(), folder: "/tmp".into() },
            mode: 0o1777,
            owner: 1001,
            group: 1001,
            me: 0,
        };
        assert_eq!(
            link.to_string(),
            "the symlink /tmp/ca on the way to security.tls.master_cert /tmp/ca/master.crt is owned by uid 1001, \
             neither this user (uid 0) nor root, in the folder /tmp (mode 1777) that others may write and whose \
             sticky bit lets a link's owner replace it: uid 1001 can point it elsewhere, and so replace the \
             certificates det-agent trusts; det-agent uses it anyway. To fix: point security.tls.master_cert at a \
             path without that link (such as the file's real path), or run `chown -h root /tmp/ca` as root"
        );
        assert!(link_exposed(Access { mode: 0o1777, owner: 0, me: 0 }, Access { mode: 0o777, owner: 1001, me: 0 }));
        assert!(!link_exposed(Access { mode: 0o1777, owner: 0, me: 0 }, Access { mode: 0o777, owner: 0, me: 0 }));
        assert!(!link_exposed(Access { mode: 0o1755, owner: 0, me: 0 }, Access { mode: 0o777, owner: 1001, me: 0 }));
    }

    #[test]
    fn real_files_and_folders() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.crt");
        fs::write(&ca, "x").unwrap();
        let found = |path: &Path| {
            let mut out = Vec::new();
            anchors(TrustFile::MasterCert, path, &mut out);
            out.iter().map(|w| (w.mode, w.subject != Subject::Itself)).collect::<Vec<_>>()
        };
        chmod(dir.path(), 0o700);
        chmod(&ca, 0o644);
        assert_eq!(found(&ca), []);
        chmod(&ca, 0o664);
        assert_eq!(found(&ca), [(0o664, false)]);
        chmod(&ca, 0o644);
        chmod(dir.path(), 0o777);
        assert_eq!(found(&ca), [(0o777, true)]);
        chmod(dir.path(), 0o1777);
        assert_eq!(found(&ca), []);
        // A link in a safe folder to a file in an unsafe one: the real folder counts.
        let safe = tempfile::tempdir().unwrap();
        chmod(safe.path(), 0o700);
        let link = safe.path().join("link.crt");
        std::os::unix::fs::symlink(&ca, &link).unwrap();
        chmod(dir.path(), 0o770);
        let warnings = {
            let mut out = Vec::new();
            anchors(TrustFile::MasterCert, &link, &mut out);
            out
        };
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(warnings[0].subject, Subject::Folder(fs::canonicalize(dir.path()).unwrap()));
        chmod(dir.path(), 0o700);
    }

    /// Every folder up to `/` counts, not only the file's own.
    #[test]
    fn folders_above_the_file() {
        use std::os::unix::fs::PermissionsExt;
        let chmod = |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        let top = tempfile::tempdir().unwrap();
        let inner = top.path().join("inner");
        fs::create_dir(&inner).unwrap();
        let ca = inner.join("ca.crt");
        fs::write(&ca, "x").unwrap();
        chmod(&ca, 0o644);
        chmod(&inner, 0o755);
        chmod(top.path(), 0o777);
        let found = |path: &Path| {
            let mut out = Vec::new();
            anchors(TrustFile::MasterCert, path, &mut out);
            out.into_iter().map(|w| w.subject).collect::<Vec<_>>()
        };
        let real_top = fs::canonicalize(top.path()).unwrap();
        assert_eq!(found(&ca), [Subject::Folder(real_top.clone())]);
        // Named through a link in a safe folder, and as a relative path with `..`.
        let safe = tempfile::tempdir().unwrap();
        chmod(safe.path(), 0o700);
        let link = safe.path().join("certs");
        std::os::unix::fs::symlink(&inner, &link).unwrap();
        assert_eq!(found(&link.join("ca.crt")), [Subject::Folder(real_top.clone())]);
        assert_eq!(found(&inner.join("..").join("inner").join("ca.crt")), [Subject::Folder(real_top.clone())]);
        // The folder the link is named in counts too, though the file is elsewhere.
        chmod(top.path(), 0o755);
        chmod(safe.path(), 0o770);
        let real_safe = fs::canonicalize(safe.path()).unwrap();
        assert_eq!(found(&link.join("ca.crt")), [Subject::Folder(real_safe)]);
        chmod(safe.path(), 0o700);
        assert_eq!(found(&link.join("ca.crt")), []);
    }

    /// A link another user owns, in a sticky folder others may write: that user can
    /// replace it. Giving a file to another uid takes root.
    #[test]
    fn links_another_user_owns_in_a_sticky_folder() {
        use std::os::unix::fs::PermissionsExt;
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: making a link owned by another user needs root");
            return;
        }
        let chmod = |p: &Path, mode| fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        let safe = tempfile::tempdir().unwrap();
        chmod(safe.path(), 0o700);
        let ca = safe.path().join("ca.crt");
        fs::write(&ca, "x").unwrap();
        chmod(&ca, 0o644);
        let shared = tempfile::tempdir().unwrap();
        chmod(shared.path(), 0o1777);
        let link = shared.path().join("ca.crt");
        std::os::unix::fs::symlink(&ca, &link).unwrap();
        let found = |path: &Path| {
            let mut out = Vec::new();
            anchors(TrustFile::MasterCert, path, &mut out);
            out
        };
        assert_eq!(found(&link), []);
        std::os::unix::fs::lchown(&link, Some(1001), Some(1001)).unwrap();
        let warnings = found(&link);
        let real_shared = fs::canonicalize(shared.path()).unwrap();
        assert_eq!(
            warnings.iter().map(|w| (&w.subject, w.owner, w.mode)).collect::<Vec<_>>(),
            [(&Subject::Link { link: real_shared.join("ca.crt"), folder: real_shared.clone() }, 1001, 0o1777)]
        );
        // Without the sticky bit the folder is the problem (anyone may replace the link).
        chmod(shared.path(), 0o777);
        let subjects: Vec<Subject> = found(&link).into_iter().map(|w| w.subject).collect();
        assert_eq!(subjects, [Subject::Folder(real_shared)]);
        chmod(shared.path(), 0o700);
    }
}
