//! The task environment in each trust mode, with the agent's identity, the master's, and
//! the proxy settings.

use std::path::Path;

use rustls_pki_types::DnsName;

use super::*;
use crate::config::{Host, PinnedCerts, TaskProxy, TlsConfig};
use crate::dev_master::fixtures;
use crate::link::MasterInfo;
use crate::text::Untrusted;

fn get<'a>(env: &'a TaskEnv, name: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
}

#[test]
fn each_mode() {
    let plain = task_env(&Config::new(Host::parse("master.example.com").unwrap(), None), None, None).unwrap();
    assert_eq!(get(&plain, "DET_MASTER"), Some("http://master.example.com:8080"));
    assert_eq!(get(&plain, "DET_USE_TLS"), Some("false"));
    assert_eq!(get(&plain, "DET_MASTER_CERT_FILE"), None);

    let ca =
        task_env(&Config::new(Host::parse("fd00::5").unwrap(), Some(TlsConfig::new(Trust::PublicRoots))), None, None)
            .unwrap();
    assert_eq!(get(&ca, "DET_MASTER"), Some("https://[fd00::5]:8443"));
    assert_eq!(get(&ca, "DET_MASTER_HOST"), Some("fd00::5"));
    assert_eq!(get(&ca, "DET_MASTER_ADDR"), Some("fd00::5"));
    assert_eq!(get(&ca, "DET_USE_TLS"), Some("true"));

    let skip = Config::new(Host::parse("10.0.0.5").unwrap(), Some(TlsConfig::new(Trust::SkipVerify)));
    assert_eq!(get(&task_env(&skip, None, None).unwrap(), "DET_MASTER_CERT_FILE"), Some("noverify"));

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
    let env = task_env(&config, None, None).unwrap();
    assert_eq!(get(&env, "DET_MASTER"), Some("https://172.17.0.1:443"));
    assert_eq!(get(&env, "DET_MASTER_CERT_FILE"), Some("/etc/determined/master.crt"));
    assert_eq!(get(&env, "DET_MASTER_CERT_NAME"), Some("master.example.com"));
    let env = task_env(&config, Some(Path::new("/run/det/master.crt")), None).unwrap();
    assert_eq!(get(&env, "DET_MASTER_CERT_FILE"), Some("/run/det/master.crt"));

    let stored = PinnedCerts { store_entry: Some("https://10.0.0.5:8443".into()), ..pinned };
    let config = Config::new(Host::parse("10.0.0.5").unwrap(), Some(TlsConfig::new(Trust::Pinned(stored))));
    let err = task_env(&config, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the master's chain was trusted on first use and lives in the trust store (https://10.0.0.5:8443 in /etc/determined/master.crt), not in a file a task can read; write it to a file the task can see and pass that path with --cert-file"
    );
}

fn record(cluster_id: &str, master: &str) -> MasterRecord {
    MasterRecord {
        format: crate::state_file::FORMAT,
        cluster_id: cluster_id.into(),
        master_id: "m-7".into(),
        master_version: "0.38.0".into(),
        master: master.into(),
        written_at: "2025-03-01T12:00:00Z".into(),
    }
}

#[test]
fn the_agent_the_master_and_the_proxies_as_determineds_agent_gives_them() {
    let mut config = Config::new(Host::parse("master.example.com").unwrap(), None);
    config.agent_id = "gpu-node-17".into();
    config.task_proxy = TaskProxy {
        http_proxy: Some("http://proxy:3128".into()),
        no_proxy: Some("localhost,.cluster".into()),
        ..TaskProxy::default()
    };
    let master = record("c-1", "http://master.example.com:8080");
    let env = task_env(&config, None, Some(&master)).unwrap();
    let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        names,
        [
            "DET_MASTER",
            "DET_MASTER_HOST",
            "DET_MASTER_PORT",
            "DET_MASTER_ADDR",
            "DET_USE_TLS",
            "DET_AGENT_ID",
            "DET_CLUSTER_ID",
            "DET_MASTER_ID",
            "HTTP_PROXY",
            "NO_PROXY"
        ]
    );
    assert_eq!(get(&env, "DET_AGENT_ID"), Some("gpu-node-17"));
    assert_eq!((get(&env, "DET_CLUSTER_ID"), get(&env, "DET_MASTER_ID")), (Some("c-1"), Some("m-7")));
    assert_eq!(get(&env, "NO_PROXY"), Some("localhost,.cluster"));
    let without = task_env(&config, None, None).unwrap();
    assert_eq!(get(&without, "DET_CLUSTER_ID"), None);
}

#[test]
fn the_state_file_is_used_only_for_the_configured_master() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(Host::parse("master.example.com").unwrap(), Some(TlsConfig::new(Trust::PublicRoots)));
    config.state_file = dir.path().join("master.json");
    let p = config.state_file.display().to_string();
    let lookup = master_record(&config);
    assert!(lookup.record().is_none());
    assert_eq!(
        lookup.why_missing().unwrap(),
        format!("DET_CLUSTER_ID and DET_MASTER_ID are not set: no state file at {p} yet; `det-agent run` writes it when the master accepts the agent (state_file names it)")
    );
    let info = MasterInfo {
        version: Untrusted::new("0.38.0"),
        cluster_id: Untrusted::new("c-1"),
        master_id: Untrusted::new("m-1"),
        cluster_name: Untrusted::new("prod"),
    };
    crate::state_file::write(&config.state_file, &info, &config).unwrap();
    let found = master_record(&config);
    assert_eq!(found.record().map(|r| r.cluster_id.as_str()), Some("c-1"));
    assert!(found.why_missing().is_none());
    // Another port is another master.
    config.master_port = 443;
    assert_eq!(
        master_record(&config).why_missing().unwrap(),
        format!("DET_CLUSTER_ID and DET_MASTER_ID are not set: the state file {p} is about the master at https://master.example.com:8443, not the one configured (https://master.example.com:443); `det-agent run` replaces it when this master accepts the agent")
    );
    std::fs::write(&config.state_file, "{}").unwrap();
    let why = master_record(&config).why_missing().unwrap();
    assert!(
        why.starts_with(&format!(
            "DET_CLUSTER_ID and DET_MASTER_ID are not set: the state file {p} is not det-agent's record"
        )),
        "{why}"
    );
}

#[test]
fn shell_output_is_literal() {
    let env: TaskEnv = vec![("DET_MASTER_CERT_FILE", "/a b/it's $(x)`y`\n".to_owned())];
    assert_eq!(to_shell(&env), "export DET_MASTER_CERT_FILE='/a b/it'\\''s $(x)`y`\n'\n");
}
