//! Fluent Bit, started on the file `det-agent fluent-bit --out` wrote, unchanged, in each
//! trust mode: it takes records from a Fluent forward client (as tasks' log drivers send
//! them) and posts them to the dev master, or refuses a master it must not trust, saying
//! `certificate verify failed` in its log and delivering nothing.

use det_agent::dev_master::{self, fixtures, DevMaster, Event};
use det_agent::x509::Fingerprint;

use crate::cli::{det_agent, pki, text};
use crate::fluent_bit_real::{
    delivered, free_port, full_chain, lines, refused, send_forward, write_config, written_value, FluentBit,
};

#[tokio::test]
async fn pinned_mode_delivers_forwarded_records() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let fluent_port = free_port();
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &fluent_port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    assert_eq!(input.to_string(), format!("127.0.0.1:{fluent_port}"), "fluent.listen and fluent.port as written");
    send_forward(input, "task.pinned", &lines(5)).await;
    let events = delivered(&mut master, &mut fb, "task.pinned", 5).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Handshake { sni: Some(sni), .. } if sni == "localhost")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_pinned_chain_without_its_root_is_refused_as_the_warning_says() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = master.addr().port().to_string();
    let chain = pki("master.pem"); // leaf and intermediate, no root
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
    ];
    let out_dir = dir.path().join("out");
    let out = det_agent(&[&["fluent-bit", "--out", out_dir.to_str().unwrap()], &args[..]].concat(), &[]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("holds no self-signed root"), "{stderr}");
    let mut fb = FluentBit::start(&out_dir.join("fluent-bit.conf"), &[]).await;
    refused(&mut master, &mut fb, "task.rootless").await;
}

#[tokio::test]
async fn ca_mode_gives_fluent_bit_the_store_det_agent_uses() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = pki("root-ca.pem");
    let port = master.addr().port().to_string();
    let (first_port, second_port) = (free_port(), free_port());
    let args = |fluent_port: &str| {
        ["--master-host", "localhost", "--master-port", &port, "--fluent-port", fluent_port, "--security-tls-enabled"]
            .into_iter()
            .chain(["--format", "yaml"])
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let store = [("SSL_CERT_FILE", root.to_str().unwrap())];

    // det-agent trusts the fixture root through SSL_CERT_FILE; Fluent Bit ignores the
    // variable, so a configuration that leaves the store to Fluent Bit is refused.
    let first = args(&first_port);
    let first: Vec<&str> = first.iter().map(String::as_str).collect();
    let system = write_config(&dir.path().join("system"), &first, &[]).await;
    let mut fb = FluentBit::start(&system, &store).await;
    refused(&mut master, &mut fb, "task.system").await;
    drop(fb);

    // Written with det-agent's store, it names the file, and delivers.
    let second = args(&second_port);
    let second: Vec<&str> = second.iter().map(String::as_str).collect();
    let config = write_config(&dir.path().join("out"), &second, &store).await;
    assert_eq!(written_value(&config, "tls.ca_file"), Some(root.to_str().unwrap().to_owned()));
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.ca", &lines(4)).await;
    delivered(&mut master, &mut fb, "task.ca", 4).await;
}

#[tokio::test]
async fn ca_mode_with_ssl_cert_dir_gives_fluent_bit_the_folder() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A CA folder as OpenSSL reads it: the certificate under its hashed name.
    let store = dir.path().join("certs");
    std::fs::create_dir(&store).unwrap();
    std::fs::copy(pki("root-ca.pem"), store.join("det-test-root.pem")).unwrap();
    let rehash = std::process::Command::new("openssl")
        .arg("rehash")
        .arg(&store)
        .output()
        .expect("openssl runs (install Debian's openssl package; .ci/run does)");
    assert!(rehash.status.success(), "{}", String::from_utf8_lossy(&rehash.stderr));
    let port = master.addr().port().to_string();
    let args =
        ["--master-host", "localhost", "--master-port", &port, "--fluent-port", &free_port(), "--security-tls-enabled"];
    let config = write_config(&dir.path().join("out"), &args, &[("SSL_CERT_DIR", store.to_str().unwrap())]).await;
    assert_eq!(written_value(&config, "tls.ca_path"), Some(store.to_str().unwrap().to_owned()));
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.cadir", &lines(2)).await;
    delivered(&mut master, &mut fb, "task.cadir", 2).await;
}

#[tokio::test]
async fn name_override_dialing_an_ip_delivers() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
        "--security-tls-master-cert-name",
        "master.det.test",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.name", &lines(3)).await;
    let events = delivered(&mut master, &mut fb, "task.name", 3).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Handshake { sni: Some(sni), .. } if sni == "master.det.test")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_master_with_another_certificate_gets_nothing() {
    // Pinned to the fixture chain; the master presents a certificate of another CA with
    // the same names.
    let mut master = DevMaster::with_fixture("unrelated-ca").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let error = refused(&mut master, &mut fb, "task.unrelated").await;
    assert!(error.contains("UnknownCA"), "{error}");
}

