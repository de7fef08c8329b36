//! Hostile input to every parser an operator's text reaches: `agent.yaml`, PEM files, key
//! pins, master addresses and the trust store. Whatever the input, no panic, no hang, and
//! every refusal is an explained error: it names the file or the option, and it is prose,
//! not Rust Debug output.
//!
//! Each property runs 256 cases by default; `PROPTEST_CASES=100000 cargo test --release
//! hostile_input` runs many more (see [`config`]).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use det_agent::trust::{MasterUrl, Store};
use det_agent::x509::KeyPin;
use det_agent::{pem, ConfigArgs, Host};
use proptest::prelude::*;
use serde_json::Value;

/// The cases a property runs when PROPTEST_CASES is not set.
const CASES: u32 = 256;

/// `ProptestConfig::default()` reads PROPTEST_CASES (and the other PROPTEST_*
/// variables); setting `cases` in code, with `with_cases` or `{ cases, ..default() }`,
/// would override the variable, so it is set only when the variable is absent.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = CASES;
    }
    config
}

/// Every configuration key, to recognise an error that names its option.
const OPTIONS: &[&str] = &[
    "master_host",
    "master_port",
    "agent_id",
    "resource_pool",
    "container_master_host",
    "container_master_port",
    "agent_reconnect_attempts",
    "agent_reconnect_backoff",
    "max_message_size",
    "security.tls.",
    "fluent.",
];

/// `text` without what it quotes (`"…"` as Rust's `{:?}` writes a string, and `` `…` ``
/// as the YAML parser quotes a value), since a message may echo any input there.
fn unquoted(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                while let Some(q) = chars.next() {
                    match q {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"…\"");
            }
            '`' => {
                for q in chars.by_ref() {
                    if q == '`' {
                        break;
                    }
                }
                out.push_str("`…`");
            }
            c => out.push(c),
        }
    }
    out
}

/// Rust Debug output of a struct, tuple struct or enum (`Name { `, `Name(`, `Some(`) in
/// `message`, unless `input` holds the same text: then it is the input, echoed.
fn debug_syntax(message: &str, input: &str) -> Option<String> {
    let text = unquoted(message);
    let words: Vec<&str> = text.split(|c: char| !(c.is_alphanumeric() || c == '_')).collect();
    let mut offset = 0;
    for word in words {
        let rest = &text[offset + word.len()..];
        offset += word.len() + rest.chars().next().map_or(0, char::len_utf8);
        let starts_upper = word.chars().next().is_some_and(|c| c.is_ascii_uppercase());
        let opener = [" { ", "("].into_iter().find(|o| rest.starts_with(o));
        if let (true, Some(opener)) = (starts_upper, opener) {
            let found = format!("{word}{opener}");
            if !input.contains(&found) {
                return Some(found);
            }
        }
    }
    if text.contains("struct ") && !input.contains("struct ") {
        return Some("struct ".to_owned());
    }
    None
}

/// A refusal a person can act on: not empty, naming one of `names`, in prose. `input`
/// is what was parsed, which a message may quote.
fn explained(message: &str, names: &[&str], input: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(!message.trim().is_empty(), "an empty error");
    prop_assert!(names.iter().any(|n| message.contains(n)), "names none of {names:?}: {message}");
    if let Some(found) = debug_syntax(message, &String::from_utf8_lossy(input)) {
        prop_assert!(false, "Rust Debug output ({found}) in: {message}");
    }
    Ok(())
}

#[test]
fn the_debug_detector_finds_debug_output() {
    assert_eq!(debug_syntax("cannot read: Os { code: 2 }", "").as_deref(), Some("Os { "));
    assert_eq!(debug_syntax("got Some(5)", "").as_deref(), Some("Some("));
    assert_eq!(debug_syntax("expected struct FileConfig", "").as_deref(), Some("struct "));
    assert_eq!(debug_syntax("value \"Foo { x\" is not valid (see `Bar(`)", ""), None);
    assert_eq!(debug_syntax("the security settings (tls:); Set it to {x}", ""), None);
    assert_eq!(debug_syntax("unknown field ``A(`, expected one of", "`A(: 1"), None);
}

