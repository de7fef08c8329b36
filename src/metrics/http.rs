//! The endpoint's HTTP/1.1: one request per connection, `GET` or `HEAD` of `/metrics`
//! and `/healthz`.
//!
//! Hand-written on purpose. A server crate (hyper, axum) would bring a whole HTTP stack
//! into the daemon for two fixed answers on a local port, and what it adds (keep-alive,
//! chunked bodies, HTTP/2) a scraper does not need: Prometheus reconnects happily when
//! told `Connection: close`. What a careful server must do is done here: the request
//! head is read by the head reader the link and the dev master share, bounded to
//! [`MAX_HEAD`] bytes and [`MAX_HEADERS`] fields and parsed by `httparse`; a client has
//! [`REQUEST_TIMEOUT`] to send it and [`RESPONSE_TIMEOUT`] to take the answer; at most
//! [`MAX_CONNECTIONS`] are served at once (the others wait to be accepted); every refusal
//! is a proper status (400, 404, 405, 408, 431); and no input can panic it (the
//! deployment build aborts on panic, so a panic here would stop the daemon): nothing here
//! indexes or unwraps what a client sent.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::timeout;
use tracing::{debug, error, warn};

use super::{Format, Metrics};
use crate::dial::http as head;

/// Largest request head read. A scraper's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;
/// Most header fields parsed.
const MAX_HEADERS: usize = 32;
/// Time a client has to send its request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 16;
/// After answering, what is read and dropped (and for how long) before closing, so the
/// kernel does not reset a connection that still has unread request bytes, which
/// would discard the response before the client reads it.
const LINGER_BYTES: usize = 64 * 1024;
const LINGER: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (out of file descriptors), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `/metrics` and `/healthz` on `listener` until the future is dropped (abort the
/// task that runs it); connections in flight end with it. A disabled handle serves
/// nothing: the future completes at once.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    if !metrics.is_enabled() {
        return;
    }
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // At the limit, new clients wait in the listen backlog until a slot frees.
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => match accepted {
                Ok((stream, _)) => {
                    let metrics = metrics.clone();
                    connections.spawn(async move { connection(stream, &metrics).await });
                }
                Err(error) => {
                    warn!(%error, "metrics endpoint: cannot accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => reap(done),
        }
    }
}

/// Reports a connection task that panicked. Only builds that unwind get here (tests and
/// debug builds): the release and deployment profiles abort on panic, so there a panic
/// ends the daemon, and systemd or the container runtime restarts it.
fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        if error.is_panic() {
            error!("metrics endpoint: a connection task panicked");
        }
    }
}

/// One connection: read a request, answer it, close.
async fn connection<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, metrics: &Metrics) {
    let response = match timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => Some(Response::text(
            408,
            format!("request timeout: no complete request head within {} s\n", REQUEST_TIMEOUT.as_secs()),
        )),
        Ok(Read::Closed) => None,
        Ok(Read::Refused(response)) => Some(response),
        Ok(Read::Request(request)) => Some(route(&request, metrics)),
    };
    if let Some(response) = response {
        let written = timeout(RESPONSE_TIMEOUT, async {
            stream.write_all(&response_head(&response, response.body.len())).await?;
            if !response.head_only {
                stream.write_all(response.body.as_bytes()).await?;
            }
            stream.flush().await
        })
        .await;
        if !matches!(written, Ok(Ok(()))) {
            debug!("metrics endpoint: the client did not take the response");
            return;
        }
    }
    // Close the write side, then let the client finish sending and close first.
    if timeout(LINGER, stream.shutdown()).await.is_err() {
        return;
    }
    let _ = timeout(LINGER, async {
        let mut sink = [0u8; 4096];
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped += n,
            }
        }
    })
    .await;
}

/// The parts of a request the routes need.
#[derive(Debug)]
struct Request {
    method: String,
    path: String,
    accept: Option<String>,
}

