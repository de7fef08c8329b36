//! The trust settings: key pins, blank values, TLS options, client identity.

use super::{pki, resolve};
use crate::config::file::NULL_FOUND;
use crate::config::names::*;
use crate::config::{Config, ConfigArgs};
use crate::x509::KeyPin;

#[test]
fn key_pins_come_from_the_file_the_environment_or_a_flag() {
    let (a, b) = (KeyPin([0xAA; 32]), KeyPin([0xBB; 32]));
    let b64 = data_encoding::BASE64.encode(&b.0);
    let yaml = format!(
        "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n    master_key_pins:\n      - {a}\n      - sha256:{b64}\n"
    );
    let pins = |c: Config| c.tls.unwrap().master_key_pins;
    assert_eq!(pins(resolve(&yaml, ConfigArgs::default(), &[]).unwrap()), [a, b]);
    let env = format!("{b}, {a}");
    assert_eq!(
        pins(resolve(&yaml, ConfigArgs::default(), &[("DET_SECURITY_TLS_MASTER_KEY_PINS", &env)]).unwrap()),
        [b, a]
    );
    let flag = ConfigArgs { security_tls_master_key_pins: Some(a.to_string()), ..ConfigArgs::default() };
    assert_eq!(pins(resolve(&yaml, flag, &[("DET_SECURITY_TLS_MASTER_KEY_PINS", &env)]).unwrap()), [a]);
    assert_eq!(resolve(&yaml, ConfigArgs::default(), &[]).unwrap().mode_name(), "key-pin");
}

#[test]
fn a_bad_key_pin_is_named_by_its_position() {
    let yaml = format!(
        "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    master_key_pins: [{}, \"sha256:{}\"]\n",
        KeyPin([1; 32]),
        crate::x509::Fingerprint([2; 32])
    );
    let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("security.tls.master_key_pins") && msg.contains("entry 2 of 2"), "{msg}");
    assert!(msg.contains("certificate fingerprint") && msg.contains("det-agent check"), "{msg}");
    let env = [("DET_SECURITY_TLS_MASTER_KEY_PINS", "sha256:nothex")];
    let msg = resolve("master_host: m\nsecurity:\n  tls:\n    enabled: true\n", ConfigArgs::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("$DET_SECURITY_TLS_MASTER_KEY_PINS") && msg.contains("entry 1 of 1"), "{msg}");
    // Pins without TLS would silently do nothing.
    let yaml = format!("master_host: m\nsecurity:\n  tls:\n    master_key_pins: [{}]\n", KeyPin([1; 32]));
    let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("security.tls.master_key_pins"), "{msg}");
}

/// skip_verify with a pin: key-pin mode, where the pin is what authenticates the master.
fn key_pin_yaml(pins: &str) -> String {
    format!("master_host: m\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n    master_key_pins:{pins}\n")
}

