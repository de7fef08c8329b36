//! The configuration's unit tests, by topic: layering and defaults here, the trust
//! settings in `tls.rs`, reading the file in `file.rs`, Determined's Go agent options in
//! `go.rs`.

mod file;
mod go;
mod tls;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::defaults::default_agent_id;
use super::read::merge;
use super::resolve::Resolver;
use super::*;
use crate::error::ConfigError;

pub(super) fn pki(name: &str) -> String {
    format!("{}/fixtures/pki/{name}", env!("CARGO_MANIFEST_DIR"))
}

pub(super) fn resolve(yaml: &str, args: ConfigArgs, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let lookup = move |k: &str| env.get(k).cloned();
    let (file, sources) = merge(&[(Path::new("/etc/determined/agent.yaml"), yaml)])?;
    Resolver { args: &args, env: &lookup, sources: &sources }.resolve(file)
}

#[test]
fn defaults_follow_the_master() {
    let plain = resolve("master_host: m.example.com\n", ConfigArgs::default(), &[]).unwrap();
    assert_eq!(plain.master_port, 8080);
    assert!(plain.tls.is_none());
    assert_eq!(plain.resource_pool, "default");
    assert_eq!(plain.agent_id, default_agent_id());
    assert_eq!(plain.agent_reconnect_attempts, 0);
    assert_eq!(plain.agent_reconnect_backoff, Duration::from_secs(5));
    let tls = resolve("master_host: m.example.com\nsecurity:\n  tls:\n    enabled: true\n", ConfigArgs::default(), &[])
        .unwrap();
    assert_eq!(tls.master_port, 8443);
    assert!(matches!(tls.tls.unwrap().trust, Trust::PublicRoots));
}

#[test]
fn flag_beats_env_beats_file() {
    let yaml = "master_host: file.example.com\nmaster_port: 1111\nagent_id: from-file\n";
    let env = [("DET_MASTER_HOST", "env.example.com"), ("DET_MASTER_PORT", "2222")];
    let args = ConfigArgs { master_host: Some("flag.example.com".into()), ..Default::default() };
    let cfg = resolve(yaml, args, &env).unwrap();
    assert_eq!(cfg.master_host.to_string(), "flag.example.com");
    assert_eq!(cfg.master_port, 2222);
    assert_eq!(cfg.agent_id, "from-file");
}

#[test]
fn file_values_are_checked_like_flags() {
    for (yaml, needle) in [
        ("master_host: m\nmaster_port: 0\n", "master_port (set in /etc/determined/agent.yaml): \"0\" is not valid"),
        ("master_host: m\nagent_id: \"\"\n", "agent_id (set in /etc/determined/agent.yaml)"),
        ("master_host: m\nresource_pool: \" gpu\"\n", "resource_pool"),
        ("master_host: https://m.example.com\n", "not a URL"),
        ("master_host: m\ncontainer_master_port: 0\n", "container_master_port"),
    ] {
        let msg = resolve(yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains(needle), "{yaml:?}: {msg}");
    }
}

#[test]
fn fluent_section_layers_and_is_checked() {
    let yaml = "master_host: m\nfluent:\n  config_dir: fluent-bit\n  format: yaml\n  port: 24225\n  image: fluent/fluent-bit:1.9\n";
    let cfg = resolve(yaml, ConfigArgs::default(), &[("DET_FLUENT_LISTEN", "0.0.0.0")]).unwrap();
    assert_eq!(cfg.fluent.config_dir, Some(PathBuf::from("/etc/determined/fluent-bit")));
    assert_eq!(cfg.fluent.format, FluentFormat::Yaml);
    assert_eq!(cfg.fluent.port, 24225);
    assert_eq!(cfg.fluent.listen, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(cfg.fluent.flush_secs, 1);
    let defaults = resolve("master_host: m\n", ConfigArgs::default(), &[]).unwrap();
    assert_eq!(defaults.fluent, FluentConfig::default());
    for (fluent, needle) in [
        (
            "format: json",
            "fluent.format (set in /etc/determined/agent.yaml): \"json\" is not valid: expected classic or yaml",
        ),
        ("listen: localhost", "expected an IP address"),
        ("flush: 0", "from 1 to 3600"),
        ("port: 0", "fluent.port"),
        ("tag: x", "unknown field `tag`"),
    ] {
        let yaml = format!("master_host: m\nfluent:\n  {fluent}\n");
        let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains(needle), "{fluent}: {msg}");
    }
}