/// `master_host: [[[…]]]` 100,000 deep took 22 s to refuse; now it is refused before
/// the YAML parser sees it, at the 65th bracket.
#[test]
fn agent_yaml_nested_100000_deep_is_refused_at_the_depth_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    let levels = 100_000;
    std::fs::write(&path, format!("master_host: {}{}\n", "[".repeat(levels), "]".repeat(levels))).unwrap();
    let args = ConfigArgs { config: vec![path.clone()], ..ConfigArgs::default() };
    let err = args.load(&|_| None).unwrap_err();
    assert!(matches!(err, det_agent::ConfigError::TooNested { line: 1, column: 78, limit: 64, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: line 1, column 78 holds the 65th '[' or '{{' of the file, over the limit of 64: each can open a nested \
             YAML flow collection, and parsing slows down with every level nested. agent.yaml needs a few at most \
             (master_key_pins: [a, b]); remove the extra brackets, or write lists as \"- item\" lines",
            path.display()
        )
    );
    assert_eq!(det_agent::config::MAX_FLOW_BRACKETS, 64);
}

/// Text that looks like agent.yaml: its keys, values that matter (blank, null, pins,
/// paths, nesting), and YAML's punctuation, in any order.
fn yaml_like() -> impl Strategy<Value = String> {
    let fragment = prop::sample::select(vec![
        "master_host: ",
        "master_port: ",
        "security:\n",
        "  tls:\n",
        "    enabled: ",
        "    skip_verify: ",
        "    master_cert: ",
        "    master_cert_name: ",
        "    master_key_pins: ",
        "    client_cert: ",
        "    client_key: ",
        "fluent:\n",
        "  config_dir: ",
        "agent_id: ",
        "m.example.com",
        "10.0.0.5",
        "[::1]",
        "true",
        "yes",
        "~",
        "null",
        "\"\"",
        "''",
        " ",
        "\t",
        "\n",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ",",
        ": ",
        "? ",
        "&a ",
        "*a",
        "!!str ",
        "|\n",
        ">\n",
        "\"",
        "'",
        "#",
        "%YAML 1.2\n",
        "---\n",
        "...\n",
        "sha256:",
        "sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        "/dev/zero",
        "/nonexistent/master.pem",
        "\u{feff}",
        "é",
        "\0",
    ]);
    prop::collection::vec(fragment, 0..40).prop_map(|parts| parts.concat())
}

/// A YAML (or JSON) value tree whose keys are mostly agent.yaml's.
fn value_tree() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        3 => prop::sample::select(vec![
            "master_host", "master_port", "agent_id", "security", "tls", "enabled", "skip_verify",
            "master_cert", "master_cert_name", "master_key_pins", "client_cert", "client_key",
            "fluent", "config_dir", "format", "listen", "port", "flush", "agent_reconnect_backoff",
        ])
        .prop_map(str::to_owned),
        1 => any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec!["", " ", "m.example.com", "sha256:", "/dev/zero", "-1", "1e999", "yes"])
            .prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// agent.yaml's bytes in every form tried: raw bytes, YAML-like text, and a value tree
/// written as YAML or as JSON (which YAML reads too).
fn config_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        yaml_like().prop_map(String::into_bytes),
        value_tree().prop_map(|v| serde_norway::to_string(&v).unwrap().into_bytes()),
        value_tree().prop_map(|v| serde_json::to_string(&v).unwrap().into_bytes()),
    ]
}

/// Text that looks like a PEM file: BEGIN/END lines of known and unknown labels, base64
/// and junk.
fn pem_like() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop::sample::select(vec![
        "-----BEGIN CERTIFICATE-----\n",
        "-----END CERTIFICATE-----\n",
        "-----BEGIN PRIVATE KEY-----\n",
        "-----END PRIVATE KEY-----\n",
        "-----BEGIN EC PRIVATE KEY-----\n",
        "-----END EC PRIVATE KEY-----\n",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\n",
        "Proc-Type: 4,ENCRYPTED\n",
        "-----BEGIN X-----\n",
        "-----END Y-----\n",
        "-----BEGIN \n",
        "MIIB",
        "AAAA",
        "MA==",
        "====",
        "\n",
        "\r\n",
        " ",
        "!",
        "\u{0}",
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat().into_bytes()),
        // A real chain, cut or with one byte changed.
        (any::<prop::sample::Index>(), any::<u8>(), any::<bool>()).prop_map(|(at, byte, cut)| {
            let mut pem = det_agent::dev_master::fixtures::bytes("master.pem").to_vec();
            let i = at.index(pem.len());
            if cut {
                pem.truncate(i);
            } else {
                pem[i] = byte;
            }
            pem
        }),
    ]
}

