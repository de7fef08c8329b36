//! The metrics endpoint over loopback: real scrapes after recorded events, `/healthz`,
//! refusals of bad and hostile requests, the connection limit, the exposition checked by
//! the real `promtool`, and the outcome labels of real link failures against the dev master.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, UNIX_EPOCH};

use det_agent::config::TlsConfig;
use det_agent::dev_master::{fixtures, DevMaster};
use det_agent::link::{self, Ended, LinkSettings, ProxyEnv, Target};
use det_agent::metrics::{self, ConnectOutcome, Format, Health, Listen, Metrics, TrustMode};
use det_agent::tls::RejectionKind;
use det_agent::x509::{self, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::util::{config, pinned};

/// The endpoint on 127.0.0.1, a free port.
async fn start(metrics: &Metrics) -> (SocketAddr, JoinHandle<()>) {
    let listener = Listen::from(SocketAddr::from(([127, 0, 0, 1], 0))).bind().await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, tokio::spawn(metrics::serve(listener, metrics.clone())))
}

/// Sends `request` on a fresh connection, closes the sending side, reads the whole reply.
async fn send(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        reply
    };
    tokio::time::timeout(Duration::from_secs(30), exchange).await.expect("a reply within 30 s")
}

#[derive(Debug)]
struct Reply {
    status_line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn has_line(&self, line: &str) -> bool {
        self.body.lines().any(|l| l == line)
    }
}

