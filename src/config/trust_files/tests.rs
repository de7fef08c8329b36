//! Tests of the trust-file warnings: the rules on modes and owners, the wording of each
//! warning, and real files, folders and links.

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
    assert!(shown(cert, Some("/home/bob"), 0o775, 1001)
        .ends_with("if that folder should be root's, run `chown root /home/bob` as root and `chmod go-w /home/bob`"));
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
    assert!(folder.starts_with("the folder /etc/a\\\\b of security.tls.master_cert /etc/a\\\\b/ca.crt is"), "{folder}");
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
    assert!(shown(key, None, 0o666, ME)
        .contains(": any local user can read the key and connect to the master as this agent, and can replace it;"));
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
