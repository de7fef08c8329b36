//! The Fluent Bit generator: golden files per mode and format, the DNS-name rule with
//! its exact guidance, a property test that no value escapes its line, and the daemon
//! keeping the files in step with its own trust. The real Fluent Bit reads and runs
//! what is written in `fluent_bit_real.rs`.

use std::path::{Path, PathBuf};

use det_agent::fluent_bit::{self, parse_classic, parse_yaml, CaFile, FluentError, Format, HostStore, Pipeline};
use det_agent::{Config, ConfigArgs};
use proptest::prelude::*;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{det_agent, finish, pki, signal, spawn_run, text, write_config};
use crate::link::until;
use det_agent::dev_master::{DevMaster, Event};

/// Where the golden configurations say the CA copy lives.
const OUT_DIR: &str = "/etc/det-agent/fluent-bit";

/// A folder standing in for /etc/determined: agent.yaml plus the PEM files it names.
pub(crate) struct Etc {
    pub(crate) dir: tempfile::TempDir,
}

impl Etc {
    pub(crate) fn new() -> Etc {
        let dir = tempfile::tempdir().unwrap();
        // The master's leaf with its chain up to the root, as an operator would pin it.
        let mut full = std::fs::read(pki("master-leaf.pem")).unwrap();
        full.extend(std::fs::read(pki("chain-to-root.pem")).unwrap());
        std::fs::write(dir.path().join("master-full-chain.pem"), full).unwrap();
        for name in ["chain-to-root.pem", "master.pem", "ip-only.pem", "client.pem", "client.key"] {
            std::fs::copy(pki(name), dir.path().join(name)).unwrap();
        }
        Etc { dir }
    }

    fn config(&self, yaml: &str) -> Config {
        let path = self.dir.path().join("agent.yaml");
        std::fs::write(&path, yaml).unwrap();
        let args = ConfigArgs { config: vec![path], ..ConfigArgs::default() };
        args.load(&|_| None).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    /// Built for the system store, whatever the environment running the tests says.
    fn build(&self, yaml: &str) -> Result<Pipeline, FluentError> {
        self.build_for(yaml, &HostStore::system())
    }

    fn build_for(&self, yaml: &str, store: &HostStore) -> Result<Pipeline, FluentError> {
        Pipeline::build_with(&self.config(yaml), CaFile::CopyIn(Path::new(OUT_DIR)), None, store)
    }

    /// Output with this machine's temporary folder replaced by /etc/determined.
    fn stable(&self, text: &str) -> String {
        text.replace(self.dir.path().to_str().unwrap(), "/etc/determined")
    }
}

/// The agent.yaml of each mode, named as its golden files are.
pub(crate) const MODES: &[(&str, &str)] = &[
    ("plain", "master_host: master.det.test\n"),
    ("ca", "master_host: master.det.test\nsecurity:\n  tls:\n    enabled: true\n"),
    (
        "pinned",
        "master_host: master.det.test\nsecurity:\n  tls:\n    enabled: true\n    master_cert: master-full-chain.pem\n",
    ),
    ("skip-verify", "master_host: 10.0.0.5\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n"),
    (
        // Agents dial a private IP; the certificate names the public DNS name.
        "name-override",
        "master_host: 10.0.0.5\ncontainer_master_host: 172.17.0.1\ncontainer_master_port: 443\n\
         fluent:\n  listen: 0.0.0.0\n  port: 24225\n  flush: 5\n\
         security:\n  tls:\n    enabled: true\n    master_cert: master-full-chain.pem\n    master_cert_name: master.det.test\n",
    ),
    (
        "mtls",
        "master_host: master.det.test\nsecurity:\n  tls:\n    enabled: true\n    master_cert: master-full-chain.pem\n\
         \x20   client_cert: client.pem\n    client_key: client.key\n",
    ),
];

/// CA mode with the host stores SSL_CERT_FILE and SSL_CERT_DIR choose, named as their
/// golden files are.
pub(crate) const STORES: &[(&str, Option<&str>, Option<&str>)] = &[
    ("ca-cert-file", Some("/etc/determined/private-ca.pem"), None),
    ("ca-cert-dir", None, Some("/etc/determined/ca.d:/usr/local/share/ca.d")),
];

#[test]
fn golden_files_per_mode_and_format() {
    let etc = Etc::new();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/fluent-bit");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let modes = MODES.iter().map(|(mode, yaml)| (*mode, *yaml, HostStore::system()));
    let stores = STORES.iter().map(|(mode, file, dirs)| {
        (*mode, MODES[1].1, HostStore::from_vars(file.map(Into::into), dirs.map(Into::into)))
    });
    for (mode, yaml, store) in modes.chain(stores) {
        let pipeline = etc.build_for(yaml, &store).unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert!(pipeline.warnings().is_empty(), "{mode}: {:?}", pipeline.warnings());
        let classic = etc.stable(&pipeline.render(Format::Classic).unwrap());
        let yaml_text = etc.stable(&pipeline.render(Format::Yaml).unwrap());
        for (ext, text) in [("conf", &classic), ("yaml", &yaml_text)] {
            let path = golden.join(format!("{mode}.{ext}"));
            if update {
                std::fs::create_dir_all(&golden).unwrap();
                std::fs::write(&path, text).unwrap();
            }
            let want = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 cargo test writes it)", path.display()));
            assert_eq!(text, &want, "{} differs; if intended, run with UPDATE_GOLDEN=1", path.display());
        }
        // The two formats carry the same settings.
        assert_eq!(parse_classic(&classic).unwrap(), parse_yaml(&yaml_text).unwrap(), "{mode}");
    }
}