#[test]
fn empty_env_counts_as_unset() {
    let cfg = resolve("master_host: file.example.com\n", ConfigArgs::default(), &[("DET_MASTER_HOST", "")]).unwrap();
    assert_eq!(cfg.master_host.to_string(), "file.example.com");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let err = resolve(
        "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    verify_name: x\n",
        ConfigArgs::default(),
        &[],
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("verify_name") && msg.contains("line 5"), "{msg}");
}

#[test]
fn missing_host_says_every_way_to_set_it() {
    let msg = resolve("", ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("--master-host") && msg.contains("DET_MASTER_HOST"), "{msg}");
}

#[test]
fn bad_env_value_names_the_variable() {
    let msg =
        resolve("master_host: m\n", ConfigArgs::default(), &[("DET_MASTER_PORT", "http")]).unwrap_err().to_string();
    assert!(msg.contains("master_port") && msg.contains("$DET_MASTER_PORT") && msg.contains("\"http\""), "{msg}");
}

/// Resolves several files, as `--config A --config B` reads them.
pub(super) fn resolve_files(
    files: &[(&str, &str)],
    args: ConfigArgs,
    env: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let lookup = move |k: &str| env.get(k).cloned();
    let texts: Vec<(&Path, &str)> = files.iter().map(|(path, text)| (Path::new(*path), *text)).collect();
    let (file, sources) = merge(&texts)?;
    Resolver { args: &args, env: &lookup, sources: &sources }.resolve(file)
}

#[test]
fn relative_paths_in_the_file_follow_the_file() {
    let dir = |cfg: Config| cfg.fluent.config_dir.unwrap();
    let base = "master_host: m\nfluent:\n  config_dir: fluent-bit\n";
    assert_eq!(dir(resolve(base, ConfigArgs::default(), &[]).unwrap()), PathBuf::from("/etc/determined/fluent-bit"));
    let abs = "master_host: m\nfluent:\n  config_dir: /abs/fluent-bit\n";
    assert_eq!(dir(resolve(abs, ConfigArgs::default(), &[]).unwrap()), PathBuf::from("/abs/fluent-bit"));
    // Each path follows the file it is written in.
    let second = ("/etc/det-agent/agent.yaml", "fluent:\n  config_dir: fb\n");
    let cfg = resolve_files(&[("/etc/determined/agent.yaml", base), second], ConfigArgs::default(), &[]).unwrap();
    assert_eq!(dir(cfg), PathBuf::from("/etc/det-agent/fb"));
    // From a flag or the environment: the working directory's.
    let cfg = resolve(base, ConfigArgs::default(), &[("DET_FLUENT_CONFIG_DIR", "fb")]).unwrap();
    assert_eq!(dir(cfg), PathBuf::from("fb"));
}

