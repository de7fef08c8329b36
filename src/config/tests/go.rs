//! The options of Determined's Go agent: a complete Go agent.yaml loads, each key with the
//! Go agent's meaning where det-agent has one, and the others named once as ignored.

use std::path::{Path, PathBuf};

use super::{resolve, resolve_files};
use crate::config::{Config, ConfigArgs, Hooks, IgnoredKey, LogConfig, LogLevel, TaskProxy, Trust, DEFAULT_STATE_FILE};
use crate::devices::{DetectOptions, SlotType, DEFAULT_TOOL_TIMEOUT};
use crate::error::Origin;

fn go_agent_yaml() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/go-agent.yaml")
}

fn lookup(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |key| vars.iter().find(|(k, _)| *k == key).map(|(_, v)| (*v).to_owned())
}

#[test]
fn a_complete_go_agent_yaml_loads_with_the_go_agents_meaning() {
    let path = go_agent_yaml();
    let args = ConfigArgs { config: vec![path.clone()], ..ConfigArgs::default() };
    let cfg = args.load(&lookup(&[("CUDA_VISIBLE_DEVICES", "3")])).unwrap();
    assert_eq!(cfg.master_host.to_string(), "master.det.test");
    assert_eq!((cfg.master_port, cfg.agent_id.as_str(), cfg.resource_pool.as_str()), (8443, "gpu-node-17", "gpu-pool"));
    assert_eq!(cfg.container_master_host.as_ref().map(ToString::to_string).as_deref(), Some("172.17.0.1"));
    assert_eq!(cfg.agent_reconnect_attempts, 5);
    let tls = cfg.tls.as_ref().unwrap();
    assert!(matches!(tls.trust, Trust::Pinned(_)) && tls.client_identity.is_some());
    assert_eq!(cfg.log, LogConfig { level: LogLevel::Warn, color: false, debug: false });
    assert_eq!(
        cfg.devices,
        DetectOptions {
            slot_type: SlotType::Cuda,
            // The file's value, not $CUDA_VISIBLE_DEVICES.
            visible_gpus: "0,2".into(),
            artificial_slots: 0,
            agent_id: "gpu-node-17".into(),
            tool_timeout: DEFAULT_TOOL_TIMEOUT,
        }
    );
    assert_eq!(
        cfg.task_proxy.vars(),
        [
            ("HTTP_PROXY", "http://proxy.example.com:3128".to_owned()),
            ("HTTPS_PROXY", "http://proxy.example.com:3128".to_owned()),
            ("FTP_PROXY", "ftp://proxy.example.com:2121".to_owned()),
            ("NO_PROXY", "localhost,127.0.0.1,.cluster.local".to_owned()),
        ]
    );
    assert_eq!(cfg.hooks.on_connection_lost, ["sudo", "shutdown", "now"]);
    assert_eq!(cfg.fluent.port, 24224);
    assert_eq!(cfg.state_file, PathBuf::from(DEFAULT_STATE_FILE));
    // Every key det-agent has no use for, once each, in one warning.
    let ignored: Vec<&str> = cfg.ignored.iter().map(|i| i.key).collect();
    assert_eq!(
        ignored,
        [
            "config_file",
            "api_enabled",
            "bind_ip",
            "bind_port",
            "tls",
            "tls_cert",
            "tls_key",
            "container_runtime",
            "container_auto_remove_disabled",
            "fluent.image",
            "fluent.container_name"
        ]
    );
    assert!(cfg.ignored.iter().all(|i| i.origin == Origin::File(path.clone())));
    let warning = cfg.ignored_warning().unwrap();
    let set = format!("(set in {})", path.display());
    assert_eq!(
        warning,
        format!(
            "options of Determined's agent that det-agent accepts and ignores: \
             config_file {set}: it names the file to read, so inside a file it has no effect (as in Determined's agent); use --config-file or $DET_CONFIG_FILE; \
             api_enabled, bind_ip, bind_port {set}: det-agent serves no agent API (Determined's agent served only /debug/pprof there); metrics.listen serves metrics and a health check; \
             tls, tls_cert, tls_key {set}: the TLS of Determined's agent API server, and det-agent serves no agent API; \
             container_runtime, container_auto_remove_disabled {set}: det-agent starts no containers; \
             fluent.image, fluent.container_name {set}: det-agent writes Fluent Bit's configuration (fluent.config_dir) instead of running Fluent Bit in a container"
        )
    );
}