/// The value of `key` in the output section, as Fluent Bit reads the classic text.
fn output_value(text: &str, key: &str) -> Option<String> {
    let parsed = parse_classic(text).unwrap();
    let (_, entries) = parsed.sections.iter().find(|(name, _)| name == "OUTPUT").unwrap();
    entries.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

#[test]
fn each_mode_sets_the_tls_options_fluent_bit_needs() {
    let etc = Etc::new();
    let render = |mode: &str| {
        let yaml = MODES.iter().find(|(m, _)| *m == mode).unwrap().1;
        etc.build(yaml).unwrap().render(Format::Classic).unwrap()
    };
    let plain = render("plain");
    assert_eq!(output_value(&plain, "tls"), None);
    assert_eq!(output_value(&plain, "port").as_deref(), Some("8080"));

    let ca = render("ca");
    assert_eq!(output_value(&ca, "tls.vhost").as_deref(), Some("master.det.test"));
    assert_eq!(output_value(&ca, "tls.verify_hostname").as_deref(), Some("On"));
    assert_eq!(output_value(&ca, "tls.ca_file"), None, "CA mode uses the system store");
    assert!(ca.contains("`det-agent fluent-bit --probe` checks it"), "{ca}");

    let pinned = render("pinned");
    assert_eq!(output_value(&pinned, "tls.ca_file").as_deref(), Some("/etc/det-agent/fluent-bit/master-ca.pem"));
    assert!(pinned.contains("master.det.test was found in the master certificate in"), "{pinned}");

    let skip = render("skip-verify");
    assert_eq!(output_value(&skip, "tls.verify").as_deref(), Some("Off"));
    assert_eq!(output_value(&skip, "tls.verify_hostname"), None);
    assert_eq!(output_value(&skip, "tls.vhost"), None);
    assert!(skip.contains("the master's identity is NOT verified"), "{skip}");

    let name = render("name-override");
    assert_eq!(output_value(&name, "host").as_deref(), Some("172.17.0.1"));
    assert_eq!(output_value(&name, "port").as_deref(), Some("443"));
    assert_eq!(output_value(&name, "tls.vhost").as_deref(), Some("master.det.test"));

    let mtls = render("mtls");
    assert!(output_value(&mtls, "tls.crt_file").unwrap().ends_with("/client.pem"));
    assert!(output_value(&mtls, "tls.key_file").unwrap().ends_with("/client.key"));
}

#[test]
fn ca_mode_names_the_host_store_det_agent_reads() {
    let etc = Etc::new();
    let (ca, pinned) = (MODES[1].1, MODES[2].1);
    let store =
        |file: Option<&str>, dirs: Option<&str>| HostStore::from_vars(file.map(Into::into), dirs.map(Into::into));
    let text = |yaml: &str, store: &HostStore| etc.build_for(yaml, store).unwrap().render(Format::Classic).unwrap();

    // Both variables: Fluent Bit takes one or the other, so it gets the file and a warning.
    let both = store(Some("/etc/ca.pem"), Some("/etc/ca.d:/opt/ca.d"));
    let pipeline = etc.build_for(ca, &both).unwrap();
    assert_eq!(
        pipeline.warnings(),
        ["SSL_CERT_FILE and SSL_CERT_DIR are both set; Fluent Bit takes one CA file or CA folders, not both, so it is given SSL_CERT_FILE and will not trust the certificates in SSL_CERT_DIR (/etc/ca.d:/opt/ca.d) that det-agent trusts. To give it all of them, put them in the one file."]
    );
    let written = pipeline.render(Format::Classic).unwrap();
    assert_eq!(output_value(&written, "tls.ca_file").as_deref(), Some("/etc/ca.pem"));
    assert_eq!(output_value(&written, "tls.ca_path"), None);

    // A relative path is read from det-agent's working folder, so it is written absolute.
    let relative = text(ca, &store(Some("certs/ca.pem"), None));
    let want = std::env::current_dir().unwrap().join("certs/ca.pem");
    assert_eq!(output_value(&relative, "tls.ca_file").as_deref(), want.to_str());

    // An empty SSL_CERT_FILE makes det-agent trust no host store; it cannot be written.
    let err = etc.build_for(ca, &store(Some(""), None)).unwrap_err();
    assert!(matches!(&err, FluentError::Unsafe { option, .. } if option == "SSL_CERT_FILE"), "{err}");
    assert!(err.to_string().contains("it is empty"), "{err}");

    // Pinned mode trusts master_cert alone, whatever the variables say.
    let pinned_text = text(pinned, &both);
    assert_eq!(output_value(&pinned_text, "tls.ca_file").as_deref(), Some("/etc/det-agent/fluent-bit/master-ca.pem"));
    assert!(!pinned_text.contains("SSL_CERT"), "{pinned_text}");
}

#[test]
fn an_ip_without_master_cert_name_is_refused_with_the_names_to_use() {
    let etc = Etc::new();
    let pinned =
        "master_host: 10.0.0.5\nsecurity:\n  tls:\n    enabled: true\n    master_cert: master-full-chain.pem\n";
    let err = etc.build(pinned).unwrap_err().to_string();
    assert!(
        err.starts_with("master_host is the IP address 10.0.0.5, and Fluent Bit cannot verify a master by IP address"),
        "{err}"
    );
    assert!(
        err.ends_with(&format!(
            "set security.tls.master_cert_name to a DNS name the master's certificate carries; the master certificate in {}/master-full-chain.pem carries: master.det.test, localhost",
            etc.dir.path().display()
        )),
        "{err}"
    );

    // CA mode: the certificate is not on disk; the message says how to see its names.
    let err = etc.build("master_host: fd00::5\nsecurity:\n  tls:\n    enabled: true\n").unwrap_err().to_string();
    assert!(err.starts_with("master_host is the IP address fd00::5"), "{err}");
    assert!(
        err.ends_with(
            "`det-agent fluent-bit --probe` (or `det-agent check`) shows the names the master's certificate carries"
        ),
        "{err}"
    );

    // Fluent Bit dials container_master_host, so that is the option named.
    let err = etc
        .build(
            "master_host: master.det.test\ncontainer_master_host: 172.17.0.1\nsecurity:\n  tls:\n    enabled: true\n",
        )
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("container_master_host is the IP address 172.17.0.1"), "{err}");
}

