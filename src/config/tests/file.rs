//! Reading agent.yaml: bounds, encoding, shape.

use std::path::{Path, PathBuf};

use crate::config::read::parse_file;
use crate::config::ConfigArgs;
use crate::error::ConfigError;

#[test]
fn a_deeply_nested_file_is_refused_before_it_is_parsed() {
    let path = Path::new("/etc/determined/agent.yaml");
    let levels = 100_000;
    let yaml = format!("master_host: {}{}\n", "[".repeat(levels), "]".repeat(levels));
    let err = parse_file(&yaml, path).unwrap_err();
    assert!(matches!(err, ConfigError::TooNested { line: 1, column: 78, limit: 64, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "/etc/determined/agent.yaml: line 1, column 78 holds the 65th '[' or '{' of the file, over the limit of 64: \
         each can open a nested YAML flow collection, and parsing slows down with every level nested. agent.yaml \
         needs a few at most (master_key_pins: [a, b]); remove the extra brackets, or write lists as \"- item\" lines"
    );
    // Flow mappings count too, and so does a bracket in a comment or a string: the
    // bound must hold whatever the quoting.
    let mappings = format!("master_host: m\n# {}\nagent_id: \"{}\"\n", "{".repeat(40), "[".repeat(25));
    assert!(matches!(parse_file(&mappings, path), Err(ConfigError::TooNested { line: 3, column: 36, limit: 64, .. })));
    // 64 is accepted, and then nested collections meet serde_norway's own checks.
    let yaml = format!("master_host: m\nagent_id: \"{}\"\n", "[".repeat(64));
    assert!(parse_file(&yaml, path).is_ok());
    let yaml = format!("master_host: {}{}\n", "[".repeat(64), "]".repeat(64));
    let msg = parse_file(&yaml, path).unwrap_err().to_string();
    assert_eq!(
        msg,
        "/etc/determined/agent.yaml: master_host: invalid type: sequence, expected a string at line 1 column 14"
    );
}

#[test]
fn a_file_over_1_mib_is_refused_unparsed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    let padding = "#".repeat(1 << 20);
    std::fs::write(&path, format!("master_host: m\n{padding}")).unwrap();
    let args = ConfigArgs { config: vec![path.clone()], ..ConfigArgs::default() };
    let err = args.load(&|_| None).unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { limit: 1048576, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("{}: the file is over 1 MiB (1048576 bytes), the most det-agent reads of a configuration file (a complete agent.yaml is a few KiB); check that --config names the right file", path.display())
    );
    // Exactly 1 MiB is read.
    std::fs::write(&path, format!("master_host: m\n{}", &padding[15..])).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    assert!(args.load(&|_| None).is_ok());
    // An endless file is not read for ever.
    let args = ConfigArgs { config: vec![PathBuf::from("/dev/zero")], ..ConfigArgs::default() };
    assert!(matches!(args.load(&|_| None), Err(ConfigError::TooLarge { .. })));
}

#[test]
fn a_file_that_is_not_utf8_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.yaml");
    std::fs::write(&path, b"master_host: m\xff\n").unwrap();
    let args = ConfigArgs { config: vec![path.clone()], ..ConfigArgs::default() };
    assert_eq!(
        args.load(&|_| None).unwrap_err().to_string(),
        format!("{}: not UTF-8 text (byte 14 starts an invalid sequence); agent.yaml must be UTF-8 YAML, so check that this is the right file, or convert it with iconv", path.display())
    );
}

#[test]
fn a_wrong_shape_is_named_in_words_not_rust_types() {
    for (yaml, needle) in [
        ("- a\n", "invalid type: sequence, expected agent.yaml's settings, as `key: value` lines"),
        ("security: 5\n", "invalid type: integer `5`, expected the security settings (tls:)"),
        ("security:\n  tls: [1]\n", "expected the security.tls settings (enabled, master_cert, …)"),
        ("fluent: x\n", "expected the fluent settings (config_dir, format, listen, port, flush)"),
    ] {
        let msg = parse_file(yaml, Path::new("a.yaml")).unwrap_err().to_string();
        assert!(msg.contains(needle) && !msg.contains("struct"), "{msg}");
    }
}

#[test]
fn empty_or_comment_only_file_is_empty_config() {
    assert!(parse_file("", Path::new("a.yaml")).is_ok());
    assert!(parse_file("# nothing here\n", Path::new("a.yaml")).is_ok());
}