#[test]
fn a_pin_list_without_a_pin_never_drops_key_pins() {
    let pin = KeyPin([0xAA; 32]).to_string();
    let yaml = key_pin_yaml(&format!(" [{pin}]"));
    assert_eq!(resolve(&yaml, ConfigArgs::default(), &[]).unwrap().mode_name(), "key-pin");
    let env = |v: &'static str| [("DET_SECURITY_TLS_MASTER_KEY_PINS", v)];
    let flag = |v: &str| ConfigArgs { security_tls_master_key_pins: Some(v.to_owned()), ..ConfigArgs::default() };
    let expected = "one or more key pins (sha256:..., as the key pin lines of `det-agent check`)";
    for (args, env, found, unset) in [
        (
            // Empty is not unset for a security option: PINS=${MISSING} must not drop the pins.
            ConfigArgs::default(),
            env(""),
            "set by $DET_SECURITY_TLS_MASTER_KEY_PINS) is empty",
            "unset $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset",
        ),
        (
            ConfigArgs::default(),
            env(" "),
            "set by $DET_SECURITY_TLS_MASTER_KEY_PINS) is blank (\" \")",
            "unset $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset",
        ),
        (
            ConfigArgs::default(),
            env(","),
            "set by $DET_SECURITY_TLS_MASTER_KEY_PINS) holds no pin (\",\")",
            "unset $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset",
        ),
        (
            ConfigArgs::default(),
            env(" , ,"),
            "set by $DET_SECURITY_TLS_MASTER_KEY_PINS) holds no pin (\" , ,\")",
            "unset $DET_SECURITY_TLS_MASTER_KEY_PINS to leave it unset",
        ),
        (
            flag(""),
            env(""),
            "set by --security-tls-master-key-pins) is empty",
            "drop --security-tls-master-key-pins to leave it unset",
        ),
        (
            flag(","),
            env(""),
            "set by --security-tls-master-key-pins) holds no pin (\",\")",
            "drop --security-tls-master-key-pins to leave it unset",
        ),
    ] {
        let msg = resolve(&yaml, args, &env).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("security.tls.master_key_pins ({found}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {expected}, or {unset}")
        );
    }
    let in_file = "set in /etc/determined/agent.yaml";
    let delete = "delete the master_key_pins key from /etc/determined/agent.yaml to leave it unset";
    for (pins, found) in [
        (" []", "holds no pin (an empty list)"),
        (" [\"\"]", "holds no pin (its one entry is empty)"),
        (" [\" \", \"\"]", "holds no pin (all 2 entries are empty)"),
        ("", NULL_FOUND),
        (" ~", NULL_FOUND),
    ] {
        let msg = resolve(&key_pin_yaml(pins), ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("security.tls.master_key_pins ({in_file}) {found}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {expected}, or {delete}"),
            "{pins:?}"
        );
    }
}

#[test]
fn an_empty_pin_entry_is_named_by_its_position_not_skipped() {
    let (a, b) = (KeyPin([0xAA; 32]), KeyPin([0xBB; 32]));
    let commas = "two commas in a row, or one at an end; remove the extra comma, or put the missing pin there";
    for (text, position) in [(format!("{a},,{b}"), "2 of 3"), (format!("{a},"), "2 of 2"), (format!(",{a}"), "1 of 2")]
    {
        let env = [("DET_SECURITY_TLS_MASTER_KEY_PINS", text.as_str())];
        let msg = resolve(&key_pin_yaml(&format!(" [{a}]")), ConfigArgs::default(), &env).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!("security.tls.master_key_pins (set by $DET_SECURITY_TLS_MASTER_KEY_PINS): {text:?} is not valid: entry {position} is empty ({commas})")
        );
    }
    let msg = resolve(&key_pin_yaml(&format!(" [{a}, \"\"]")), ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert_eq!(
        msg,
        "security.tls.master_key_pins (set in /etc/determined/agent.yaml): \"\" is not valid: entry 2 of 2 is empty (remove it from the list, or put the missing pin there)"
    );
}

#[test]
fn a_security_key_without_a_value_is_an_error_not_unset() {
    // As a template writes `key: ${VAR}` when VAR is unset or empty.
    let base = "master_host: m\nsecurity:\n  tls:\n";
    for (key, rest, expected) in [
        ("enabled", "", "true or false"),
        ("skip_verify", "    enabled: true\n", "true or false"),
        ("master_cert", "    enabled: true\n", "the path of a PEM file holding the master's certificate or its chain"),
        ("master_cert_name", "    enabled: true\n", "a DNS name the master's certificate carries"),
        ("client_cert", "    enabled: true\n", "the path of the client certificate's PEM file"),
        ("client_key", "    enabled: true\n", "the path of the client certificate's private key"),
    ] {
        for null in ["", " ~", " null"] {
            let yaml = format!("{base}{rest}    {key}:{null}\n");
            let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
            assert_eq!(
                msg,
                format!("security.tls.{key} (set in /etc/determined/agent.yaml) {NULL_FOUND}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {expected}, or delete the {key} key from /etc/determined/agent.yaml to leave it unset"),
                "{yaml}"
            );
        }
    }
}