#[tokio::test]
async fn a_name_the_certificate_lacks_is_refused() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = master.addr().port().to_string();
    // Only CA certificates are pinned, so det-agent can check the name's form only, and
    // writes it; Fluent Bit must then refuse the master, which lacks the name.
    let cas = pki("chain-to-root.pem");
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        cas.to_str().unwrap(),
        "--security-tls-master-cert-name",
        "logs.det.test",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let error = refused(&mut master, &mut fb, "task.wrongname").await;
    assert!(error.contains("BadCertificate"), "{error}");

    // With the master's own certificate pinned, det-agent refuses to write it at all.
    let chain = full_chain(dir.path());
    let mut args = args.to_vec();
    args[8] = chain.to_str().unwrap();
    let out = det_agent(&[&["fluent-bit"], &args[..]].concat(), &[]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("Fluent Bit would verify the master as logs.det.test"), "{stderr}");
}

#[tokio::test]
async fn skip_verify_delivers_to_any_certificate() {
    let mut master = DevMaster::with_fixture("unrelated-ca").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-skip-verify",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.skip", &lines(2)).await;
    delivered(&mut master, &mut fb, "task.skip", 2).await;
}

#[tokio::test]
async fn mutual_tls_delivers_with_the_client_certificate() {
    let (chain, key) = fixtures::identity("master");
    let server = dev_master::server_config(chain, key, Some(fixtures::certs("root-ca.pem"))).unwrap();
    let mut master = DevMaster::start(([127, 0, 0, 1], 0).into(), server).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let full = full_chain(dir.path());
    let (client_cert, client_key) = (pki("client.pem"), pki("client.key"));
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "localhost",
        "--master-port",
        &port,
        "--fluent-port",
        &free_port(),
        "--security-tls-enabled",
        "--security-tls-master-cert",
        full.to_str().unwrap(),
        "--security-tls-client-cert",
        client_cert.to_str().unwrap(),
        "--security-tls-client-key",
        client_key.to_str().unwrap(),
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let mut fb = FluentBit::start(&config, &[]).await;
    let input = fb.forward_input().await;
    send_forward(input, "task.mtls", &lines(3)).await;
    let events = delivered(&mut master, &mut fb, "task.mtls", 3).await;
    let client = Fingerprint::of(&fixtures::certs("client.pem")[0]);
    assert!(
        events.iter().any(|e| matches!(e, Event::Handshake { client_cert: Some(fp), .. } if *fp == client)),
        "the master saw the agent's client certificate: {events:?}"
    );
}

/// What Fluent Bit 5.1.1 itself does with the options the name rule is about, on a
/// written configuration edited by hand: without `tls.verify_hostname` it checks no name
/// at all (why it is always written), and since 5.0.6 it matches IP entries (the rule
/// of a DNS name stays for older versions).
#[tokio::test]
async fn fluent_bit_checks_names_only_with_verify_hostname_and_matches_ips() {
    let mut master = DevMaster::with_fixture("master").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = full_chain(dir.path());
    let port = master.addr().port().to_string();
    let args = [
        "--master-host",
        "127.0.0.1",
        "--master-port",
        &port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        chain.to_str().unwrap(),
        "--security-tls-master-cert-name",
        "master.det.test",
    ];
    let config = write_config(&dir.path().join("out"), &args, &[]).await;
    let written = std::fs::read_to_string(&config).unwrap();
    let vhost = "    tls.vhost           master.det.test\n";
    let check = "    tls.verify_hostname On\n";
    assert!(written.contains(vhost) && written.contains(check), "{written}");
    let variants = [
        ("task.nocheck", written.replace(vhost, "    tls.vhost logs.det.test\n").replace(check, ""), true),
        ("task.ip", written.replace(vhost, "    tls.vhost 127.0.0.1\n"), true),
        ("task.otherip", written.replace(vhost, "    tls.vhost 10.0.0.5\n"), false),
    ];
    for (tag, text, delivers) in variants {
        let path = dir.path().join(format!("{tag}.conf"));
        std::fs::write(&path, text.replace("Port   24224", &format!("Port   {}", free_port()))).unwrap();
        let mut fb = FluentBit::start(&path, &[]).await;
        if delivers {
            let input = fb.forward_input().await;
            send_forward(input, tag, &lines(1)).await;
            delivered(&mut master, &mut fb, tag, 1).await;
        } else {
            refused(&mut master, &mut fb, tag).await;
        }
    }
}
