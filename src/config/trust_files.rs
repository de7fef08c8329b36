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
//!   owned by root or this user; its folder must be writable by no one else unless the
//!   sticky bit keeps others from renaming over the file, and owned likewise.
//! - `security.tls.client_key`: readable or writable by no one but its owner, as OpenSSH
//!   asks of a private key ("UNPROTECTED PRIVATE KEY FILE").

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::names::{CLIENT_KEY, MASTER_CERT};
use super::{TlsConfig, Trust};
use crate::fsutil::{self, Access};
use crate::text::escape;

/// The variable that names CA mode's host bundle (read by rustls-native-certs).
const CERT_FILE_VAR: &str = "SSL_CERT_FILE";

/// Which file a [`TrustFileWarning`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrustFile {
    /// `security.tls.master_cert`: the only anchors in pinned mode.
    MasterCert,
    /// The host bundle `SSL_CERT_FILE` names: anchors in CA mode.
    HostBundle,
    /// `security.tls.client_key`: whoever reads it can connect as this agent.
    ClientKey,
}

impl TrustFile {
    /// The option or variable that names the file.
    pub fn setting(self) -> &'static str {
        match self {
            TrustFile::MasterCert => MASTER_CERT.key,
            TrustFile::HostBundle => CERT_FILE_VAR,
            TrustFile::ClientKey => CLIENT_KEY.key,
        }
    }
}

/// A file that decides what det-agent trusts (or its folder), which another local user
/// can change, or (the client key) read. det-agent uses the file anyway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustFileWarning {
    /// Which file.
    pub file: TrustFile,
    /// The file, as configured.
    pub path: PathBuf,
    /// The folder the problem is with (its real path), when it is not the file itself.
    pub folder: Option<PathBuf>,
    /// The permission bits of what the problem is with (the file, or the folder).
    pub mode: u32,
    /// Its owner's uid.
    pub owner: u32,
    /// Its group's gid.
    pub group: u32,
    /// The uid det-agent runs as.
    pub me: u32,
}

/// Every warning for the files `tls` reads; `env` looks up `SSL_CERT_FILE`, which CA
/// mode reads. A file that cannot be examined (missing, no permission) gets none: loading
/// it has already failed, or rustls-native-certs skips it.
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
        }
        _ => {}
    }
    if let Some(identity) = &tls.client_identity {
        if let Ok(meta) = fs::metadata(&identity.key_path) {
            if key_exposed(Access::of(&meta)) {
                out.push(warning(TrustFile::ClientKey, &identity.key_path, None, &meta));
            }
        }
    }
    out
}

/// Warnings for a file of anchors: the file, then the folders it could be renamed over
/// in (the one it is named in, and the one it really is in, when a link leads elsewhere).
fn anchors(file: TrustFile, path: &Path, out: &mut Vec<TrustFileWarning>) {
    let Ok(meta) = fs::metadata(path) else { return };
    if anchors_exposed(Access::of(&meta)) {
        out.push(warning(file, path, None, &meta));
    }
    let named_in = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut folders: Vec<PathBuf> = Vec::new();
    let real = fs::canonicalize(path).ok();
    for dir in [fs::canonicalize(named_in).ok(), real.as_deref().and_then(Path::parent).map(Path::to_owned)] {
        if let Some(dir) = dir.filter(|d| !folders.contains(d)) {
            folders.push(dir);
        }
    }
    for dir in folders {
        if let Ok(meta) = fs::metadata(&dir) {
            if folder_exposed(Access::of(&meta)) {
                out.push(warning(file, path, Some(dir), &meta));
            }
        }
    }
}

fn warning(file: TrustFile, path: &Path, folder: Option<PathBuf>, meta: &fs::Metadata) -> TrustFileWarning {
    let Access { mode, owner, me } = Access::of(meta);
    TrustFileWarning { file, path: path.to_owned(), folder, mode, owner, group: meta.gid(), me }
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

/// A private key another user can read or change.
fn key_exposed(access: Access) -> bool {
    access.mode & 0o066 != 0
}

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
        let words = match (bits(3), bits(0)) {
            (Some(g), Some(o)) if g == o => format!("{g} by its group and by every user"),
            (Some(g), Some(o)) => format!("{g} by its group and {o} by every user"),
            (Some(g), None) => format!("{g} by its group"),
            (None, Some(o)) => format!("{o} by every user"),
            (None, None) => String::new(),
        };
        let who = self.who(self.mode & 0o006 != 0, self.mode & 0o060 != 0, false);
        let what = if self.mode & 0o044 != 0 {
            "can read the key and connect to the master as this agent"
        } else {
            "can replace the key"
        };
        write!(
            f,
            "{} {path} is {words} (mode {:04o}, owner uid {}, group gid {}): {who} {what}; det-agent uses it anyway. \
             Protect it as OpenSSH would insist: run `chmod 600 {}`",
            self.file.setting(),
            self.mode,
            self.owner,
            self.group,
            escape(&fsutil::shell_word(&self.path)),
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
        let (group_w, others_w) = (self.mode & 0o020 != 0, self.mode & 0o002 != 0);
        let owner_bad = !access.owned_well();
        let (subject, problem, writers_count, how) = match &self.folder {
            None => (
                format!("{} {path}", self.file.setting()),
                access.problems(),
                access.writable_by_others(),
                "can replace the certificates det-agent trusts",
            ),
            Some(dir) => {
                let writable = access.writable_by_others() && !access.sticky();
                let words: Vec<String> = writable
                    .then(|| format!("{} and has no sticky bit", access.writable_words().unwrap_or_default()))
                    .into_iter()
                    .chain(access.owner_words())
                    .collect();
                (
                    format!("the folder {} of {} {path}", escape(&dir.to_string_lossy()), self.file.setting()),
                    words.join(" and "),
                    writable,
                    "can put another file in its place, and so replace the certificates det-agent trusts",
                )
            }
        };
        let who = self.who(writers_count && others_w, writers_count && group_w, owner_bad);
        let fixed = self.folder.as_deref().unwrap_or(&self.path);
        let fix = fsutil::fix_command(fixed, writers_count, owner_bad.then_some("root"));
        write!(
            f,
            "{subject} {problem} (mode {:04o}, owner uid {}, group gid {}): {who} {how}; det-agent uses it anyway. \
             To fix: {}",
            self.mode,
            self.owner,
            self.group,
            escape(&fix)
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
            folder: folder.map(PathBuf::from),
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
             its place, and so replace the certificates det-agent trusts; det-agent uses it anyway. To fix: run \
             `chown root /srv` as root"
        );
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
            folder: None,
            mode: 0o664,
            owner: 0,
            group: 0,
            me: ME,
        };
        let text = warning.to_string();
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("/etc/\\x1b[2Jca.crt is writable"), "{text}");
        assert!(text.contains("run `chmod go-w '/etc/\\x1b[2Jca.crt'`"), "{text}");
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
            out.iter().map(|w| (w.mode, w.folder.is_some())).collect::<Vec<_>>()
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
        assert_eq!(warnings[0].folder.as_deref(), Some(fs::canonicalize(dir.path()).unwrap().as_path()));
        chmod(dir.path(), 0o700);
    }
}