fn parse(reply: &[u8]) -> Reply {
    let text = String::from_utf8(reply.to_vec()).expect("a UTF-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no end of head in {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap().to_owned();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect();
    let reply = Reply { status_line, headers, body: body.to_owned() };
    assert_eq!(reply.header("content-length"), Some(reply.body.len().to_string().as_str()), "{reply:?}");
    reply
}

async fn get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Reply {
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    parse(&send(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{accept}\r\n").as_bytes()).await)
}

/// What Prometheus 2.x sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One event of every kind, so every metric type carries a value.
fn record_a_session(m: &Metrics) {
    m.connect_outcome(ConnectOutcome::Rejected(RejectionKind::UnknownIssuer));
    m.connect_outcome(ConnectOutcome::Rejected(RejectionKind::UnknownIssuer));
    m.reconnect_delay(Duration::from_millis(12_500));
    m.connect_outcome(ConnectOutcome::Registered);
    m.certificate(Some(Timestamp(1_900_000_000)), TrustMode::Pinned);
    m.link_up(true);
    m.health(Health::Registered { master: "master.example.com:8443".into(), agent_id: "gpu-node-7".into() });
    m.message_in();
    m.message_in();
    m.message_in();
    m.message_out();
    m.last_frame(UNIX_EPOCH + Duration::from_millis(1_700_000_000_500));
    m.reload(true);
    m.link_ended(&Ended::<()>::Silent { after: Duration::from_secs(60) });
}

#[tokio::test]
async fn a_scrape_shows_the_recorded_events_in_both_formats() {
    let m = Metrics::new();
    let (addr, server) = start(&m).await;
    record_a_session(&m);

    let plain = get(addr, "/metrics", None).await;
    assert_eq!(plain.status_line, "HTTP/1.1 200 OK");
    assert_eq!(plain.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert_eq!(plain.header("connection"), Some("close"));
    for line in [
        "# TYPE det_agent_connect_attempts_total counter",
        "det_agent_connect_attempts_total{outcome=\"rejected\",reason=\"unknown_issuer\"} 2",
        "det_agent_connect_attempts_total{outcome=\"registered\"} 1",
        "det_agent_connect_attempts_total{outcome=\"rejected\",reason=\"expired\"} 0",
        "det_agent_link_up 1",
        "det_agent_messages_received_total 3",
        "det_agent_messages_sent_total 1",
        "det_agent_reconnect_delay_seconds 12.5",
        "det_agent_reconnect_wait_seconds_bucket{le=\"10\"} 0",
        "det_agent_reconnect_wait_seconds_bucket{le=\"20\"} 1",
        "det_agent_reconnect_wait_seconds_sum 12.5",
        "det_agent_last_frame_timestamp_seconds 1700000000.5",
        "det_agent_master_certificate_not_after_timestamp_seconds{mode=\"pinned\"} 1900000000",
        "det_agent_trust_mode{mode=\"pinned\"} 1",
        "det_agent_trust_mode{mode=\"ca\"} 0",
        "det_agent_config_reloads_total{outcome=\"success\"} 1",
        "det_agent_link_drops_total{reason=\"silent\"} 1",
        &format!("det_agent_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(plain.has_line(line), "missing {line:?} in\n{}", plain.body);
    }

    let open = get(addr, "/metrics", Some(PROMETHEUS_ACCEPT)).await;
    assert_eq!(open.status_line, "HTTP/1.1 200 OK");
    assert_eq!(open.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(open.body.ends_with("\n# EOF\n"), "{}", open.body);
    for line in [
        "# TYPE det_agent_connect_attempts counter",
        "det_agent_connect_attempts_total{outcome=\"rejected\",reason=\"unknown_issuer\"} 2",
        "# TYPE det_agent_build info",
        "# UNIT det_agent_master_certificate_not_after_timestamp_seconds seconds",
        "det_agent_reconnect_wait_seconds_bucket{le=\"20.0\"} 1",
    ] {
        assert!(open.has_line(line), "missing {line:?} in\n{}", open.body);
    }

    // The query string is ignored; HEAD gets the head alone.
    assert_eq!(get(addr, "/metrics?debug=1", None).await.status_line, "HTTP/1.1 200 OK");
    let head = send(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"), "{head}");
    assert!(head.contains(&format!("Content-Length: {}\r\n", plain.body.len())), "{head}");
    server.abort();
}

#[tokio::test]
async fn healthz_is_200_while_registered_and_503_with_the_reason_otherwise() {
    let m = Metrics::new();
    let (addr, server) = start(&m).await;
    let reply = get(addr, "/healthz", None).await;
    assert_eq!(reply.status_line, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(reply.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(reply.body, "not registered: no connection attempt has finished yet\n");

    m.health(Health::Registered { master: "master.example.com:8443".into(), agent_id: "gpu-node-7".into() });
    let reply = get(addr, "/healthz", None).await;
    assert_eq!(reply.status_line, "HTTP/1.1 200 OK");
    assert_eq!(reply.body, "registered with master.example.com:8443 as gpu-node-7\n");

    // Text a master chose reaches the body escaped, on one line.
    let cause = "TLS handshake with 10.0.0.5:8443 failed: the master said \u{1b}[2J\u{202e}OK\r";
    m.health(Health::waiting(Duration::from_secs(12), &cause));
    let reply = get(addr, "/healthz", None).await;
    assert_eq!(reply.status_line, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(
        reply.body,
        "not registered: waiting 12 s before reconnecting: TLS handshake with 10.0.0.5:8443 failed: the master said \\x1b[2J\\u202eOK\n"
    );

    // A real drop, as the daemon would report it: whatever the close reason held, one
    // line without a control character.
    let ended =
        Ended::<()>::MasterClosed { code: Some(1011), reason: "bye\u{1b}]0;pwned\u{7}\nregistered with".into() };
    m.health(Health::waiting(Duration::from_millis(300), &ended));
    let reply = get(addr, "/healthz", None).await;
    assert!(reply.body.starts_with(
        "not registered: waiting 0.3 s before reconnecting: the master closed the connection (code 1011): bye"
    ));
    assert_eq!(reply.body.matches('\n').count(), 1, "{}", reply.body);
    assert!(!reply.body.trim_end().chars().any(char::is_control), "{:?}", reply.body);
    server.abort();
}

#[tokio::test]
async fn other_paths_are_404_and_other_methods_405() {
    let (addr, server) = start(&Metrics::new()).await;
    for path in ["/", "/metrics/", "/healthz/x", "/../metrics", "*"] {
        let reply = get(addr, path, None).await;
        assert_eq!(reply.status_line, "HTTP/1.1 404 Not Found", "{path}");
        assert_eq!(reply.body, "not found: det-agent serves /metrics and /healthz\n");
    }
    for (method, path) in [("POST", "/metrics"), ("DELETE", "/healthz"), ("OPTIONS", "/metrics")] {
        let reply =
            parse(&send(addr, format!("{method} {path} HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes()).await);
        assert_eq!(reply.status_line, "HTTP/1.1 405 Method Not Allowed", "{method} {path}");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
        assert_eq!(reply.body, "method not allowed: use GET or HEAD\n");
    }
    let reply = parse(&send(addr, b"PUT /elsewhere HTTP/1.1\r\n\r\n").await);
    assert_eq!(reply.status_line, "HTTP/1.1 404 Not Found");
    server.abort();
}

/// xorshift64: a repeatable stream of bytes without a dependency.
struct Bytes(u64);

impl Bytes {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test]
async fn garbage_gets_a_status_and_never_takes_the_server_down() {
    let (addr, server) = start(&Metrics::new()).await;
    let long = vec![b'A'; 20_000];
    let cases: [(&[u8], &str); 7] = [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "HTTP/1.1 400 Bad Request"), // a TLS ClientHello
        (b"GET /metrics HTTP/9.9\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"\0\0\0\0\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/1.1 400 Bad Request"),
        (b"GET /metrics HTTP/1.1\r\nX: \xff\xfe\r\n\r\n", "HTTP/1.1 200 OK"),
        (&long, "HTTP/1.1 431 Request Header Fields Too Large"),
    ];
    for (request, status) in cases {
        let reply = parse(&send(addr, request).await);
        assert_eq!(reply.status_line, status, "{:?}", String::from_utf8_lossy(&request[..request.len().min(40)]));
    }
    assert!(parse(&send(addr, &long).await).body.contains("request head over 8192 bytes"));

    // Mutations of a valid request and plain noise: every one gets a status line.
    let valid = b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n";
    let mut rng = Bytes(0x9e37_79b9_7f4a_7c15);
    for round in 0..150 {
        let request: Vec<u8> = if round % 3 == 0 {
            (0..1 + rng.next() % 300).map(|_| rng.next() as u8).collect()
        } else {
            let mut r = valid.to_vec();
            for _ in 0..1 + rng.next() % 4 {
                let i = (rng.next() as usize) % r.len();
                r[i] = rng.next() as u8;
            }
            r
        };
        let reply = send(addr, &request).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("HTTP/1.1 "), "no status for {:?}: {text:?}", String::from_utf8_lossy(&request));
    }
    assert_eq!(get(addr, "/healthz", None).await.status_line, "HTTP/1.1 503 Service Unavailable");
    assert!(!server.is_finished());
    server.abort();
}

/// Time is paused: the idle clients' 5 s request timeout passes only when nothing else
/// can run, so a seventeenth client served before it would have been served past the limit.
#[tokio::test(start_paused = true)]
async fn past_the_connection_limit_clients_wait_for_a_free_slot() {
    let (addr, server) = start(&Metrics::new()).await;
    let started = tokio::time::Instant::now();
    // Sixteen clients that never send a request hold every slot until they time out.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let reply = parse(&send(addr, b"GET /healthz HTTP/1.1\r\n\r\n").await);
    assert_eq!(reply.status_line, "HTTP/1.1 503 Service Unavailable");
    assert!(started.elapsed() >= Duration::from_secs(5), "served after {:?}, past the limit", started.elapsed());
    for mut stream in idle {
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await.unwrap();
        assert_eq!(parse(&reply).status_line, "HTTP/1.1 408 Request Timeout");
    }
    server.abort();
}

/// Runs `promtool check metrics` on `exposition`; panics, saying how to install it,
/// when promtool is missing.
fn promtool_check(exposition: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run promtool ({e}): install it with `apt-get install prometheus` (Debian); .ci/run does")
        });
    child.stdin.take().unwrap().write_all(exposition.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn promtool_accepts_the_scraped_exposition() {
    let m = Metrics::new();
    let (addr, server) = start(&m).await;
    for scrape in 0..2 {
        if scrape == 1 {
            record_a_session(&m);
        }
        let reply = get(addr, "/metrics", None).await;
        let (ok, said) = promtool_check(&reply.body);
        assert!(ok && said.is_empty(), "promtool check metrics on scrape {scrape}:\n{said}\n{}", reply.body);
    }
    // The checker is real: a counter without its suffix and a duplicate series fail.
    let (ok, said) = promtool_check("# TYPE det_agent_x counter\ndet_agent_x 1\ndet_agent_x 2\n");
    assert!(!ok, "{said}");
    server.abort();
}

fn fast() -> LinkSettings {
    LinkSettings {
        connect_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        ..LinkSettings::default()
    }
}

#[tokio::test]
async fn real_link_outcomes_get_their_labels() {
    let m = Metrics::new();
    let (addr, server) = start(&m).await;
    let master = DevMaster::with_fixture("master").await.unwrap();

    // An impostor's certificate under a pin: rejected, by the verifier's kind.
    let cfg = config("127.0.0.1", master.addr(), TlsConfig::new(pinned("other-root-ca.pem")));
    let err = link::connect(&Target::new(cfg, ProxyEnv::none(), fast()).unwrap(), false).await.unwrap_err();
    m.connect_failed(&err);
    m.health(Health::waiting(Duration::from_secs(3), &err));

    // TLS spoken to a plain HTTP server: a TLS error.
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_addr = http.local_addr().unwrap();
    let answer = tokio::spawn(async move {
        let (mut stream, _) = http.accept().await.unwrap();
        let _ = stream.read(&mut [0u8; 512]).await;
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").await;
    });
    let cfg = config("127.0.0.1", http_addr, TlsConfig::new(pinned("root-ca.pem")));
    let err = link::connect(&Target::new(cfg, ProxyEnv::none(), fast()).unwrap(), false).await.unwrap_err();
    m.connect_failed(&err);
    answer.await.unwrap();

    // Nothing listening: a network error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = config("127.0.0.1", closed, TlsConfig::new(pinned("root-ca.pem")));
    let err = link::connect(&Target::new(cfg, ProxyEnv::none(), fast()).unwrap(), false).await.unwrap_err();
    m.connect_failed(&err);

    // The right pin: registered, with the certificate's notAfter.
    let cfg = config("127.0.0.1", master.addr(), TlsConfig::new(pinned("root-ca.pem")));
    let mode = TrustMode::of(&cfg);
    let link = link::connect(&Target::new(cfg, ProxyEnv::none(), fast()).unwrap(), false).await.unwrap();
    m.connect_outcome(ConnectOutcome::Registered);
    let (_, not_after) = x509::validity_window(&fixtures::certs("master.pem")[0]).unwrap();
    m.certificate(Some(Timestamp(not_after)), mode);
    drop(link);

    let reply = get(addr, "/metrics", None).await;
    for line in [
        "det_agent_connect_attempts_total{outcome=\"rejected\",reason=\"unknown_issuer\"} 1",
        "det_agent_connect_attempts_total{outcome=\"tls_error\",reason=\"not_tls\"} 1",
        "det_agent_connect_attempts_total{outcome=\"network_error\",reason=\"connect\"} 1",
        "det_agent_connect_attempts_total{outcome=\"registered\"} 1",
        &format!("det_agent_master_certificate_not_after_timestamp_seconds{{mode=\"pinned\"}} {not_after}"),
    ] {
        assert!(reply.has_line(line), "missing {line:?} in\n{}", reply.body);
    }
    let failures: u64 = reply
        .body
        .lines()
        .filter(|l| l.starts_with("det_agent_connect_attempts_total{") && !l.contains("registered"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(failures, 3);
    let health = get(addr, "/healthz", None).await;
    assert!(
        health.body.starts_with(&format!(
            "not registered: waiting 3 s before reconnecting: TLS handshake with {} failed: master certificate rejected in pinned mode (",
            master.addr()
        )),
        "{}",
        health.body
    );
    assert_eq!(m.encode(Format::Prometheus).unwrap().unwrap().lines().count(), reply.body.lines().count());
    server.abort();
}

/// GETs `path` from Prometheus' HTTP API and returns its `data`.
async fn prometheus_api(web: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let mut stream = TcpStream::connect(web).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {web}\r\n\r\n").as_bytes()).await.ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.ok()?;
    let text = String::from_utf8(reply).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    (value["status"] == "success").then(|| value["data"].clone())
}

/// The real scraper: Debian's Prometheus server scrapes the endpoint (asking for
/// OpenMetrics, as it does by default) and stores what it read.
#[tokio::test]
async fn prometheus_scrapes_the_endpoint_as_openmetrics() {
    let m = Metrics::new();
    record_a_session(&m);
    let (addr, server) = start(&m).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: det-agent\n    static_configs:\n      - targets: [\"{addr}\"]\n"
        ),
    )
    .unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={web}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run prometheus ({e}): install it with `apt-get install prometheus` (Debian); .ci/run does")
        });

    // Prometheus starts its scrape loop about 5 s after start; its API is asked again
    // until the sample is stored (an external process, so there is no event to wait on).
    let query = form_urlencoded::byte_serialize(
        b"det_agent_connect_attempts_total{outcome=\"rejected\",reason=\"unknown_issuer\"}",
    )
    .collect::<String>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let result = loop {
        if let Some(exited) = prometheus.try_wait().unwrap() {
            let mut log = String::new();
            prometheus.stderr.take().unwrap().read_to_string(&mut log).await.unwrap();
            panic!("prometheus exited ({exited}):\n{log}");
        }
        if let Some(data) = prometheus_api(web, &format!("/api/v1/query?query={query}")).await {
            if let Some(sample) = data["result"].as_array().and_then(|r| r.first()) {
                break sample.clone();
            }
        }
        let targets = prometheus_api(web, "/api/v1/targets").await;
        let last_error = targets.as_ref().and_then(|t| t["activeTargets"][0]["lastError"].as_str().map(str::to_owned));
        assert!(last_error.as_deref().unwrap_or("").is_empty(), "prometheus could not scrape: {last_error:?}");
        assert!(tokio::time::Instant::now() < deadline, "no sample stored within 60 s; targets: {targets:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(result["value"][1], "2", "{result}");
    assert_eq!(result["metric"]["job"], "det-agent");

    // What only the OpenMetrics parser records: the unit and the info type.
    let metadata = prometheus_api(web, "/api/v1/targets/metadata?match_target=%7Bjob%3D%22det-agent%22%7D")
        .await
        .expect("target metadata");
    let entry = |metric: &str| {
        metadata.as_array().unwrap().iter().find(|e| e["metric"] == metric).cloned().unwrap_or_else(|| {
            panic!("no metadata for {metric} in {metadata}");
        })
    };
    assert_eq!(entry("det_agent_master_certificate_not_after_timestamp_seconds")["unit"], "seconds");
    assert_eq!(entry("det_agent_build")["type"], "info");
    server.abort();
}
