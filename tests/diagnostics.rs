//! `check` and `trust` dial exactly as the daemon does (one dialer: address by address,
//! through the same HTTP proxy), and `check` proves that a Determined master answered by
//! asking `GET /info`, or says what answered instead.

use std::net::SocketAddr;
use std::sync::Arc;

use det_agent::dev_master::{self, fixtures, DevMaster};
use det_agent::x509::Fingerprint;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::cli::{det_agent, pki, text};
use crate::link::proxy;

fn tls_args<'a>(port: &'a str, root: &'a str) -> Vec<&'a str> {
    vec![
        "check",
        "--master-host",
        "master.det.test",
        "--master-port",
        port,
        "--security-tls-enabled",
        "--security-tls-master-cert",
        root,
    ]
}

#[tokio::test]
async fn check_and_trust_go_through_the_proxy_the_daemon_uses() {
    let master = DevMaster::with_fixture("master").await.unwrap();
    let port = master.addr().port();
    let (proxy_addr, mut heads) =
        proxy(move |_| ([127, 0, 0, 1], port).into(), "HTTP/1.1 200 Connection established\r\n\r\n").await;
    let proxy_url = format!("http://agent:pa%20ss@{proxy_addr}");
    // master.det.test resolves nowhere: only the proxy can reach it.
    let (port_text, root) = (port.to_string(), pki("root-ca.pem"));
    let out = det_agent(&tls_args(&port_text, root.to_str().unwrap()), &[("HTTPS_PROXY", &proxy_url)]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("proxy          http://<credentials>@{proxy_addr} (from HTTPS_PROXY)")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("  dialed       {proxy_addr} — connected")), "{stdout}");
    assert!(!stdout.contains("pa ss") && !stdout.contains("pa%20ss"), "credentials leaked: {stdout}");
    let cluster_id = master.info()["cluster_id"].as_str().unwrap().to_owned();
    assert!(stdout.contains("determined     version ") && stdout.contains(&cluster_id), "{stdout}");
    assert!(heads.recv().await.unwrap().starts_with(&format!("CONNECT master.det.test:{port} HTTP/1.1\r\n")));

    // Without the proxy the same check cannot even resolve the name.
    let out = det_agent(&tls_args(&port_text, root.to_str().unwrap()), &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).0.contains("cannot resolve master.det.test"), "{}", text(&out).0);

    // trust, too: the fingerprint check and the store, through the proxy.
    let home = tempfile::tempdir().unwrap();
    let leaf = Fingerprint::of(&fixtures::certs("master.pem")[0]);
    let url = format!("https://master.det.test:{port}");
    let env = [("HTTPS_PROXY", proxy_url.as_str()), ("XDG_CONFIG_HOME", home.path().to_str().unwrap())];
    let out = det_agent(&["trust", "-m", &url, "--fingerprint", &format!("sha256:{leaf}")], &env).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.starts_with("The master at") && stdout.contains("trusted: stored for"), "{stdout}");
    assert!(heads.recv().await.unwrap().starts_with(&format!("CONNECT master.det.test:{port} ")));
}

/// An HTTPS server with the fixture master's certificate that answers every request
/// with `answer`: a web server, not a Determined master.
async fn https_answering(answer: &'static str) -> SocketAddr {
    let (chain, key) = fixtures::identity("master");
    let acceptor = tokio_rustls::TlsAcceptor::from(dev_master::server_config(chain, key, None).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn check_says_what_answered_when_it_is_not_a_determined_master() {
    let root = pki("root-ca.pem");
    for (answer, expected) in [
        (
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 21\r\n\r\n<h1>nginx: 404</h1>\r\n",
            "GET /info answered HTTP 404 Not Found (text/html): a server without /info",
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
            "a server that is not a Determined master",
        ),
        ("SSH-2.0-OpenSSH_9.2\r\n", "is not a Determined master: the connection closed before a complete HTTP answer"),
    ] {
        let addr = https_answering(answer).await;
        let port = addr.port().to_string();
        let mut args = tls_args(&port, root.to_str().unwrap());
        args[2] = "localhost";
        let out = det_agent(&args, &[]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stdout.contains("the handshake completed") && stdout.contains(expected), "{expected}: {stdout}");
    }
}

#[tokio::test]
async fn check_sees_a_client_certificate_refused_after_a_tls_1_3_handshake() {
    let (chain, key) = fixtures::identity("master");
    let config = dev_master::server_config(chain, key, Some(fixtures::certs("root-ca.pem"))).unwrap();
    let master = DevMaster::start(([127, 0, 0, 1], 0).into(), Arc::clone(&config)).await.unwrap();
    let port = master.addr().port().to_string();
    let root = pki("root-ca.pem");
    let mut args = tls_args(&port, root.to_str().unwrap());
    args[2] = "localhost";
    let out = det_agent(&args, &[]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("tls            TLSv1_3"), "the client side of the handshake completed: {stdout}");
    assert!(
        stdout.contains("certificate_required")
            && stdout.contains("set security.tls.client_cert and security.tls.client_key"),
        "{stdout}"
    );
    // With the client certificate, the same master answers /info.
    let (cert, key) = (pki("client.pem"), pki("client.key"));
    let with_cert = [
        &args[..],
        &["--security-tls-client-cert", cert.to_str().unwrap(), "--security-tls-client-key", key.to_str().unwrap()],
    ]
    .concat();
    let out = det_agent(&with_cert, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).0);
}