/// Text that looks like a trust store: JSON objects of URLs and PEM strings, other JSON
/// values, and raw bytes.
fn store_bytes() -> impl Strategy<Value = Vec<u8>> {
    let url = prop_oneof![Just("https://master.det.test:8443".to_owned()), any::<String>(),];
    let pem = pem_like().prop_map(|b| String::from_utf8_lossy(&b).into_owned());
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        prop::collection::btree_map(url, pem, 0..4).prop_map(|m| serde_json::to_vec(&m).unwrap()),
        value_tree().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

proptest! {
    #![proptest_config(config())]

    /// `ConfigArgs::load` on a real file: a configuration, or an error naming the file or
    /// an option.
    #[test]
    fn any_agent_yaml_is_loaded_or_refused_with_an_explanation(bytes in config_bytes()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        std::fs::write(&path, &bytes).unwrap();
        let args = ConfigArgs { config: vec![path.clone()], ..ConfigArgs::default() };
        if let Err(err) = args.load(&|_| None) {
            let file = path.display().to_string();
            let mut names: Vec<&str> = OPTIONS.to_vec();
            names.push(&file);
            explained(&err.to_string(), &names, &bytes)?;
        }
    }

    /// The PEM readers: certificates (never none) or a key, or an error naming the file.
    #[test]
    fn any_pem_file_is_read_or_refused_with_an_explanation(bytes in pem_like()) {
        let path = Path::new("/etc/determined/hostile.pem");
        match pem::parse_certs(&bytes, path) {
            Ok(certs) => prop_assert!(!certs.is_empty()),
            Err(err) => explained(&err.to_string(), &["/etc/determined/hostile.pem"], &bytes)?,
        }
        if let Err(err) = pem::parse_private_key(&bytes, path) {
            explained(&err.to_string(), &["/etc/determined/hostile.pem"], &bytes)?;
        }
    }

    /// Key pins: read back as written, or refused saying what a pin looks like.
    #[test]
    fn any_key_pin_text_is_read_or_refused_with_an_explanation(
        text in prop_oneof![
            any::<String>(),
            "(sha256|SHA256|sha1|):[0-9a-fA-F:=+/_-]{0,100}",
        ],
    ) {
        match text.parse::<KeyPin>() {
            Ok(pin) => prop_assert_eq!(pin.to_string().parse::<KeyPin>(), Ok(pin)),
            Err(err) => explained(&err, &["sha256:"], text.as_bytes())?,
        }
    }

    /// Master addresses as `det -m` takes them: canonical and stable, or refused with the
    /// forms expected.
    #[test]
    fn any_master_address_is_read_or_refused_with_an_explanation(
        text in prop_oneof![
            any::<String>(),
            "(https?://|ftp://|)(\\[[0-9a-fA-F:.]{0,20}\\]|[a-zA-Z0-9.:@-]{0,20})(:[0-9]{0,6})?(/[a-z/]{0,6})?([?#][a-z]{0,3})?",
        ],
    ) {
        match MasterUrl::parse(&text) {
            Ok(url) => prop_assert_eq!(MasterUrl::parse(&url.to_string()), Ok(url)),
            Err(err) => explained(&err, &["invalid master address"], text.as_bytes())?,
        }
        match Host::parse(&text) {
            Ok(host) => prop_assert_eq!(Host::parse(&host.to_string()), Ok(host)),
            Err(err) => explained(&err.to_string(), &["expected"], text.as_bytes())?,
        }
    }

    /// The trust store: entries, each either a chain or an error naming the store and
    /// the entry; or the whole store refused, naming it.
    #[test]
    fn any_trust_store_is_read_or_refused_with_an_explanation(bytes in store_bytes()) {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("determined");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = dir.join("certs.json");
        std::fs::write(&path, &bytes).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let store = Store::at(&path);
        let file = path.display().to_string();
        match store.load() {
            Ok(entries) => {
                for key in entries.keys() {
                    let Ok(url) = MasterUrl::parse(key) else { continue };
                    if let Err(err) = store.get(&url) {
                        explained(&err.to_string(), &[&file], &bytes)?;
                    }
                }
            }
            Err(err) => explained(&err.to_string(), &[&file], &bytes)?,
        }
    }
}
