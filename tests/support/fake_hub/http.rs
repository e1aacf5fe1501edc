//! A small HTTP/1.1 server-side codec: enough for reqwest and curl, nothing more.
//!
//! Hand-written rather than hyper so the server can misbehave at will (reset a connection,
//! lie about `Content-Length`, stream forever); see `server.rs`. It reads requests with
//! `Content-Length` or chunked bodies, honours keep-alive and `Expect: 100-continue`, and bounds
//! every read so a broken client cannot make it buffer without limit.

use std::time::Instant;

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader,
};

const MAX_LINE: u64 = 16 * 1024;
const MAX_HEADERS: usize = 100;
const MAX_BODY: usize = 1024 * 1024;

/// A parsed request.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: String,
    /// The request target as sent: path and query.
    pub(super) target: String,
    /// Header names lowercased.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    pub(super) keep_alive: bool,
    /// When the request line arrived.
    pub(super) arrived: Instant,
}

impl Request {
    /// The first value of a header (`name` in lowercase).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path part of the target.
    pub(super) fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The raw query string (empty without one).
    pub(super) fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }
}

/// Why no request could be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The peer closed the connection (or it failed): nothing to answer.
    Closed,
    /// The bytes are not an acceptable HTTP/1.x request: answer 400 and close.
    Malformed(&'static str),
}

impl From<std::io::Error> for ReadError {
    fn from(_: std::io::Error) -> Self {
        ReadError::Closed
    }
}

/// Reads one request from a connection.
pub(super) async fn read_request<S>(conn: &mut BufReader<S>) -> Result<Request, ReadError>
where
    S: tokio::io::AsyncRead + AsyncWrite + Unpin,
{
    // Clients may send empty lines between requests (RFC 9112 §2.2): skip them.
    let line = loop {
        let line = read_line(conn).await?.ok_or(ReadError::Closed)?;
        if !line.is_empty() {
            break line;
        }
    };
    let arrived = Instant::now();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed("bad request line"));
    };
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(ReadError::Malformed("unsupported HTTP version")),
    };
    if method.is_empty() || !target.starts_with('/') {
        return Err(ReadError::Malformed("bad request line"));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(conn)
            .await?
            .ok_or(ReadError::Malformed("headers cut short"))?;
        if line.is_empty() {
            break;
        }
        if headers.len() == MAX_HEADERS {
            return Err(ReadError::Malformed("too many headers"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("bad header line"));
        };
        if name.is_empty() || name.ends_with([' ', '\t']) || name.starts_with([' ', '\t']) {
            return Err(ReadError::Malformed("bad header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: Vec::new(),
        keep_alive: false,
        arrived,
    };
    let connection = request
        .header("connection")
        .unwrap_or("")
        .to_ascii_lowercase();
    request.keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = match request.header("content-length") {
        Some(v) => Some(
            v.parse::<usize>()
                .map_err(|_| ReadError::Malformed("bad content-length"))?,
        ),
        None => None,
    };
    let expects_body = chunked || length.is_some_and(|n| n > 0);
    if expects_body
        && request
            .header("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        conn.get_mut()
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await?;
    }
    if chunked {
        request.body = read_chunked(conn).await?;
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(ReadError::Malformed("body too large"));
        }
        let mut body = vec![0; n];
        conn.read_exact(&mut body).await?;
        request.body = body;
    }
    Ok(request)
}

/// One CRLF- (or LF-) terminated line without its terminator; `None` at a clean end of stream.
async fn read_line<R: AsyncBufRead + Unpin>(conn: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = (&mut *conn)
        .take(MAX_LINE)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n as u64 == MAX_LINE {
            ReadError::Malformed("line too long")
        } else {
            ReadError::Closed
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Malformed("line is not UTF-8"))
}

async fn read_chunked<R: AsyncBufRead + Unpin>(conn: &mut R) -> Result<Vec<u8>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(conn)
            .await?
            .ok_or(ReadError::Malformed("chunked body cut short"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size, 16).map_err(|_| ReadError::Malformed("bad chunk size"))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(conn)
                .await?
                .ok_or(ReadError::Malformed("chunked body cut short"))?
                .is_empty()
            {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(ReadError::Malformed("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        conn.read_exact(&mut body[start..]).await?;
        if !read_line(conn)
            .await?
            .ok_or(ReadError::Malformed("chunked body cut short"))?
            .is_empty()
        {
            return Err(ReadError::Malformed("chunk not followed by CRLF"));
        }
    }
}

/// A response to write.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub(super) fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type", "application/json".to_owned())],
            body: body.into(),
        }
    }
}

/// How the body length is announced.
pub(super) enum Framing {
    /// `Content-Length: n` (which the body may then fail to honour).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The status line and headers, with framing and connection headers added.
pub(super) fn head(response: &Response, framing: Framing, keep_alive: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    match framing {
        Framing::Length(n) => out.push_str(&format!("Content-Length: {n}\r\n")),
        Framing::Chunked => out.push_str("Transfer-Encoding: chunked\r\n"),
    }
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    out.into_bytes()
}

/// Writes a complete response.
pub(super) async fn write_response<W: AsyncWrite + Unpin>(
    out: &mut W,
    response: &Response,
    keep_alive: bool,
) -> std::io::Result<()> {
    let mut bytes = head(response, Framing::Length(response.body.len()), keep_alive);
    bytes.extend_from_slice(&response.body);
    out.write_all(&bytes).await?;
    out.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}