enum Read {
    Request(Request),
    /// Closed before sending anything, or the connection broke: nothing to answer.
    Closed,
    /// Not a request this server can read: answer this and close.
    Refused(Response),
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> Read {
    let bytes = match head::read_head(stream, MAX_HEAD).await {
        Ok(head::Read::Complete { mut bytes, end }) => {
            bytes.truncate(end);
            bytes
        }
        Ok(head::Read::ClosedEmpty) | Err(_) => return Read::Closed,
        Ok(head::Read::ClosedInside) => {
            return Read::Refused(Response::text(
                400,
                "bad request: the connection was closed inside the request head\n",
            ))
        }
        Ok(head::Read::TooLong) => {
            return Read::Refused(Response::text(431, format!("request head over {MAX_HEAD} bytes\n")));
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Read::Refused(Response::text(400, "bad request: incomplete head\n")),
        Err(httparse::Error::TooManyHeaders) => {
            return Read::Refused(Response::text(431, format!("more than {MAX_HEADERS} header fields\n")));
        }
        // httparse's messages are fixed words ("invalid token"), never the client's bytes.
        Err(error) => return Read::Refused(Response::text(400, format!("bad request: {error}\n"))),
    }
    let target = request.path.unwrap_or("");
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let accept = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("accept"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_owned);
    Read::Request(Request { method: request.method.unwrap_or("").to_owned(), path: path.to_owned(), accept })
}

fn route(request: &Request, metrics: &Metrics) -> Response {
    let head_only = match request.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ if matches!(request.path.as_str(), "/metrics" | "/healthz") => {
            return Response { allow: true, ..Response::text(405, "method not allowed: use GET or HEAD\n") };
        }
        _ => return Response::not_found(),
    };
    let response = match request.path.as_str() {
        "/metrics" => {
            let format = Format::from_accept(request.accept.as_deref());
            match metrics.encode(format) {
                Some(Ok(text)) => Response { content_type: format.content_type(), ..Response::text(200, text) },
                _ => Response::text(500, "cannot encode the metrics\n"),
            }
        }
        "/healthz" => match metrics.current_health() {
            Some(health) => Response::text(if health.is_registered() { 200 } else { 503 }, format!("{health}\n")),
            None => Response::text(503, "metrics are off\n"),
        },
        _ => Response::not_found(),
    };
    Response { head_only, ..response }
}

/// A complete response: status, type, body.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    body: String,
    /// 405: say which methods are allowed.
    allow: bool,
    /// `HEAD`: the head of the `GET` response, without the body.
    head_only: bool,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: false,
            head_only: false,
        }
    }

    fn not_found() -> Response {
        Response::text(404, "not found: det-agent serves /metrics and /healthz\n")
    }
}

fn response_head(response: &Response, length: usize) -> Vec<u8> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let allow = if response.allow { "Allow: GET, HEAD\r\n" } else { "" };
    format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {length}\r\n{allow}Connection: close\r\n\r\n",
        response.status, response.content_type
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Health;

    /// Runs one connection over an in-memory pipe; returns what the server wrote.
    async fn exchange(metrics: &Metrics, request: &[u8], close_after: bool) -> String {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let served = tokio::spawn({
            let metrics = metrics.clone();
            async move { connection(server, &metrics).await }
        });
        client.write_all(request).await.unwrap();
        if close_after {
            client.shutdown().await.unwrap();
        }
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        drop(client);
        served.await.unwrap();
        out
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_gets_408_after_the_timeout() {
        let (mut client, server) = tokio::io::duplex(1024);
        let metrics = Metrics::new();
        let started = tokio::time::Instant::now();
        let served = tokio::spawn(async move { connection(server, &metrics).await });
        client.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nrequest timeout: no complete request head within 5 s\n"), "{out}");
        assert_eq!(started.elapsed(), REQUEST_TIMEOUT);
        drop(client);
        served.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_is_dropped_after_the_timeout() {
        let metrics = Metrics::new();
        // A pipe far smaller than the exposition: the write blocks until the timeout.
        let (mut client, server) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let served = tokio::spawn(async move { connection(server, &metrics).await });
        client.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").await.unwrap();
        served.await.unwrap();
        assert_eq!(started.elapsed(), RESPONSE_TIMEOUT);
    }

    #[tokio::test]
    async fn head_answers_without_the_body() {
        let metrics = Metrics::new();
        metrics.health(Health::Registered { master: "m:8443".into(), agent_id: "a".into() });
        let out = exchange(&metrics, b"HEAD /healthz HTTP/1.0\r\n\r\n", false).await;
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 28\r\nConnection: close\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_request_cut_short_is_refused() {
        let out = exchange(&Metrics::new(), b"GET /metr", true).await;
        assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
        assert!(out.ends_with("bad request: the connection was closed inside the request head\n"), "{out}");
        assert_eq!(exchange(&Metrics::new(), b"", true).await, "");
    }

    #[tokio::test]
    async fn too_many_headers_is_431() {
        let mut request = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            request.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        let out = exchange(&Metrics::new(), &request, false).await;
        assert!(out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{out}");
        assert!(out.ends_with("more than 32 header fields\n"), "{out}");
    }

    #[tokio::test]
    async fn a_disabled_handle_serves_nothing() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        serve(listener, Metrics::disabled()).await;
    }
}