#[test]
fn a_certificate_without_dns_names_gets_reissue_guidance() {
    let etc = Etc::new();
    let yaml = "master_host: 127.0.0.1\nsecurity:\n  tls:\n    enabled: true\n    master_cert: ip-only.pem\n    master_cert_name: master.det.test\n";
    let err = etc.build(yaml).unwrap_err().to_string();
    assert!(err.contains("ip-only.pem carries no DNS name (IP:127.0.0.1, IP:::1), and Fluent Bit can only verify a master by a DNS name; reissue the master's certificate with one in its subjectAltName, e.g. DNS:master.example.com"), "{err}");
    assert!(
        err.contains("subject O=det-agent tests, CN=127.0.0.1, sha256 ")
            && err.contains("valid 2024-01-01T00:00:00Z to"),
        "{err}"
    );
}

#[test]
fn a_name_the_certificate_lacks_is_refused_with_the_names_it_has() {
    let etc = Etc::new();
    let yaml = "master_host: 10.0.0.5\nsecurity:\n  tls:\n    enabled: true\n    master_cert: master-full-chain.pem\n    master_cert_name: logs.det.test\n";
    let err = etc.build(yaml).unwrap_err().to_string();
    assert!(
        err.starts_with("Fluent Bit would verify the master as logs.det.test, but the master certificate in "),
        "{err}"
    );
    assert!(err.contains("does not carry that name: it carries DNS:master.det.test, DNS:localhost, IP:127.0.0.1, IP:::1; set security.tls.master_cert_name to one of its DNS names, or reissue the certificate with DNS:logs.det.test"), "{err}");
}

