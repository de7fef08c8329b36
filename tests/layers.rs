//! The crate's layers hold: every module imports only from modules below it, in the order
//! `src/lib.rs` documents (and the README's "Architecture" section lists), so the import
//! graph has no cycle. Test code (`#[cfg(test)]` and below, and unit-test modules in files
//! of their own: `tests.rs`, or any file under a `tests/` folder) may use anything,
//! fixtures from the dev master included. A new module must be given its place here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Bottom first. A module may import from modules earlier in this list only.
const LAYERS: &[&str] = &[
    // Leaves: text made safe, files, the reconnect schedule, certificate facts, hosts,
    // the crypto provider, errors, device detection, sd_notify.
    "text",
    "fsutil",
    "backoff",
    "x509",
    "host",
    "crypto",
    "error",
    "devices",
    "notify",
    // Reading files: PEM, then the trust store and master addresses.
    "pem",
    "store",
    // The checked configuration.
    "config",
    // The verifier and TLS client, then the one dialer, then expiry warnings and renewal
    // advice about what the verifier relied on.
    "tls",
    "dial",
    "expiry",
    // The master link, then `check`.
    "link",
    "check",
    // What the daemon is made of, then the daemon.
    "metrics",
    "fluent_bit",
    "trust",
    "state_file",
    "task_env",
    "daemon",
    // Test doubles and the demo.
    "dev_master",
    "demo",
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|m| *m == module)
}

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules named after `crate::` in `code`, `use crate::{a, b::c}` included.
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group.split(',').map(|part| part.trim()).collect()
            }
            None => vec![rest],
        };
        for name in names {
            let ident: String = name.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !ident.is_empty() {
                found.insert(ident);
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let mut violations = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        if first == "main.rs" || first == "lib.rs" || first == "bin" {
            continue; // the binary sits above every layer; lib.rs only declares them
        }
        let module = first.trim_end_matches(".rs").to_owned();
        if relative.components().skip(1).any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs") {
            continue; // a unit-test module, declared under #[cfg(test)]
        }
        let Some(own) = rank(&module) else {
            violations.push(format!("{}: module `{module}` has no layer in tests/layers.rs", relative.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let production = text.split("#[cfg(test)]").next().unwrap_or("");
        for import in crate_imports(production) {
            if import == module {
                continue;
            }
            match rank(&import) {
                Some(r) if r < own => {}
                Some(_) => violations
                    .push(format!("{}: `{module}` imports crate::{import}, which is not below it", relative.display())),
                None => violations.push(format!("{}: crate::{import} has no layer", relative.display())),
            }
        }
    }
    assert!(violations.is_empty(), "layering broken:\n{}", violations.join("\n"));
}

#[test]
fn every_module_of_the_crate_has_a_layer() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        let declared = line.trim().trim_start_matches("pub ").strip_prefix("mod ").map(|m| m.trim_end_matches(';'));
        if let Some(module) = declared {
            assert!(rank(module).is_some(), "src/lib.rs declares `{module}`, which has no layer in tests/layers.rs");
        }
    }
}

#[test]
fn the_import_reader_sees_grouped_and_nested_paths() {
    let code = "use crate::{config::Host, tls};\nuse crate::x509::KeyPin;\nlet a = crate::text::escape(x);";
    let found: Vec<String> = crate_imports(code).into_iter().collect();
    assert_eq!(found, ["config", "text", "tls", "x509"]);
}