#[test]
fn later_files_win_key_by_key_and_errors_name_the_file_that_set_the_key() {
    let go = (
        "/etc/determined/agent.yaml",
        "master_host: m.example.com\nmaster_port: 8443\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n",
    );
    let ours = (
        "/etc/det-agent/extra.yaml",
        "agent_reconnect_backoff_max: 30\nsecurity:\n  tls:\n    master_key_pins: [\"sha256:nothex\"]\n",
    );
    let msg = resolve_files(&[go, ours], ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.starts_with("security.tls.master_key_pins (set in /etc/det-agent/extra.yaml): "), "{msg}");
    let pin = crate::x509::KeyPin([7; 32]);
    let ours =
        ("/etc/det-agent/extra.yaml", format!("master_port: 9443\nsecurity:\n  tls:\n    master_key_pins: [{pin}]\n"));
    let cfg = resolve_files(&[go, (ours.0, &ours.1)], ConfigArgs::default(), &[]).unwrap();
    assert_eq!((cfg.master_host.to_string().as_str(), cfg.master_port), ("m.example.com", 9443));
    assert_eq!(cfg.agent_reconnect_backoff_max, DEFAULT_RECONNECT_BACKOFF_MAX);
    assert_eq!(cfg.mode_name(), "key-pin");
    assert_eq!(cfg.files, [PathBuf::from(go.0), PathBuf::from(ours.0)]);
    let msg = resolve_files(&[(ours.0, &ours.1), go], ConfigArgs::default(), &[("DET_MASTER_PORT", "0")]).unwrap_err();
    assert!(msg.to_string().starts_with("master_port (set by $DET_MASTER_PORT)"), "{msg}");
    let msg = resolve_files(&[go, ("/b.yaml", "master_port: 0\n")], ConfigArgs::default(), &[]).unwrap_err();
    assert!(msg.to_string().starts_with("master_port (set in /b.yaml): \"0\" is not valid"), "{msg}");
    // Values read as in one file: Go's booleans, numbers as text.
    let first = ("/a.yaml", "master_host: m\nvisible_gpus: 0\nsecurity:\n  tls:\n    enabled: yes\n");
    let cfg = resolve_files(&[first, ("/b.yaml", "debug: \"t\"\n")], ConfigArgs::default(), &[]).unwrap();
    assert_eq!((cfg.devices.visible_gpus.as_str(), cfg.tls.is_some(), cfg.log.debug), ("0", true, true));
    // A later key without a value overrides nothing...
    let cfg = resolve_files(&[go, ("/b.yaml", "master_port:\nsecurity:\n")], ConfigArgs::default(), &[]).unwrap();
    assert_eq!((cfg.master_port, cfg.mode_name()), (8443, "skip-verify"));
    // ...and a security.tls key without a value is an error in any file, overridden or not.
    let msg = resolve_files(&[("/a.yaml", "security:\n  tls:\n    master_cert:\n"), go], ConfigArgs::default(), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("security.tls.master_cert (set in /a.yaml) has no value"), "{msg}");
    // An unknown key is named with its own file and line.
    let msg = resolve_files(&[go, ("/b.yaml", "\nmaster_prot: 1\n")], ConfigArgs::default(), &[]).unwrap_err();
    assert!(msg.to_string().starts_with("/b.yaml: unknown field `master_prot`") && msg.to_string().contains("line 2"));
}

#[test]
fn backoff_is_bounded() {
    assert!(resolve("master_host: m\nagent_reconnect_backoff: -1\n", ConfigArgs::default(), &[]).is_err());
    let cfg = resolve("master_host: m\nagent_reconnect_backoff: 2.5\n", ConfigArgs::default(), &[]).unwrap();
    assert_eq!(cfg.agent_reconnect_backoff, Duration::from_millis(2500));
}

#[test]
fn every_option_is_named_as_determineds_agent_names_it_and_has_its_flag() {
    use clap::CommandFactory;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConfigArgs,
    }
    let command = Cli::command();
    for opt in names::ALL {
        let flag = format!("--{}", opt.key.replace(['.', '_'], "-"));
        assert_eq!(opt.flag, flag, "{}", opt.key);
        assert_eq!(opt.env, format!("DET_{}", flag[2..].to_uppercase().replace('-', "_")), "{}", opt.key);
        let arg = command.get_arguments().find(|a| a.get_long() == Some(&flag[2..]));
        let help = arg.and_then(|a| a.get_help()).map(|h| h.to_string()).unwrap_or_default();
        assert!(help.ends_with(&format!("[env: {}]", opt.env)), "{flag}: {help:?}");
    }
}

