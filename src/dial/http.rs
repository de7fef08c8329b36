//! Reading one HTTP/1.1 head (up to the blank line), shared by the proxy's CONNECT answer,
//! `check`'s `/info` answer and the dev master's requests.

use tokio::io::{AsyncRead, AsyncReadExt};

/// How reading a head ended.
pub(crate) enum Read {
    /// `bytes[..end]` is the head; anything after it arrived with it.
    Complete { bytes: Vec<u8>, end: usize },
    /// The peer closed before sending a byte.
    ClosedEmpty,
    /// The peer closed in the middle of the head.
    ClosedInside,
    /// The head grew past the limit without ending.
    TooLong,
}

/// Reads until `\r\n\r\n`, at most about `max` bytes.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, max: usize) -> std::io::Result<Read> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(if bytes.is_empty() { Read::ClosedEmpty } else { Read::ClosedInside });
        }
        bytes.extend_from_slice(&chunk[..n]);
        if let Some(i) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Read::Complete { bytes, end: i + 4 });
        }
        if bytes.len() > max {
            return Ok(Read::TooLong);
        }
    }
}

/// An HTTP answer to [`get`].
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: String,
    /// The `Content-Type`, as sent.
    pub content_type: Option<String>,
    /// The body, decoded from chunked encoding when so sent; at most the limit given.
    pub body: Vec<u8>,
}

/// Why [`get`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Writing the request or reading the answer failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The peer closed before a complete answer.
    #[error("the connection closed before a complete HTTP answer")]
    Closed,
    /// The answer is not HTTP/1.x, or breaks its framing.
    #[error("the answer is not HTTP ({0})")]
    NotHttp(&'static str),
}

/// Largest answer head [`get`] reads.
const MAX_ANSWER_HEAD: usize = 16 * 1024;

/// Sends `GET path` with `Host: authority` and `Connection: close`, and reads the answer:
/// its head (at most 16 KiB) and at most `max_body` bytes of its body, by
/// `Content-Length`, chunked encoding, or up to the close. Bounding time is the caller's.
///
/// # Errors
/// The stream failed, closed early, or did not answer in HTTP/1.x.
pub async fn get<S>(stream: &mut S, authority: &str, path: &str, max_body: usize) -> Result<Response, HttpError>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: det-agent/{}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let head = read_response_head(stream).await?;
    let body = read_response_body(stream, &head, max_body).await?;
    let content_type = head.header("content-type");
    Ok(Response { status: head.status, reason: head.reason, content_type, body })
}

/// An answer's status line and headers, and the bytes that arrived after them.
#[derive(Debug)]
pub(crate) struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: String,
    /// Every header, as sent (values trimmed).
    pub headers: Vec<(String, String)>,
    /// What arrived after the head, in the same reads.
    pub rest: Vec<u8>,
}

impl ResponseHead {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }
}

/// Reads an answer's head (at most 16 KiB). Bounding time is the caller's.
///
/// # Errors
/// The stream failed, closed before the head ended, or did not answer in HTTP/1.x.
pub(crate) async fn read_response_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ResponseHead, HttpError> {
    let (bytes, end) = match read_head(stream, MAX_ANSWER_HEAD).await? {
        Read::Complete { bytes, end } => (bytes, end),
        Read::ClosedEmpty | Read::ClosedInside => return Err(HttpError::Closed),
        Read::TooLong => return Err(HttpError::NotHttp("an answer head over 16 KiB")),
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&bytes[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(HttpError::NotHttp("no valid status line and headers")),
    }
    let headers = response
        .headers
        .iter()
        .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).trim().to_owned()))
        .collect();
    Ok(ResponseHead {
        status: response.code.unwrap_or(0),
        reason: response.reason.unwrap_or("").to_owned(),
        headers,
        rest: bytes[end..].to_vec(),
    })
}

/// Reads at most `max_body` bytes of the body announced by `head`: by `Content-Length`,
/// chunked encoding, or up to the close, however its bytes arrive. Bounding time is the
/// caller's.
///
/// # Errors
/// The stream failed, closed before `Content-Length` bytes, or broke its framing.
pub(crate) async fn read_response_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &ResponseHead,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let chunked = head.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = match head.header("content-length") {
        Some(v) => Some(v.parse::<usize>().map_err(|_| HttpError::NotHttp("a Content-Length that is not a number"))?),
        None => None,
    };
    let mut raw = head.rest.clone();
    // Read what the framing says, but never more than the limit (plus chunk framing).
    let wanted = match (chunked, length) {
        (false, Some(n)) => n.min(max_body),
        _ => max_body.saturating_add(if chunked { max_body / 8 + 64 } else { 0 }),
    };
    let mut chunk = [0u8; 4096];
    while raw.len() < wanted && !(chunked && chunked_complete(&raw)) {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            if length.is_some_and(|n| raw.len() < n.min(max_body)) {
                return Err(HttpError::Closed);
            }
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let mut body = if chunked { dechunk(&raw).ok_or(HttpError::NotHttp("broken chunked encoding"))? } else { raw };
    body.truncate(max_body.min(length.unwrap_or(usize::MAX)));
    Ok(body)
}

/// Whether `raw` holds the last (zero-size) chunk.
fn chunked_complete(raw: &[u8]) -> bool {
    raw.starts_with(b"0\r\n") || raw.windows(5).any(|w| w == b"\r\n0\r\n")
}

/// The body of chunked data, as far as it goes; `None` when the framing is broken.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") else { return Some(body) };
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(body);
        }
        let data = &raw[line_end + 2..];
        if data.len() < size {
            body.extend_from_slice(data);
            return Some(body);
        }
        body.extend_from_slice(&data[..size]);
        raw = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(bytes: &'static [u8], max: usize) -> Result<Response, HttpError> {
        let (mut client, mut server) = tokio::io::duplex(64);
        let serve = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let _ = read_head(&mut server, 4096).await;
            // Written in small pieces, as a slow network would deliver them.
            for piece in bytes.chunks(7) {
                let _ = server.write_all(piece).await;
            }
        });
        let got = get(&mut client, "m:8443", "/info", max).await;
        serve.await.unwrap();
        got
    }

    #[tokio::test]
    async fn reads_by_length_chunked_or_to_the_close_within_the_limit() {
        let r = answer(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\": true}",
            1024,
        )
        .await
        .unwrap();
        assert_eq!(
            (r.status, r.content_type.as_deref(), &r.body[..]),
            (200, Some("application/json"), &b"{\"a\": true}"[..])
        );
        let r = answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n7\r\n: true}\r\n0\r\n\r\n",
            1024,
        )
        .await
        .unwrap();
        assert_eq!(&r.body[..], b"{\"a\": true}");
        let r = answer(b"HTTP/1.0 404 Not Found\r\n\r\n<html>nope</html>", 1024).await.unwrap();
        assert_eq!((r.status, r.reason.as_str(), &r.body[..]), (404, "Not Found", &b"<html>nope</html>"[..]));
        let r = answer(b"HTTP/1.1 200 OK\r\n\r\n0123456789abcdef", 10).await.unwrap();
        assert_eq!(&r.body[..], b"0123456789");
        assert!(matches!(answer(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", 1024).await, Err(HttpError::NotHttp(_))));
        assert!(matches!(
            answer(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", 1024).await,
            Err(HttpError::Closed)
        ));
    }
}