#[test]
fn defaults_are_the_go_agents_for_devices_and_none_for_the_rest() {
    let cfg = resolve("master_host: m\n", ConfigArgs::default(), &[]).unwrap();
    assert_eq!(cfg.devices.slot_type, SlotType::Auto);
    assert_eq!((cfg.devices.visible_gpus.as_str(), cfg.devices.artificial_slots), ("", 0));
    assert_eq!(cfg.devices.agent_id, cfg.agent_id);
    assert_eq!(cfg.log, LogConfig::default());
    assert_eq!((cfg.log.level, cfg.log.color), (LogLevel::Info, true));
    assert_eq!(cfg.task_proxy, TaskProxy::default());
    assert!(cfg.task_proxy.vars().is_empty());
    assert_eq!(cfg.hooks, Hooks::default());
    assert!(cfg.ignored.is_empty() && cfg.ignored_warning().is_none());
    // Config::new has the same defaults.
    let new = Config::new(cfg.master_host.clone(), None);
    assert_eq!((new.devices, new.log, new.state_file), (cfg.devices, cfg.log, cfg.state_file));
}

#[test]
fn slot_type_takes_exactly_the_go_agents_values() {
    for (value, slot) in
        [("auto", SlotType::Auto), ("gpu", SlotType::Cuda), ("cuda", SlotType::Cuda), ("rocm", SlotType::Rocm)]
    {
        let cfg = resolve(&format!("master_host: m\nslot_type: {value}\n"), ConfigArgs::default(), &[]).unwrap();
        assert_eq!(cfg.devices.slot_type, slot);
    }
    let env = [("DET_SLOT_TYPE", "cpu")];
    assert_eq!(
        resolve("master_host: m\nslot_type: none\n", ConfigArgs::default(), &env).unwrap().devices.slot_type,
        SlotType::Cpu
    );
    let flag = ConfigArgs { slot_type: Some("none".into()), ..ConfigArgs::default() };
    assert_eq!(resolve("master_host: m\n", flag, &env).unwrap().devices.slot_type, SlotType::None);
    let msg = resolve("master_host: m\nslot_type: CUDA\n", ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert_eq!(
        msg,
        "slot_type (set in /etc/determined/agent.yaml): \"CUDA\" is not valid: it is not in {gpu, cuda, rocm, cpu, auto, none} (as Determined's agent checks it, in lower case; gpu is the old name of cuda)"
    );
}

#[test]
fn visible_gpus_defaults_from_rocr_then_cuda_visible_devices_as_the_go_agent_does() {
    let gpus =
        |yaml: &str, env: &[(&str, &str)]| resolve(yaml, ConfigArgs::default(), env).unwrap().devices.visible_gpus;
    let base = "master_host: m\n";
    assert_eq!(gpus(base, &[("CUDA_VISIBLE_DEVICES", "1,3")]), "1,3");
    assert_eq!(gpus(base, &[("CUDA_VISIBLE_DEVICES", "1,3"), ("ROCR_VISIBLE_DEVICES", "0")]), "0");
    // Defined but empty still counts (os.LookupEnv).
    assert_eq!(gpus(base, &[("CUDA_VISIBLE_DEVICES", "1"), ("ROCR_VISIBLE_DEVICES", "")]), "");
    // Set: the file, then DET_VISIBLE_GPUS, win over the default.
    let set = "master_host: m\nvisible_gpus: 0\n";
    assert_eq!(gpus(set, &[("CUDA_VISIBLE_DEVICES", "1")]), "0");
    assert_eq!(gpus(set, &[("DET_VISIBLE_GPUS", "GPU-5c0b,GPU-77aa")]), "GPU-5c0b,GPU-77aa");
    let msg = resolve("master_host: m\nvisible_gpus: 0,--resetclocks\n", ConfigArgs::default(), &[]).unwrap_err();
    assert!(msg.to_string().contains("an entry starting with '-' would be read by rocm-smi as an option"), "{msg}");
}

#[test]
fn artificial_slots_are_a_bounded_count() {
    let slots = |text: &str| {
        let args = ConfigArgs { artificial_slots: Some(text.into()), ..ConfigArgs::default() };
        resolve("master_host: m\n", args, &[]).map(|c| c.devices.artificial_slots)
    };
    assert_eq!(slots("4").unwrap(), 4);
    assert_eq!(slots("4096").unwrap(), 4096);
    for bad in ["-1", "4097", "two"] {
        let msg = slots(bad).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("artificial_slots (set by --artificial-slots): \"{bad}\" is not valid: expected a whole number of slots from 0 to 4096")
        );
    }
    let msg = resolve("master_host: m\nartificial_slots: -2\n", ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.starts_with("artificial_slots (set in /etc/determined/agent.yaml): \"-2\" is not valid"), "{msg}");
}