#[test]
fn a_pinned_file_without_a_root_is_written_with_a_warning() {
    let etc = Etc::new();
    let yaml = "master_host: master.det.test\nsecurity:\n  tls:\n    enabled: true\n    master_cert: master.pem\n";
    let pipeline = etc.build(yaml).unwrap();
    assert_eq!(pipeline.warnings().len(), 1);
    assert!(pipeline.warnings()[0].contains("holds no self-signed root"), "{:?}", pipeline.warnings());
    assert!(pipeline.render(Format::Classic).unwrap().contains("# WARNING: security.tls.master_cert"));
}

#[test]
fn key_pins_fluent_bit_cannot_check_are_called_out() {
    let etc = Etc::new();
    let pin = format!("sha256:{}", "ab".repeat(32));
    let skip = format!(
        "master_host: master.det.test\nsecurity:\n  tls:\n    enabled: true\n    skip_verify: true\n    master_key_pins: [{pin}]\n"
    );
    let pipeline = etc.build(&skip).unwrap();
    assert_eq!(pipeline.warnings().len(), 1);
    assert!(pipeline.warnings()[0].contains("tls.verify Off, to whoever answers"), "{:?}", pipeline.warnings());
    let text = pipeline.render(Format::Classic).unwrap();
    assert!(text.contains("# WARNING: Fluent Bit cannot check security.tls.master_key_pins"), "{text}");
    let pinned = format!(
        "master_host: master.det.test\nsecurity:\n  tls:\n    enabled: true\n    master_cert: chain-to-root.pem\n    master_key_pins: [{pin}]\n"
    );
    let pipeline = etc.build(&pinned).unwrap();
    assert_eq!(pipeline.warnings().len(), 1);
    assert!(pipeline.warnings()[0].contains("without the pins"), "{:?}", pipeline.warnings());
}

#[test]
fn unsafe_paths_are_refused_naming_the_option() {
    let etc = Etc::new();
    let config = etc.config(MODES[2].1);
    for (dir, why) in
        [("/tmp/x\n[OUTPUT]\n    Name stdout", "control character"), ("/tmp/${HOME}", "'$'"), ("[x", "section header")]
    {
        let err =
            Pipeline::build_with(&config, CaFile::CopyIn(Path::new(dir)), None, &HostStore::system()).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, FluentError::Unsafe { ref option, .. } if option == "tls.ca_file"), "{msg}");
        assert!(msg.contains(why) && msg.starts_with("cannot write tls.ca_file "), "{msg}");
    }
}

