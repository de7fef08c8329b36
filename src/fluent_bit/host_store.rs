//! Where det-agent's CA mode reads the host's trust store, so that Fluent Bit can be told
//! the same store.
//!
//! In CA mode det-agent trusts its bundled public roots and the host's store as
//! rustls-native-certs reads it: the file named by `SSL_CERT_FILE` and the folders named
//! by `SSL_CERT_DIR` when either is set, else the system store. Fluent Bit's OpenSSL
//! ignores both variables: on Linux it loads `/etc/ssl/certs/ca-bundle.crt` (when
//! readable) and the hashed folder `/etc/ssl/certs/`, and nothing else unless
//! `tls.ca_file` or `tls.ca_path` say so (fluent-bit `src/tls/openssl.c`,
//! `load_system_certificates`; seen with Fluent Bit 5.1.1, which refuses a master that
//! only `SSL_CERT_FILE` vouches for). So a store chosen by the variables is written into
//! the configuration.

use std::ffi::OsString;
use std::path::PathBuf;

/// The variable naming a CA file.
pub const CERT_FILE_VAR: &str = "SSL_CERT_FILE";
/// The variable naming CA folders, separated by `:`.
pub const CERT_DIR_VAR: &str = "SSL_CERT_DIR";

/// The host trust store det-agent's CA mode uses, as the environment chooses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostStore {
    /// `SSL_CERT_FILE`, as given.
    pub file: Option<PathBuf>,
    /// `SSL_CERT_DIR`, split at `:`, empty entries dropped.
    pub dirs: Vec<PathBuf>,
}

impl HostStore {
    /// The system store: neither variable set.
    pub fn system() -> HostStore {
        HostStore::default()
    }

    /// The store this process's environment chooses, read as rustls-native-certs reads it.
    pub fn from_env() -> HostStore {
        HostStore::from_vars(std::env::var_os(CERT_FILE_VAR), std::env::var_os(CERT_DIR_VAR))
    }

    /// The store chosen by these values of `SSL_CERT_FILE` and `SSL_CERT_DIR`.
    pub fn from_vars(file: Option<OsString>, dirs: Option<OsString>) -> HostStore {
        HostStore {
            file: file.map(PathBuf::from),
            dirs: dirs
                .map(|d| std::env::split_paths(&d).filter(|p| !p.as_os_str().is_empty()).collect())
                .unwrap_or_default(),
        }
    }

    /// Whether it is the system store (neither variable chose one).
    pub fn is_system(&self) -> bool {
        self.file.is_none() && self.dirs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_variables_as_rustls_native_certs_does() {
        assert!(HostStore::from_vars(None, None).is_system());
        let store = HostStore::from_vars(Some("ca.pem".into()), Some("/a::/b:".into()));
        assert_eq!(store.file, Some(PathBuf::from("ca.pem")));
        assert_eq!(store.dirs, [PathBuf::from("/a"), PathBuf::from("/b")]);
        assert!(HostStore::from_vars(None, Some(":".into())).is_system(), "no folder named: the system store");
    }
}