#[test]
fn a_blank_path_or_name_in_the_file_is_an_error() {
    let base = "master_host: m\nsecurity:\n  tls:\n    enabled: true\n";
    for key in ["master_cert", "master_cert_name", "client_cert", "client_key"] {
        for (value, found) in [("\"\"", "is empty"), ("\"  \"", "is blank (\"  \")")] {
            let yaml = format!("{base}    {key}: {value}\n");
            let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
            assert!(
                msg.starts_with(&format!("security.tls.{key} (set in /etc/determined/agent.yaml) {found}; ")),
                "{msg}"
            );
        }
    }
    // Not "the file's own folder".
    let msg = resolve("master_host: m\nfluent:\n  config_dir: \"\"\n", ConfigArgs::default(), &[]).unwrap_err();
    assert!(msg.to_string().starts_with("fluent.config_dir (set in /etc/determined/agent.yaml) is empty; "), "{msg}");
    // A string where a boolean belongs is the parser's error, with its line.
    let msg = resolve(&format!("{base}    skip_verify: \"\"\n"), ConfigArgs::default(), &[]).unwrap_err();
    assert_eq!(
        msg.to_string(),
        "/etc/determined/agent.yaml: security.tls.skip_verify: invalid type: string \"\", expected a boolean at line 5 column 18"
    );
}

#[test]
fn a_blank_flag_or_whitespace_variable_is_an_error_for_every_option() {
    let yaml = "master_host: m\n";
    type Field = fn(&mut ConfigArgs) -> &mut Option<String>;
    let flags: [(&Opt, Field); 10] = [
        (&TLS_ENABLED, |a| &mut a.security_tls_enabled),
        (&SKIP_VERIFY, |a| &mut a.security_tls_skip_verify),
        (&MASTER_CERT, |a| &mut a.security_tls_master_cert),
        (&CERT_NAME, |a| &mut a.security_tls_master_cert_name),
        (&KEY_PINS, |a| &mut a.security_tls_master_key_pins),
        (&CLIENT_CERT, |a| &mut a.security_tls_client_cert),
        (&CLIENT_KEY, |a| &mut a.security_tls_client_key),
        (&MASTER_HOST, |a| &mut a.master_host),
        (&MASTER_PORT, |a| &mut a.master_port),
        (&FLUENT_DIR, |a| &mut a.fluent_config_dir),
    ];
    for (opt, field) in flags {
        for value in ["", " ", "\t\n"] {
            let mut args = ConfigArgs::default();
            *field(&mut args) = Some(value.to_owned());
            let msg = resolve(yaml, args, &[]).unwrap_err().to_string();
            let found = if value.is_empty() {
                "is empty".to_owned()
            } else {
                format!("is blank ({})", crate::text::quoted(value))
            };
            assert_eq!(
                msg,
                format!("{} (set by {}) {found}; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {}, or drop {} to leave it unset", opt.key, opt.flag, opt.value, opt.flag)
            );
        }
        let msg = resolve(yaml, ConfigArgs::default(), &[(opt.env, "  ")]).unwrap_err().to_string();
        assert!(msg.starts_with(&format!("{} (set by ${}) is blank (\"  \"); ", opt.key, opt.env)), "{msg}");
        // Exactly empty: unset, as shells and systemd unset a variable, except for the
        // security options, where an empty variable is a template gone wrong and reading
        // it as unset could weaken trust.
        let cfg = resolve(yaml, ConfigArgs::default(), &[(opt.env, "")]);
        if opt.key.starts_with("security.") {
            assert_eq!(
                cfg.unwrap_err().to_string(),
                format!("{} (set by ${}) is empty; an option that is set must have a value, and det-agent never reads a blank one as \"not set\". Set it to {}, or unset ${} to leave it unset", opt.key, opt.env, opt.value, opt.env)
            );
        } else {
            assert!(cfg.is_ok(), "{}: {}", opt.env, cfg.unwrap_err());
        }
    }
}

