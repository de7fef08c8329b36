//! Just enough HTTP/1.1 for the dev master: one request head, one body by
//! `Content-Length`, one response. A test double needs no more, and a full server crate
//! would be the largest dependency in the build.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::dial::http::{self as head, Read};

/// Largest request head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (task log batches).
pub const MAX_BODY: usize = 16 << 20;

/// A parsed request head, and whatever bytes arrived after it.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub rest: Vec<u8>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn query_pair(&self, key: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes()).find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
    }
}

/// Reads one request head. `Ok(None)` when the client closed without sending one (as
/// `det-agent check` does after its handshake).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<Head>, String> {
    let (buf, end) = match head::read_head(stream, MAX_HEAD).await.map_err(|e| e.to_string())? {
        Read::Complete { bytes, end } => (bytes, end),
        Read::ClosedEmpty => return Ok(None),
        Read::ClosedInside => return Err("connection closed inside a request head".into()),
        Read::TooLong => return Err(format!("request head over {MAX_HEAD} bytes")),
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err("incomplete request head".into()),
        Err(e) => return Err(format!("bad request head: {e}")),
    }
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Head {
        method: request.method.unwrap_or("").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
            .collect(),
        rest: buf[end..].to_vec(),
    }))
}

/// Reads the body announced by `Content-Length`.
pub async fn read_body<S: AsyncRead + Unpin>(stream: &mut S, head: &mut Head) -> Result<Vec<u8>, (u16, String)> {
    let length = match head.header("content-length").map(|v| v.trim().parse::<usize>()) {
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err((400, "bad Content-Length".into())),
        None if head.header("transfer-encoding").is_some() => {
            return Err((411, "send a Content-Length; chunked bodies are not supported by the dev master".into()))
        }
        None => 0,
    };
    if length > MAX_BODY {
        return Err((413, format!("body of {length} bytes is over {MAX_BODY}")));
    }
    let mut body = std::mem::take(&mut head.rest);
    if body.len() < length {
        let have = body.len();
        body.resize(length, 0);
        stream.read_exact(&mut body[have..]).await.map_err(|e| (400, format!("body cut short: {e}")))?;
    }
    body.truncate(length);
    Ok(body)
}

/// Writes a complete response with a text body and closes the write side.
pub async fn respond<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, body: &str) {
    respond_typed(stream, status, "text/plain; charset=utf-8", body, None).await;
}

/// Writes a complete response with a JSON body, as the master's echo handlers answer.
/// With `pace`, the head goes first and the body follows late, a few bytes per write,
/// `pace` apart: how a slow network or a busy master delivers it.
pub async fn respond_json<S: AsyncWrite + Unpin>(stream: &mut S, status: u16, body: &str, pace: Option<Duration>) {
    respond_typed(stream, status, "application/json", body, pace).await;
}

async fn respond_typed<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    body: &str,
    pace: Option<Duration>,
) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    match pace {
        None => {
            let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
        }
        Some(pace) => {
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.flush().await;
            for piece in body.as_bytes().chunks(7) {
                tokio::time::sleep(pace).await;
                let _ = stream.write_all(piece).await;
                let _ = stream.flush().await;
            }
        }
    }
    let _ = stream.shutdown().await;
}
