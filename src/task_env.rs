//! The environment a task launched on this node needs to reach the master with no
//! further configuration, with the names Determined's tasks and CLI read.

use std::path::{Path, PathBuf};

use crate::config::{Config, Trust};

/// `(name, value)` pairs, in a fixed order.
pub type TaskEnv = Vec<(&'static str, String)>;

/// The task environment for `config`. The master is addressed as tasks see it
/// (`container_master_host`/`container_master_port` when set). `cert_file` is the path
/// of the master's certificate as the task will see it; by default the pinned
/// `master_cert` path.
///
/// # Errors
/// The master's chain is only in the trust store and no `cert_file` was given: a task
/// needs a file.
pub fn task_env(config: &Config, cert_file: Option<&Path>) -> Result<TaskEnv, String> {
    let host = config.container_master_host.as_ref().unwrap_or(&config.master_host);
    let port = config.container_master_port.unwrap_or(config.master_port);
    let tls = config.tls.as_ref();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let host_text = host.to_string();
    let mut env: TaskEnv = vec![
        ("DET_MASTER", format!("{scheme}://{}", crate::config::authority(host, port))),
        ("DET_MASTER_HOST", host_text.clone()),
        ("DET_MASTER_PORT", port.to_string()),
        ("DET_MASTER_ADDR", host_text),
        ("DET_USE_TLS", tls.is_some().to_string()),
    ];
    let cert_file = match tls.map(|t| &t.trust) {
        None | Some(Trust::PublicRoots) => cert_file.map(Path::to_owned),
        // The CLI and SDK read this value as "do not verify".
        Some(Trust::SkipVerify) => Some(PathBuf::from("noverify")),
        Some(Trust::Pinned(pinned)) => match (cert_file, &pinned.store_entry) {
            (Some(path), _) => Some(path.to_owned()),
            (None, None) => Some(std::path::absolute(&pinned.path).unwrap_or_else(|_| pinned.path.clone())),
            (None, Some(url)) => {
                return Err(format!(
                    "the master's chain was trusted on first use and lives in the trust store ({url} in {}), not in a file a task can read; write it to a file the task can see and pass that path with --cert-file",
                    pinned.path.display()
                ))
            }
        },
    };
    if let Some(path) = cert_file {
        env.push(("DET_MASTER_CERT_FILE", path.display().to_string()));
    }
    if let Some(name) = tls.and_then(|t| t.master_cert_name.as_ref()) {
        env.push(("DET_MASTER_CERT_NAME", name.as_ref().to_owned()));
    }
    Ok(env)
}

/// `export NAME='value'` lines, each value single-quoted so a shell takes it literally.
pub fn to_shell(env: &TaskEnv) -> String {
    env.iter().map(|(name, value)| format!("export {name}={}\n", shell_quote(value))).collect()
}

/// A JSON object of the variables.
pub fn to_json(env: &TaskEnv) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        env.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone()))).collect();
    serde_json::to_string_pretty(&map).unwrap_or_default()
}

/// POSIX single quoting: everything is literal inside '…', and a `'` is written '\''.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Host, PinnedCerts, TlsConfig};
    use crate::dev_master::fixtures;
    use rustls_pki_types::DnsName;

    fn get<'a>(env: &'a TaskEnv, name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn each_mode() {
        let plain = task_env(&Config::new(Host::parse("master.example.com").unwrap(), None), None).unwrap();
        assert_eq!(get(&plain, "DET_MASTER"), Some("http://master.example.com:8080"));
        assert_eq!(get(&plain, "DET_USE_TLS"), Some("false"));
        assert_eq!(get(&plain, "DET_MASTER_CERT_FILE"), None);

        let ca =
            task_env(&Config::new(Host::parse("fd00::5").unwrap(), Some(TlsConfig::new(Trust::PublicRoots))), None)
                .unwrap();
        assert_eq!(get(&ca, "DET_MASTER"), Some("https://[fd00::5]:8443"));
        assert_eq!(get(&ca, "DET_MASTER_HOST"), Some("fd00::5"));
        assert_eq!(get(&ca, "DET_MASTER_ADDR"), Some("fd00::5"));
        assert_eq!(get(&ca, "DET_USE_TLS"), Some("true"));

        let skip = Config::new(Host::parse("10.0.0.5").unwrap(), Some(TlsConfig::new(Trust::SkipVerify)));
        assert_eq!(get(&task_env(&skip, None).unwrap(), "DET_MASTER_CERT_FILE"), Some("noverify"));

        let pinned = PinnedCerts {
            path: "/etc/determined/master.crt".into(),
            certs: fixtures::certs("root-ca.pem"),
            store_entry: None,
        };
        let mut tls = TlsConfig::new(Trust::Pinned(pinned.clone()));
        tls.master_cert_name = Some(DnsName::try_from("master.example.com").unwrap().to_owned());
        let mut config = Config::new(Host::parse("10.0.0.5").unwrap(), Some(tls));
        config.container_master_host = Some(Host::parse("172.17.0.1").unwrap());
        config.container_master_port = Some(443);
        let env = task_env(&config, None).unwrap();
        assert_eq!(get(&env, "DET_MASTER"), Some("https://172.17.0.1:443"));
        assert_eq!(get(&env, "DET_MASTER_CERT_FILE"), Some("/etc/determined/master.crt"));
        assert_eq!(get(&env, "DET_MASTER_CERT_NAME"), Some("master.example.com"));
        let env = task_env(&config, Some(Path::new("/run/det/master.crt"))).unwrap();
        assert_eq!(get(&env, "DET_MASTER_CERT_FILE"), Some("/run/det/master.crt"));

        let stored = PinnedCerts { store_entry: Some("https://10.0.0.5:8443".into()), ..pinned };
        let config = Config::new(Host::parse("10.0.0.5").unwrap(), Some(TlsConfig::new(Trust::Pinned(stored))));
        assert!(task_env(&config, None).unwrap_err().contains("pass that path with --cert-file"));
    }

    #[test]
    fn shell_output_is_literal() {
        let env: TaskEnv = vec![("DET_MASTER_CERT_FILE", "/a b/it's $(x)`y`\n".to_owned())];
        assert_eq!(to_shell(&env), "export DET_MASTER_CERT_FILE='/a b/it'\\''s $(x)`y`\n'\n");
    }
}