#[test]
fn check_and_run_refuse_a_trust_store_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir().unwrap();
    let store = crate::store::Store::at(home.path().join("determined/certs.json"));
    let url = crate::store::MasterUrl::parse("https://m.example.com:8443").unwrap();
    store.put(&url, &crate::dev_master::fixtures::certs("master.pem")).unwrap();
    let yaml = "master_host: m.example.com\nsecurity:\n  tls:\n    enabled: true\n";
    let env = [("XDG_CONFIG_HOME", home.path().to_str().unwrap())];
    assert_eq!(resolve(yaml, ConfigArgs::default(), &env).unwrap().mode_name(), "pinned");
    std::fs::set_permissions(store.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let msg = resolve(yaml, ConfigArgs::default(), &env).unwrap_err().to_string();
    let p = store.path().display();
    assert!(
        msg.starts_with(&format!("trust store {p} is writable by its group and by every user (mode 0666, owner uid "))
            && msg.contains(&format!("run `chmod go-w {p}`")),
        "{msg}"
    );
}

#[test]
fn pinned_and_skip_verify_conflict() {
    let yaml =
        format!("master_host: m\nsecurity:\n  tls:\n    enabled: true\n    master_cert: {}\n", pki("root-ca.pem"));
    let env = [("DET_SECURITY_TLS_SKIP_VERIFY", "true")];
    let msg = resolve(&yaml, ConfigArgs::default(), &env).unwrap_err().to_string();
    assert!(msg.contains("cannot be used together") && msg.contains("$DET_SECURITY_TLS_SKIP_VERIFY"), "{msg}");
}

#[test]
fn half_client_pair_is_refused_both_ways() {
    let base = "master_host: m\nsecurity:\n  tls:\n    enabled: true\n";
    let cert_only = format!("{base}    client_cert: {}\n", pki("client.pem"));
    let msg = resolve(&cert_only, ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("security.tls.client_cert is set") && msg.contains("client_key is not"), "{msg}");
    let key_only = format!("{base}    client_key: {}\n", pki("client.key"));
    let msg = resolve(&key_only, ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("security.tls.client_key is set"), "{msg}");
}

#[test]
fn tls_options_without_tls_are_refused() {
    let yaml = "master_host: m\nsecurity:\n  tls:\n    master_cert_name: m.example.com\n    skip_verify: true\n";
    let msg = resolve(yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("security.tls.skip_verify, security.tls.master_cert_name are set"), "{msg}");
    // skip_verify: false does nothing and is not an error.
    assert!(resolve("master_host: m\nsecurity:\n  tls:\n    skip_verify: false\n", ConfigArgs::default(), &[]).is_ok());
}

#[test]
fn master_cert_problems_name_the_option_and_file() {
    let base = "master_host: m\nsecurity:\n  tls:\n    enabled: true\n";
    for (file, needle) in
        [("does-not-exist.pem", "no such file"), ("master.key", "holds a private key but no certificate")]
    {
        let msg = resolve(&format!("{base}    master_cert: {}\n", pki(file)), ConfigArgs::default(), &[])
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("security.tls.master_cert (set in /etc/determined/agent.yaml)")
                && msg.contains(file)
                && msg.contains(needle),
            "{msg}"
        );
    }
}

#[test]
fn cert_name_must_be_a_dns_name() {
    let base = "master_host: 10.0.0.5\nsecurity:\n  tls:\n    enabled: true\n    master_cert_name: ";
    for (value, needle) in
        [("10.0.0.6", "is an IP address"), ("\"*.example.com\"", "wildcard"), ("\"bad name\"", "expected a DNS name")]
    {
        let msg = resolve(&format!("{base}{value}\n"), ConfigArgs::default(), &[]).unwrap_err().to_string();
        assert!(msg.contains("security.tls.master_cert_name") && msg.contains(needle), "{msg}");
    }
}

#[test]
fn client_key_must_match_client_cert() {
    let yaml = format!(
        "master_host: m\nsecurity:\n  tls:\n    enabled: true\n    client_cert: {}\n    client_key: {}\n",
        pki("client.pem"),
        pki("unrelated.key")
    );
    let msg = resolve(&yaml, ConfigArgs::default(), &[]).unwrap_err().to_string();
    assert!(msg.contains("does not match") && msg.contains("unrelated.key"), "{msg}");
    let good = yaml.replace("unrelated.key", "client.key");
    assert!(resolve(&good, ConfigArgs::default(), &[]).unwrap().tls.unwrap().client_identity.is_some());
}
