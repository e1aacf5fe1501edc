//! The smallest HTTP/1.1 server side the fronts need: one request per connection (answers say
//! `Connection: close`), GET and HEAD only, every read bounded in size and time; the loopback
//! listener, accept loop and task handles both fronts (`front.rs`, `mcr.rs`) run on.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use url::Url;

const MAX_HEAD: usize = 64 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of a header (`name` lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// Decoded query pairs.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.target.split_once('?').map_or("", |(_, q)| q);
        url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect()
    }

    /// The first decoded value of a query parameter.
    pub fn param(&self, key: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

/// A listener on a free loopback port, and its origin (`http://127.0.0.1:port/`).
pub async fn bind_loopback() -> (TcpListener, Url) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let url: Url = format!("http://{}/", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    (listener, url)
}

/// Serves each origin's listener on its own task until the [`Servers`] are dropped: every
/// request is answered by `answer` (which also logs it) with the front's state and the origin.
pub fn serve_origins<S, O, A, F>(
    shared: &Arc<S>,
    origins: impl IntoIterator<Item = (TcpListener, O)>,
    answer: A,
) -> Servers
where
    S: Send + Sync + 'static,
    O: Copy + Send + 'static,
    A: Fn(Arc<S>, O, Request) -> F + Clone + Send + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    Servers(
        origins
            .into_iter()
            .map(|(listener, origin)| {
                let (shared, answer) = (shared.clone(), answer.clone());
                tokio::spawn(serve(listener, move |request| {
                    answer(shared.clone(), origin, request)
                }))
            })
            .collect(),
    )
}

/// Serves `listener` until aborted: each connection on its own task, one request read, answered
/// by `handle`, written back.
async fn serve<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request) -> F + Clone + Send + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stream);
            let Some(request) = read_request(&mut reader).await else {
                return;
            };
            let head_only = request.method == "HEAD";
            let response = handle(request).await;
            write_response(reader.get_mut(), head_only, &response).await;
        });
    }
}

/// The server tasks of a front; they stop when this is dropped.
pub struct Servers(Vec<JoinHandle<()>>);

impl Drop for Servers {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// An answer.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers to send (`Content-Length` and `Connection` are added).
    pub headers: Vec<(String, String)>,
    /// The body (not sent for HEAD; its length still is, unless a header says otherwise).
    pub body: Vec<u8>,
}

impl Response {
    /// A status with a body.
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// A registry-style error answer.
    pub fn registry_error(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
        Response::new(status, body.to_string()).header("Content-Type", "application/json")
    }
}

/// Reads one request head (a body, which these endpoints never need, is drained and ignored).
async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    tokio::time::timeout(READ_TIMEOUT, read_head(stream))
        .await
        .ok()
        .flatten()
}

async fn read_head(stream: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = String::new();
        let n = stream.read_line(&mut line).await.ok()?;
        total += n;
        if n == 0 || total > MAX_HEAD {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let mut first = lines.first()?.split(' ');
    let (method, target) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: Vec<(String, String)> = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: u64 = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut sink = Vec::new();
    stream
        .take(length.min(MAX_HEAD as u64))
        .read_to_end(&mut sink)
        .await
        .ok()?;
    Some(Request {
        method,
        target,
        headers,
    })
}

/// Writes an answer and closes the connection.
async fn write_response(stream: &mut TcpStream, head_only: bool, response: &Response) {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    let has_length = response
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", response.body.len()));
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&response.body);
    }
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        502 => "Bad Gateway",
        _ => "Other",
    }
}