#[test]
fn metrics_listen_layers_and_is_checked_like_every_option() {
    assert_eq!(resolve("master_host: m\n", ConfigArgs::default(), &[]).unwrap().metrics.listen, None);
    let yaml = "master_host: m\nmetrics:\n  listen: 127.0.0.1:9464\n";
    let listen = |cfg: Config| cfg.metrics.listen.map(|l| l.to_string());
    assert_eq!(listen(resolve(yaml, ConfigArgs::default(), &[]).unwrap()).as_deref(), Some("127.0.0.1:9464"));
    let env = [("DET_METRICS_LISTEN", "[::1]:9100")];
    assert_eq!(listen(resolve(yaml, ConfigArgs::default(), &env).unwrap()).as_deref(), Some("[::1]:9100"));
    let flag = ConfigArgs { metrics_listen: Some("0.0.0.0:9200".into()), ..ConfigArgs::default() };
    assert_eq!(listen(resolve(yaml, flag, &env).unwrap()).as_deref(), Some("0.0.0.0:9200"));
    for (yaml, env, message) in [
        (
            "master_host: m\nmetrics:\n  listen: 9464\n",
            None,
            "metrics.listen (set in /etc/determined/agent.yaml): \"9464\" is not valid: expected an IP address before the port: 127.0.0.1:9464 serves this host only, 0.0.0.0:9464 every interface (the endpoint has no authentication)",
        ),
        (
            "master_host: m\nmetrics:\n  listen: \"\"\n",
            None,
            "metrics.listen (set in /etc/determined/agent.yaml) is empty; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to an IP address and a port such as 127.0.0.1:9464, or delete the listen key from /etc/determined/agent.yaml to leave it unset",
        ),
        (
            "master_host: m\n",
            Some("localhost:9100"),
            "metrics.listen (set by $DET_METRICS_LISTEN): \"localhost:9100\" is not valid: expected an IP address, not a host name (it would be resolved once, at start); write 127.0.0.1:9100 for this host only, or [::1]:9100 for IPv6",
        ),
    ] {
        let env: Vec<(&str, &str)> = env.map(|v| ("DET_METRICS_LISTEN", v)).into_iter().collect();
        assert_eq!(resolve(yaml, ConfigArgs::default(), &env).unwrap_err().to_string(), message);
    }
    let msg = resolve("master_host: m\nmetrics:\n  port: 1\n", ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("unknown field `port`") && msg.contains("line 3"), "{msg}");
}

#[test]
fn config_file_comes_first_then_every_config_and_the_default_only_when_none_is_named() {
    let args = ConfigArgs { config: vec!["b.yaml".into(), "c.yaml".into()], ..ConfigArgs::default() };
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |k: &str| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned())
    };
    let files = |args: &ConfigArgs, e: &dyn Fn(&str) -> Option<String>| args.files(e).unwrap();
    assert_eq!(files(&args, &env(&[])), [PathBuf::from("b.yaml"), "c.yaml".into()]);
    let from_env = env(&[("DET_CONFIG_FILE", "a.yaml")]);
    assert_eq!(files(&args, &from_env), [PathBuf::from("a.yaml"), "b.yaml".into(), "c.yaml".into()]);
    let flag = ConfigArgs { config_file: Some("f.yaml".into()), ..args.clone() };
    assert_eq!(files(&flag, &from_env), [PathBuf::from("f.yaml"), "b.yaml".into(), "c.yaml".into()]);
    // An empty variable is unset; a blank flag is an error.
    assert_eq!(files(&args, &env(&[("DET_CONFIG_FILE", "")])).len(), 2);
    let blank = ConfigArgs { config_file: Some(" ".into()), ..ConfigArgs::default() };
    let msg = blank.files(&env(&[])).unwrap_err().to_string();
    assert!(msg.starts_with("config_file (set by --config-file) is blank (\" \")"), "{msg}");
    let default_only = ConfigArgs::default().files(&env(&[])).unwrap();
    assert_eq!(default_only, Vec::from_iter(Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists())));
}

#[test]
fn agent_yaml_example_loads_and_documents_every_key() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.yaml.example")).unwrap();
    let cfg = resolve(&text, ConfigArgs::default(), &[]).unwrap();
    assert_eq!(cfg.mode_name(), "ca");
    // Determined's options det-agent ignores are named in the header (config_file is
    // --config-file there); the others have their own `key:` line.
    let ignored =
        ["config_file", "api_enabled", "bind_ip", "bind_port", "tls", "tls_cert", "tls_key", "container_runtime"];
    for opt in names::ALL.iter().copied().chain([&names::LOG_LEVEL, &names::LOG_COLOR, &names::HOOK]) {
        let last = opt.key.rsplit('.').next().unwrap();
        let documented = if ignored.contains(&opt.key) {
            opt.key == "config_file" || text.contains(&format!(" {last},")) || text.contains(&format!(" {last};"))
        } else {
            text.contains(&format!("{last}:"))
        };
        assert!(documented, "agent.yaml.example does not document {}", opt.key);
    }
}
