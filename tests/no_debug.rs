//! No Rust `Debug` text reaches an operator: every refusal `check` can meet, from each
//! kind of certificate rejection to a master that does not speak TLS, is explained in
//! words, in the text report and in every string of the JSON one.

use det_agent::dev_master::DevMaster;
use det_agent::x509::KeyPin;

use crate::cli::{det_agent, pki, text};

/// Traces of `{:?}` output: struct and enum syntax, Option/Result wrappers, escaped
/// quotes, byte arrays, rustls's and webpki's variant names.
fn debug_traces(output: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in [
        "Some(",
        "None,",
        "None)",
        "Ok(",
        "Err(",
        "Other(",
        "OtherError",
        "Rejection {",
        "CertSummary {",
        "kind:",
        "\\\"",
        "[0, ",
        "Custom {",
        "Os {",
        "InvalidCertificate",
        "AlertReceived",
        "UnknownIssuer",
        "NotValidForName",
        "CertificateError",
        "Kind(",
    ] {
        if output.contains(marker) {
            found.push(marker.to_owned());
        }
    }
    // `Name { field: … }`: a capitalised word, a space, a brace.
    let bytes = output.as_bytes();
    for (i, window) in bytes.windows(3).enumerate() {
        if window == b" { " && i > 0 && bytes[..i].iter().rev().take_while(|b| b.is_ascii_alphanumeric()).count() > 0 {
            let word: String = output[..i]
                .chars()
                .rev()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .chars()
                .rev()
                .collect();
            if word.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
                found.push(format!("{word} {{ "));
            }
        }
    }
    found
}

fn strings_of(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings_of(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings_of(v, out)),
        _ => {}
    }
}

/// Runs `check` with `args` in text and JSON, and asserts both fail in words.
async fn assert_explained_in_words(case: &str, args: &[&str], env: &[(&str, &str)], expected: &str) {
    let out = det_agent(&[&["check"], args].concat(), env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{case}: {stdout}{stderr}");
    assert!(stdout.contains(expected), "{case}: expected {expected:?} in:\n{stdout}");
    let traces = debug_traces(&stdout);
    assert!(traces.is_empty(), "{case}: Debug text {traces:?} in:\n{stdout}");
    let traces = debug_traces(&stderr);
    assert!(traces.is_empty(), "{case}: Debug text {traces:?} on stderr:\n{stderr}");

    let out = det_agent(&[&["check", "--json"], args].concat(), env).await;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut strings = Vec::new();
    strings_of(&report, &mut strings);
    for s in strings {
        let traces = debug_traces(&s);
        assert!(traces.is_empty(), "{case}: Debug text {traces:?} in a JSON string: {s}");
    }
}

fn pinned<'a>(port: &'a str, host: &'a str, file: &'a str) -> Vec<String> {
    vec![
        "--master-host".into(),
        host.into(),
        "--master-port".into(),
        port.into(),
        "--security-tls-enabled".into(),
        "--security-tls-master-cert".into(),
        pki(file).to_str().unwrap().into(),
    ]
}

#[tokio::test]
async fn every_refusal_check_meets_is_explained_in_words() {
    // Certificate rejections, one per kind the fixtures can produce.
    for (case, server, host, file, expected) in [
        ("unknown issuer", "master", "localhost", "other-root-ca.pem", "does not chain to any of them"),
        ("name", "wrong-name", "localhost", "root-ca.pem", "certificate is not valid for localhost"),
        ("expired", "expired", "localhost", "root-ca.pem", "certificate expired"),
        ("not yet valid", "not-yet-valid", "localhost", "root-ca.pem", "certificate is not valid until"),
        (
            "client certificate as server",
            "client",
            "localhost",
            "root-ca.pem",
            "does not allow TLS server authentication",
        ),
        (
            "anchor path length",
            "issued-by-sub-ca-of-pathlen0",
            "localhost",
            "pathlen0-ca.pem",
            "basicConstraints pathLen 0",
        ),
        ("expired anchor", "issued-by-expired-self-signed", "localhost", "expired-self-signed-ca.pem", "An expired CA"),
        ("TOFU-style exact pin", "self-signed-ca-other-key", "localhost", "self-signed-ca.pem", "not the one pinned"),
    ] {
        let master = DevMaster::with_fixture(server).await.unwrap();
        let port = master.addr().port().to_string();
        let args = pinned(&port, host, file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_explained_in_words(case, &args, &[], expected).await;
    }

    // CA mode: a CA certificate presented as the master's own.
    let master = DevMaster::with_fixture("self-signed-ca").await.unwrap();
    let port = master.addr().port().to_string();
    let ca = ["--master-host", "localhost", "--master-port", &port, "--security-tls-enabled"];
    assert_explained_in_words("CA as end entity", &ca, &[], "presents a CA certificate").await;

    // Key pins that match nothing.
    let master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port().to_string();
    let mut args = pinned(&port, "localhost", "root-ca.pem");
    args.extend(["--security-tls-master-key-pins".into(), KeyPin([7; 32]).to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_explained_in_words("key pins", &args, &[], "has a pinned key").await;

    // Not TLS: a plain-HTTP server (answering at once, as a web server refusing what it
    // cannot parse does) dialed with TLS on.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = plain.local_addr().unwrap().port().to_string();
    let answering = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut tcp, _)) = plain.accept().await {
            let _ = tcp.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
        }
    });
    let args = pinned(&port, "localhost", "root-ca.pem");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_explained_in_words("not TLS", &args, &[], "the answer is not TLS").await;
    answering.abort();

    // Nothing listening, and a name that resolves nowhere.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let args = pinned(&closed, "127.0.0.1", "root-ca.pem");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_explained_in_words("unreachable", &args, &[], "cannot connect to 127.0.0.1").await;
    let args = pinned("8443", "nowhere.invalid", "root-ca.pem");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_explained_in_words("unresolvable", &args, &[], "cannot resolve nowhere.invalid").await;
}

#[test]
fn the_detector_sees_debug_text() {
    assert!(!debug_traces(&format!("{:?}", Some(std::io::Error::other("x")))).is_empty());
    assert!(!debug_traces("Rejection { kind: UnknownIssuer }").is_empty());
    assert!(debug_traces("master certificate rejected in pinned mode: issuer O=x is not trusted — fix it").is_empty());
}