/// Fragments that try to leave a value: line breaks, sections, meta commands,
/// expansions, YAML syntax, surrounding space.
fn hostile() -> impl Strategy<Value = String> {
    let fragment = prop::sample::select(vec![
        "\n",
        "\r",
        "\r\n",
        "\u{2028}",
        "\u{85}",
        "\t",
        "\0",
        "[OUTPUT]",
        "[SERVICE]",
        "@INCLUDE /etc/passwd",
        "@SET a=b",
        "${HOME}",
        "$",
        "#",
        " ",
        ":",
        "- ",
        "'",
        "\"",
        "{",
        "}",
        "&a",
        "*a",
        "!!str",
        "|",
        ">",
        "%",
        "a",
        "/",
        "é",
        "Name stdout",
        "Match *",
    ]);
    prop_oneof![any::<String>(), prop::collection::vec(fragment, 1..8).prop_map(|parts| parts.concat()),]
}

fn expected_keys(text: &str) -> Vec<(String, Vec<String>)> {
    parse_classic(text)
        .unwrap()
        .sections
        .into_iter()
        .map(|(name, entries)| (name, entries.into_iter().map(|(k, _)| k).collect()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Whatever the operator's paths hold, the output has exactly the sections and keys
    /// of a clean configuration, each value is the path unchanged, or the value is
    /// refused naming its option. Checked in both formats through their readers.
    #[test]
    fn no_value_adds_a_line_section_or_meta_command(s in hostile()) {
        let etc = Etc::new();
        let clean = etc.build(MODES[5].1).unwrap().render(Format::Classic).unwrap();
        let mut config = etc.config(MODES[5].1);
        let tls = config.tls.as_mut().unwrap();
        // Quoted only in a comment, which must stay one line whatever it holds.
        if let det_agent::Trust::Pinned(pinned) = &mut tls.trust {
            pinned.path = PathBuf::from(format!("/p/{s}"));
        }
        let identity = tls.client_identity.as_mut().unwrap();
        identity.cert_path = PathBuf::from(format!("/c/{s}"));
        identity.key_path = PathBuf::from(format!("/k{s}"));
        let dir = PathBuf::from(format!("/d{s}"));
        // Client paths are written absolute (normalised); the CA copy's as given.
        let absolute = |p: &Path| std::path::absolute(p).unwrap().to_str().unwrap().to_owned();
        let want = [
            ("tls.ca_file", dir.join(fluent_bit::CA_FILE_NAME).to_str().unwrap().to_owned()),
            ("tls.crt_file", absolute(&identity.cert_path)),
            ("tls.key_file", absolute(&identity.key_path)),
        ];
        let all_safe = want.iter().all(|(_, v)| fluent_bit::Value::new(v).is_ok());
        match Pipeline::build_with(&config, CaFile::CopyIn(&dir), None, &HostStore::system()) {
            Ok(pipeline) => {
                prop_assert!(all_safe, "accepted an unsafe value {s:?}");
                let classic = pipeline.render(Format::Classic).unwrap();
                let yaml = pipeline.render(Format::Yaml).unwrap();
                prop_assert_eq!(expected_keys(&classic), expected_keys(&clean));
                prop_assert_eq!(parse_classic(&classic).unwrap(), parse_yaml(&yaml).unwrap());
                for (key, value) in &want {
                    let got = output_value(&classic, key);
                    prop_assert_eq!(got.as_ref(), Some(value));
                }
            }
            Err(FluentError::Unsafe { option, .. }) => {
                prop_assert!(["tls.ca_file", "security.tls.client_cert", "security.tls.client_key"].contains(&option.as_str()));
                prop_assert!(!all_safe, "refused a safe value {s:?}");
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }

    /// The same for the host store CA mode writes: SSL_CERT_FILE as tls.ca_file, or the
    /// folders of SSL_CERT_DIR as tls.ca_path, unchanged, or refused naming the variable.
    #[test]
    fn no_host_store_path_adds_a_line_section_or_meta_command(s in hostile(), as_dir in any::<bool>()) {
        let etc = Etc::new();
        let clean_store = if as_dir { HostStore::from_vars(None, Some("/x".into())) } else { HostStore::from_vars(Some("/x".into()), None) };
        let clean = etc.build_for(MODES[1].1, &clean_store).unwrap().render(Format::Classic).unwrap();
        let value = format!("/s{s}");
        let (store, key, option) = if as_dir {
            (HostStore::from_vars(None, Some(value.clone().into())), "tls.ca_path", "SSL_CERT_DIR")
        } else {
            (HostStore::from_vars(Some(value.clone().into()), None), "tls.ca_file", "SSL_CERT_FILE")
        };
        // SSL_CERT_DIR is a list: the value written is its folders, absolute, joined again.
        let want = store.dirs.iter().map(|d| std::path::absolute(d).unwrap().to_str().unwrap().to_owned()).collect::<Vec<_>>().join(":");
        let want = if as_dir { want } else { std::path::absolute(&value).unwrap().to_str().unwrap().to_owned() };
        match etc.build_for(MODES[1].1, &store) {
            Ok(pipeline) => {
                prop_assert!(fluent_bit::Value::new(&want).is_ok(), "accepted an unsafe value {s:?}");
                let classic = pipeline.render(Format::Classic).unwrap();
                let yaml = pipeline.render(Format::Yaml).unwrap();
                prop_assert_eq!(expected_keys(&classic), expected_keys(&clean));
                prop_assert_eq!(parse_classic(&classic).unwrap(), parse_yaml(&yaml).unwrap());
                prop_assert_eq!(output_value(&classic, key), Some(want));
            }
            Err(FluentError::Unsafe { option: refused, .. }) => {
                prop_assert_eq!(refused.as_str(), option);
                prop_assert!(fluent_bit::Value::new(&want).is_err(), "refused a safe value {s:?}");
            }
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}

#[tokio::test]
async fn out_writes_the_ca_copy_and_removes_files_that_no_longer_apply() {
    use std::os::unix::fs::PermissionsExt;
    let etc = Etc::new();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().to_str().unwrap();
    let pinned = write_config(&etc.dir, MODES[2].1);
    let run = |extra: &'static [&'static str]| {
        let mut args = vec!["fluent-bit", "--config", pinned.to_str().unwrap(), "--out", out];
        args.extend_from_slice(extra);
        async move { det_agent(&args, &[]).await }
    };
    let result = run(&[]).await;
    assert_eq!(result.status.code(), Some(0), "{}", text(&result).1);
    let ca_path = out_dir.path().join("master-ca.pem");
    let copy = det_agent::pem::load_certs(&ca_path).unwrap();
    assert_eq!(copy, det_agent::pem::load_certs(&etc.dir.path().join("master-full-chain.pem")).unwrap());
    for name in ["fluent-bit.conf", "master-ca.pem"] {
        let mode = std::fs::metadata(out_dir.path().join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "{name}");
    }

    // Switching format replaces the classic file rather than leaving a stale one beside it.
    let result = run(&["--format", "yaml"]).await;
    let (stdout, stderr) = text(&result);
    assert_eq!(result.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("removed") && stdout.contains("fluent-bit.conf"), "{stdout}");
    assert!(!out_dir.path().join("fluent-bit.conf").exists());

    // Switching to CA mode removes the CA copy no longer named.
    let ca = etc.dir.path().join("ca.yaml");
    std::fs::write(&ca, MODES[1].1).unwrap();
    let run_ca = |extra: &'static [&'static str]| {
        let mut args = vec!["fluent-bit", "--config", ca.to_str().unwrap(), "--out", out];
        args.extend_from_slice(extra);
        async move { det_agent(&args, &[]).await }
    };
    let result = run_ca(&[]).await;
    assert_eq!(result.status.code(), Some(0), "{}", text(&result).1);
    assert!(!ca_path.exists());
    let names: Vec<_> = std::fs::read_dir(out_dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["fluent-bit.conf"]);

    // A configuration that cannot be expressed exits 2 and leaves the files as they were.
    let before = std::fs::read(out_dir.path().join("fluent-bit.conf")).unwrap();
    let result = run_ca(&["--master-host", "10.0.0.5"]).await;
    assert_eq!(result.status.code(), Some(2), "{}", text(&result).1);
    assert_eq!(std::fs::read(out_dir.path().join("fluent-bit.conf")).unwrap(), before);
}

#[tokio::test]
async fn probe_checks_the_certificate_the_master_presents() {
    let root = pki("root-ca.pem");
    let store = [("SSL_CERT_FILE", root.to_str().unwrap())];

    // CA mode, agents dial localhost; Fluent Bit dials an IP: the probe lists the names.
    let master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let base =
        ["fluent-bit", "--probe", "--security-tls-enabled", "--master-port", &port, "--master-host", "localhost"];
    let out = det_agent(&base, &store).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("# localhost was found in the certificate")
            && stdout.contains("presented (verified as localhost)."),
        "{stdout}"
    );
    let out = det_agent(&[&base[..], &["--container-master-host", "127.0.0.1"]].concat(), &store).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("container_master_host is the IP address 127.0.0.1")
            && stderr.contains("presented (verified as localhost) carries: master.det.test, localhost"),
        "{stderr}"
    );

    // A master whose certificate has IP entries only: the agent verifies it by IP, but
    // Fluent Bit cannot, and the message says what to reissue.
    let master = DevMaster::with_fixture("ip-only").await.unwrap();
    let port = master.addr().port().to_string();
    let base =
        ["fluent-bit", "--probe", "--security-tls-enabled", "--master-port", &port, "--master-host", "127.0.0.1"];
    let out = det_agent(&[&base[..], &["--security-tls-master-cert-name", "master.det.test"]].concat(), &store).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "the agent itself cannot verify it by that name: {stderr}");
    assert!(stderr.contains("--probe could not fetch the master's certificate"), "{stderr}");
    let out = det_agent(&[&base[..], &["--container-master-host", "logs.det.test"]].concat(), &store).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("carries no DNS name (IP:127.0.0.1, IP:::1)") && stderr.contains("e.g. DNS:master.example.com"),
        "{stderr}"
    );
}

