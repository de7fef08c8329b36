//! Reading one HTTP/1.1 head (up to the blank line), shared by the proxy's CONNECT answer
//! and the dev master's requests.

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
