//! The committed test PKI (`fixtures/pki`, made by `fixtures/generator`), embedded so
//! the demo runs from the binary alone. Test material only: these keys are public.

use std::path::Path;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

macro_rules! fixtures {
    ($($name:literal),* $(,)?) => {
        const FILES: &[(&str, &[u8])] = &[
            $(($name, include_bytes!(concat!("../../fixtures/pki/", $name))),)*
        ];
    };
}

fixtures!(
    "root-ca.pem",
    "intermediate-ca.pem",
    "other-root-ca.pem",
    "chain-to-root.pem",
    "master.pem",
    "master.key",
    "master-rsa.pem",
    "master-rsa.key",
    "ip-only.pem",
    "ip-only.key",
    "dns-only.pem",
    "dns-only.key",
    "expired.pem",
    "expired.key",
    "not-yet-valid.pem",
    "not-yet-valid.key",
    "wrong-name.pem",
    "wrong-name.key",
    "no-san.pem",
    "no-san.key",
    "unrelated-ca.pem",
    "unrelated-ca.key",
    "self-signed-ca.pem",
    "self-signed-ca.key",
    "self-signed-ca-other-key.pem",
    "self-signed-ca-other-key.key",
    "self-signed-leaf.pem",
    "self-signed-leaf.key",
    "client.pem",
    "client.key",
    "unrelated.key",
    "master-leaf.pem",
    "signed-by-leaf.pem",
    "signed-by-leaf.key",
    "expired-self-signed-ca.pem",
    "issued-by-expired-self-signed.pem",
    "issued-by-expired-self-signed.key",
);

/// The bytes of a fixture file, e.g. `bytes("root-ca.pem")`. The files the demo uses
/// are embedded in the binary; the others (used only by tests) are read from the source
/// tree, once each.
///
/// # Panics
/// The name is not a fixture: a programming error in the caller.
pub fn bytes(name: &str) -> &'static [u8] {
    if let Some((_, embedded)) = FILES.iter().find(|(n, _)| *n == name) {
        return embedded;
    }
    static READ: std::sync::Mutex<Vec<(String, &'static [u8])>> = std::sync::Mutex::new(Vec::new());
    let mut read = READ.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, bytes)) = read.iter().find(|(n, _)| n == name) {
        return bytes;
    }
    let on_disk = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pki").join(name);
    let bytes: &'static [u8] = match std::fs::read(&on_disk) {
        Ok(bytes) => Box::leak(bytes.into_boxed_slice()),
        Err(err) => panic!("no fixture named {name} ({}: {err})", on_disk.display()),
    };
    read.push((name.to_owned(), bytes));
    bytes
}

/// The certificates of a fixture file.
pub fn certs(name: &str) -> Vec<CertificateDer<'static>> {
    crate::pem::parse_certs(bytes(name), &path(name)).expect("fixture certificates parse")
}

/// The private key of a fixture file.
pub fn key(name: &str) -> PrivateKeyDer<'static> {
    crate::pem::parse_private_key(bytes(name), &path(name)).expect("fixture key parses")
}

/// A master identity by stem: `identity("master")` is `master.pem` with `master.key`.
pub fn identity(stem: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    (certs(&format!("{stem}.pem")), key(&format!("{stem}.key")))
}

/// The path a fixture has in the repository, for messages.
pub fn path(name: &str) -> std::path::PathBuf {
    Path::new("fixtures/pki").join(name)
}