#[tokio::test]
async fn run_keeps_the_fluent_bit_config_in_step_on_start_and_sighup() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let etc = Etc::new();
    let out_dir = etc.dir.path().join("fluent-bit");
    let port = master.addr().port();
    let yaml = |format: &str| {
        format!(
            "master_host: 127.0.0.1\nmaster_port: {}\nfluent:\n  config_dir: fluent-bit\n  format: {format}\n\
             security:\n  tls:\n    enabled: true\n    master_cert: chain-to-root.pem\n    master_cert_name: master.det.test\n",
            port
        )
    };
    let path = write_config(&etc.dir, &yaml("classic"));
    let mut child = spawn_run(&["--config", path.to_str().unwrap()]);
    let mut log = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut wait_for = async |needle: &str| {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains(needle) {
                return line;
            }
        }
        panic!("det-agent exited before logging {needle:?}");
    };
    let line = wait_for("wrote the Fluent Bit configuration").await;
    assert!(line.contains(&out_dir.join("fluent-bit.conf").display().to_string()), "{line}");
    crate::fluent_bit_real::assert_dry_run_passes(&out_dir.join("fluent-bit.conf"));
    let conf = std::fs::read_to_string(out_dir.join("fluent-bit.conf")).unwrap();
    assert_eq!(output_value(&conf, "tls.vhost").as_deref(), Some("master.det.test"));
    until(&mut master, |e| matches!(e, Event::AgentStarted { .. })).await;

    // SIGHUP with an expressible change rewrites the files.
    write_config(&etc.dir, &yaml("yaml"));
    signal(&child, "HUP").await;
    wait_for("wrote the Fluent Bit configuration").await;
    assert!(out_dir.join("fluent-bit.yaml").exists() && !out_dir.join("fluent-bit.conf").exists());
    crate::fluent_bit_real::assert_dry_run_passes(&out_dir.join("fluent-bit.yaml"));

    // SIGHUP with one Fluent Bit cannot verify (an IP, no name) is refused as a whole:
    // the running configuration and the written files stay.
    let before = std::fs::read(out_dir.join("fluent-bit.yaml")).unwrap();
    write_config(&etc.dir, &yaml("yaml").replace("    master_cert_name: master.det.test\n", ""));
    signal(&child, "HUP").await;
    let line = wait_for("fluent.config_dir").await;
    assert!(line.contains("master_host is the IP address 127.0.0.1"), "{line}");
    assert_eq!(std::fs::read(out_dir.join("fluent-bit.yaml")).unwrap(), before);

    signal(&child, "TERM").await;
    let out = finish(child).await;
    assert_eq!(out.status.code(), Some(0));
}