#[test]
fn booleans_in_the_file_read_as_the_go_agent_reads_them() {
    for (value, want) in
        [("yes", true), ("\"t\"", true), ("1", true), ("True", true), ("off", false), ("\"F\"", false), ("0", false)]
    {
        let yaml = format!(
            "master_host: m\nsecurity:\n  tls:\n    enabled: {value}\nlog:\n  color: {value}\ndebug: {value}\n"
        );
        let cfg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap();
        assert_eq!((cfg.tls.is_some(), cfg.log.color, cfg.log.debug), (want, want, want), "{value}");
    }
    let msg = resolve("master_host: m\ndebug: maybe\n", ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert_eq!(
        msg,
        "/etc/determined/agent.yaml: debug: invalid type: string \"maybe\", expected a boolean at line 2 column 8"
    );
    let msg = resolve("master_host: m\ndebug: 2\n", ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("invalid value: integer `2`, expected a boolean (0 or 1 as a number)"), "{msg}");
    // And from flags and variables, ParseBool's spellings.
    let cfg = resolve("master_host: m\n", ConfigArgs::default(), &[("DET_SECURITY_TLS_ENABLED", "T")]).unwrap();
    assert!(cfg.tls.is_some());
}

#[test]
fn log_level_takes_logrus_names_and_debug_raises_the_default() {
    let log = |yaml: &str, args: ConfigArgs, env: &[(&str, &str)]| {
        resolve(&format!("master_host: m\n{yaml}"), args, env).unwrap().log
    };
    for (name, level) in [
        ("panic", LogLevel::Error),
        ("FATAL", LogLevel::Error),
        ("warning", LogLevel::Warn),
        ("Info", LogLevel::Info),
        ("trace", LogLevel::Trace),
    ] {
        assert_eq!(log(&format!("log:\n  level: {name}\n"), ConfigArgs::default(), &[]).level, level);
    }
    assert_eq!(log("debug: true\n", ConfigArgs::default(), &[]).level, LogLevel::Debug);
    // A level that is set wins over debug, wherever it is set.
    assert_eq!(log("debug: true\nlog:\n  level: warn\n", ConfigArgs::default(), &[]).level, LogLevel::Warn);
    let flag = ConfigArgs { log_level: Some("error".into()), debug: Some("true".into()), ..ConfigArgs::default() };
    assert_eq!(log("log:\n  level: trace\n", flag, &[("DET_LOG_LEVEL", "info")]).level, LogLevel::Error);
    assert_eq!(
        log("log:\n  level: trace\n", ConfigArgs::default(), &[("DET_LOG_LEVEL", "info")]).level,
        LogLevel::Info
    );
    assert_eq!(log("", ConfigArgs::default(), &[("DET_DEBUG", "1")]).level, LogLevel::Debug);
    let msg = resolve("master_host: m\nlog:\n  level: verbose\n", ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert_eq!(
        msg,
        "log.level (set in /etc/determined/agent.yaml): \"verbose\" is not valid: expected one of error, warn, info, debug, trace (or logrus' panic, fatal, warning, as Determined's agent accepts them)"
    );
    // Without a configuration: the flags, then the environment.
    let env = lookup(&[("DET_LOG_LEVEL", "debug"), ("DET_LOG_COLOR", "false")]);
    assert_eq!(
        LogConfig::from_flags(None, None, &env).unwrap(),
        LogConfig { level: LogLevel::Debug, color: false, debug: false }
    );
    assert_eq!(LogConfig::from_flags(Some("trace"), Some("true"), &env).unwrap().level, LogLevel::Trace);
    let msg = LogConfig::from_flags(Some(""), None, &env).unwrap_err().to_string();
    assert!(msg.starts_with("log.level (set by --log-level) is empty; "), "{msg}");
}

#[test]
fn proxies_for_tasks_layer_and_refuse_control_characters() {
    let yaml = "master_host: m\nhttps_proxy: http://file-proxy:3128\nno_proxy: .local\n";
    let env = [("DET_HTTPS_PROXY", "http://env-proxy:3128"), ("DET_FTP_PROXY", "ftp://f:21")];
    let cfg = resolve(yaml, ConfigArgs::default(), &env).unwrap();
    assert_eq!(
        cfg.task_proxy.vars(),
        [
            ("HTTPS_PROXY", "http://env-proxy:3128".to_owned()),
            ("FTP_PROXY", "ftp://f:21".to_owned()),
            ("NO_PROXY", ".local".to_owned())
        ]
    );
    let msg = resolve("master_host: m\nhttp_proxy: \"http://p\\nX=1\"\n", ConfigArgs::default(), &[]).unwrap_err();
    assert!(msg.to_string().starts_with(
        "http_proxy (set in /etc/determined/agent.yaml): \"http://p\\x0aX=1\" is not valid: expected a proxy URL"
    ));
    let msg = resolve("master_host: m\nno_proxy: \"\"\n", ConfigArgs::default(), &[]).unwrap_err();
    assert!(msg.to_string().starts_with("no_proxy (set in /etc/determined/agent.yaml) is empty; "), "{msg}");
}

#[test]
fn the_connection_lost_hook_is_a_command_list() {
    let hook = |yaml: &str| resolve(&format!("master_host: m\n{yaml}"), ConfigArgs::default(), &[]);
    let cfg =
        hook("hooks:\n  on_connection_lost:\n    - /usr/local/bin/page-oncall\n    - --node\n    - 17\n").unwrap();
    assert_eq!(cfg.hooks.on_connection_lost, ["/usr/local/bin/page-oncall", "--node", "17"]);
    assert!(hook("hooks:\n  on_connection_lost: []\n").unwrap().hooks.on_connection_lost.is_empty());
    assert!(hook("hooks:\n").unwrap().hooks.on_connection_lost.is_empty());
    let msg = hook("hooks:\n  on_connection_lost: [\" \", now]\n").unwrap_err().to_string();
    assert!(msg.starts_with("hooks.on_connection_lost (set in /etc/determined/agent.yaml): \"  now\" is not valid: the first entry is the program to run and is blank"), "{msg}");
    // A string is not a command list (nor is it in Determined's agent).
    let msg = hook("hooks:\n  on_connection_lost: sudo shutdown now\n").unwrap_err().to_string();
    assert!(msg.contains("hooks.on_connection_lost: invalid type: string") && msg.contains("line 3"), "{msg}");
}

#[test]
fn ignored_options_are_named_once_where_they_were_set() {
    let yaml = "master_host: m\napi_enabled: true\ncontainer_runtime: docker\ntls:\n  odd: shape\n";
    let args = ConfigArgs { container_runtime: Some("podman".into()), ..ConfigArgs::default() };
    let env = [("DET_BIND_PORT", "9091"), ("DET_API_ENABLED", "1"), ("DET_TLS_KEY", "")];
    let cfg = resolve(yaml, args, &env).unwrap();
    assert_eq!(
        cfg.ignored.iter().map(|i| (i.key, i.origin.to_string())).collect::<Vec<_>>(),
        [
            ("api_enabled", "set by $DET_API_ENABLED".to_owned()),
            ("bind_port", "set by $DET_BIND_PORT".to_owned()),
            ("tls", "set in /etc/determined/agent.yaml".to_owned()),
            ("container_runtime", "set by --container-runtime".to_owned()),
        ]
    );
    assert_eq!(
        cfg.ignored[3],
        IgnoredKey {
            key: "container_runtime",
            origin: Origin::Flag("--container-runtime"),
            reason: "det-agent starts no containers"
        }
    );
    assert_eq!(
        cfg.ignored_warning().unwrap(),
        "options of Determined's agent that det-agent accepts and ignores: api_enabled (set by $DET_API_ENABLED), \
         bind_port (set by $DET_BIND_PORT): det-agent serves no agent API (Determined's agent served only /debug/pprof \
         there); metrics.listen serves metrics and a health check; tls (set in /etc/determined/agent.yaml): the TLS of \
         Determined's agent API server, and det-agent serves no agent API; container_runtime (set by \
         --container-runtime): det-agent starts no containers"
    );
    // config_file is ignored only inside a file: as a flag or variable it names the file.
    let cfg =
        resolve_files(&[("/a.yaml", "master_host: m\n")], ConfigArgs::default(), &[("DET_CONFIG_FILE", "/a.yaml")]);
    assert!(cfg.unwrap().ignored.is_empty());
}

#[test]
fn the_state_file_follows_its_file_and_has_the_state_directory_default() {
    let state = |yaml: &str, env: &[(&str, &str)]| resolve(yaml, ConfigArgs::default(), env).unwrap().state_file;
    assert_eq!(state("master_host: m\n", &[]), PathBuf::from("/var/lib/det-agent/master.json"));
    assert_eq!(
        state("master_host: m\nstate_file: run/master.json\n", &[]),
        PathBuf::from("/etc/determined/run/master.json")
    );
    assert_eq!(state("master_host: m\n", &[("DET_STATE_FILE", "/tmp/m.json")]), PathBuf::from("/tmp/m.json"));
}
